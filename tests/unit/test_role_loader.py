"""The role loader: project roles before the package's, dependencies first (one chosen by a
variable), each role once; a cycle, an unknown role or a bad meta.yml is one line."""

import textwrap

import pytest

from mtls_deploy import role_loader
from mtls_deploy.errors import BadInput


def make_role(project, name: str, meta: str = "", role_py: str = "") -> None:
    folder = project / "roles" / name
    folder.mkdir(parents=True)
    (folder / "meta.yml").write_text(textwrap.dedent(meta))
    (folder / "role.py").write_text(
        textwrap.dedent(role_py) or "def resources(v, facts):\n    return []\n"
    )


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project directory in force (``MTLS_DEPLOY_PROJECT``)."""
    (tmp_path / "inventory").mkdir()
    monkeypatch.setenv("MTLS_DEPLOY_PROJECT", str(tmp_path))
    return tmp_path


def test_a_project_role_shadows_the_package_role_of_the_same_name(project):
    make_role(project, "tls", role_py="MINE = True\n")
    assert role_loader.load("tls").folder == project / "roles" / "tls"
    assert role_loader.load("tls").module.MINE
    assert role_loader.load("nginx").folder == role_loader.PACKAGE_ROLES / "nginx"
    assert {"tls", "nginx", "backend_php"} <= set(role_loader.all_roles())


def test_a_project_role_is_found_and_its_module_is_not_imported_as_roles(project):
    make_role(project, "stamp")
    role = role_loader.load("stamp")
    assert role.call("resources", {}, None) == []
    assert not role.module.__name__.startswith("roles")
    assert role.call("handlers", {}, None, default="none") == "none"  # optional functions


def test_dependencies_come_first_each_role_once(project):
    make_role(project, "base")
    make_role(project, "app", "dependencies: [base]\n")
    make_role(project, "site", "dependencies: [base, app]\ngroups: [web]\n")
    assert role_loader.resolve(["site", "app"], {}) == ["base", "app", "site"]
    assert role_loader.default_roles({"group_names": ["web"]}) == ["site"]
    assert role_loader.default_roles({"group_names": ["web"], "roles": ["app"]}) == ["app"]
    assert role_loader.default_roles({"group_names": ["other"]}) == []


def test_a_variable_chooses_a_dependency(project):
    make_role(project, "db_small")
    make_role(project, "db_large")
    make_role(project, "app", 'dependencies: ["db_{size}"]\n')
    assert role_loader.resolve(["app"], {"size": "large"}) == ["db_large", "app"]
    assert role_loader.resolve(["app"], {"size": "small"}) == ["db_small", "app"]
    with pytest.raises(BadInput, match=r"^role app depends on 'db_huge' \(from 'db_\{size\}'\)"):
        role_loader.resolve(["app"], {"size": "huge"})
    with pytest.raises(BadInput, match="names a variable the host does not set"):
        role_loader.resolve(["app"], {})


def test_a_cycle_is_refused_in_one_line(project):
    make_role(project, "a", "dependencies: [b]\n")
    make_role(project, "b", "dependencies: [c]\n")
    make_role(project, "c", "dependencies: [a]\n")
    with pytest.raises(BadInput) as raised:
        role_loader.resolve(["a"], {})
    assert str(raised.value) == (
        "roles depend on each other in a cycle: a -> b -> c -> a; break it in a meta.yml"
    )
    assert "\n" not in str(raised.value)


def test_an_unknown_role_is_one_line_naming_the_known_ones(project):
    with pytest.raises(BadInput) as raised:
        role_loader.load("nope")
    message = str(raised.value)
    assert message.startswith("no role 'nope' in ") and "known roles: " in message
    assert "nginx" in message and "\n" not in message


def test_a_bad_meta_is_one_line(project):
    make_role(project, "odd", "dependecies: [tls]\n")  # misspelt
    with pytest.raises(BadInput, match=r"meta.yml: unknown keys \['dependecies'\]"):
        role_loader.load("odd")
    make_role(project, "badcheck", "validators:\n  x: {command: 'rm -rf /'}\n")
    with pytest.raises(BadInput, match="validators.x.command must be a list of strings"):
        role_loader.load("badcheck").validators({}, None)


def test_exports_reach_only_the_roles_that_depend_on_them(project):
    make_role(project, "base", role_py="def exports(v, facts):\n    return {'port': 8}\n")
    make_role(project, "app", "dependencies: [base]\n")
    make_role(project, "other")
    roles = [role_loader.load(n) for n in ("base", "app", "other")]
    seen = role_loader.with_exports(roles, {"x": 1}, None)
    assert seen["app"] == {"x": 1, "port": 8}
    assert seen["other"] == {"x": 1} and seen["base"] == {"x": 1}
    assert role_loader.exports_for({}, "base") == {"port": 8}


def test_validators_come_from_meta_and_from_role_py(project):
    make_role(
        project,
        "svc",
        "validators:\n  svc: {command: [svc, --test], error_lines: ERROR}\n",
        "from mtls_deploy.resources import Validator\n"
        "def resources(v, facts):\n    return []\n"
        "def validators(v, facts):\n"
        "    return {'pool': Validator('pool', (('svc' + v['ver'], '-t'),))}\n",
    )
    found = role_loader.load("svc").validators({"ver": "8.2"}, None)
    assert found["svc"].command == (("svc", "--test"),) and found["svc"].error_lines == "ERROR"
    assert found["pool"].command == (("svc8.2", "-t"),)


def test_the_package_roles_group_api_gets_the_api(monkeypatch):
    v = {"group_names": ["api"], "backend": "php"}
    assert [r.name for r in role_loader.host_roles(v)] == [
        "tls",
        "acme",
        "app",
        "backend_php",
        "nginx",
    ]
    assert role_loader.host_roles({"group_names": ["consumers"]}) == []


def test_a_role_py_that_does_not_load_is_one_line(project):
    make_role(project, "typo", role_py="def resources(v, facts)\n    return []\n")
    with pytest.raises(BadInput, match=r"roles/typo/role.py:1: .*fix the role's Python"):
        role_loader.load("typo").call("resources", {}, None)
    make_role(project, "missing", role_py="import no_such_module_anywhere\n")
    with pytest.raises(BadInput, match="cannot load the role: ModuleNotFoundError"):
        role_loader.load("missing").call("resources", {}, None)
