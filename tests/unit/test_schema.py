"""Variable schemas: the checker, the schema files themselves, and that every string a role or
the engine reads refuses what could end a directive or a command."""

import re

import pytest
import yaml

from mtls_deploy import schema, variables
from mtls_deploy.errors import BadInput
from mtls_deploy.role_loader import PACKAGE_ROLES as ROLES_DIR

ROLES = schema.all_roles()


def every_spec() -> dict[str, dict]:
    """{"role:variable": spec} for every role and the engine."""
    found = {f"engine:{name}": spec for name, spec in variables.engine_specs().items()}
    for role in ROLES:
        found |= {f"{role}:{name}": spec for name, spec in schema.role_schema(role).items()}
    return found


def defaults() -> dict:
    merged = {}
    for role in ROLES:
        merged |= yaml.safe_load((ROLES_DIR / role / "defaults.yml").read_text()) or {}
    return merged


# --- the checker -------------------------------------------------------------------------------

GOOD = [
    ({"type": "port"}, 443, 443),
    ({"type": "bool"}, False, False),
    ({"type": "int", "min": 1, "max": 4}, 4, 4),
    ({"type": "float", "min": 0, "max": 1}, 0.5, 0.5),
    ({"type": "str", "choices": ["on", "optional"]}, True, "on"),  # YAML 1.1's bare on
    ({"type": "str", "pattern": "[0-9]+[km]?"}, "512k", "512k"),
    ({"type": "dns_name"}, "API1.Example.test", "api1.example.test"),
    ({"type": "ip"}, "::0:1", "::1"),
    ({"type": "listen"}, "*", "*"),
    ({"type": "address"}, "10.0.0.1", "10.0.0.1"),
    ({"type": "address"}, "api1.lab.test", "api1.lab.test"),
    ({"type": "path"}, "/", "/"),
    ({"type": "path"}, "/srv/my-app_2/.well-known", "/srv/my-app_2/.well-known"),
    ({"type": "user"}, "www-data", "www-data"),
    ({"type": "unit"}, "api-python.v2", "api-python.v2"),
    ({"type": "local_path"}, "~/my keys/id (work)", "~/my keys/id (work)"),
    ({"type": "list", "elements": {"type": "ip"}}, ["10.0.0.1"], ["10.0.0.1"]),
]


@pytest.mark.parametrize(("spec", "value", "normalised"), GOOD, ids=lambda x: repr(x)[:30])
def test_good_values_pass_normalised(spec, value, normalised):
    assert schema.check_value(value, spec) == normalised


BAD = [
    ({"type": "port"}, 70000, "port 70000 is out of range (1-65535)"),
    ({"type": "port"}, "443", "must be a port number, not '443'"),
    ({"type": "port"}, True, "must be a port number, not True"),
    ({"type": "int", "min": 1, "max": 4}, 5, "5 is out of range (1-4)"),
    ({"type": "bool"}, "yes", "must be true or false, not 'yes'"),
    ({"type": "str", "choices": ["php", "python"]}, "ruby", "must be one of php, python"),
    ({"type": "str", "pattern": "[0-9]+[km]?", "format": "a size"}, "1m;", "'1m;' is not a size"),
    ({"type": "dns_name"}, "a.test\n", "'a.test\\n' is not a valid DNS name"),
    ({"type": "dns_name"}, "-a.test", "is not a valid DNS name"),
    ({"type": "ip"}, "fe80::1%x; return 200", "has an IPv6 scope id"),
    ({"type": "ip"}, "1.2.3", "'1.2.3' is not an IP address"),
    ({"type": "listen"}, "fe80::1%eth0", "has an IPv6 scope id"),
    ({"type": "path"}, "relative/path", "is not an absolute, normalised path"),
    ({"type": "path"}, "/srv/../etc", "is not an absolute, normalised path"),
    ({"type": "path"}, "/srv/./x", "is not an absolute, normalised path"),
    ({"type": "path"}, "/srv//x", "is not an absolute, normalised path"),
    ({"type": "path"}, "/srv/x/", "is not an absolute, normalised path"),
    ({"type": "path"}, "/srv/a b", "is not an absolute, normalised path"),
    ({"type": "user"}, "Root", "is not a user or group name"),
    ({"type": "unit"}, "api.service; touch /tmp/x", "is not a systemd unit name"),
    ({"type": "local_path"}, "key\n", "must be a file path on this machine (one line)"),
    ({"type": "list", "elements": {"type": "ip"}}, "10.0.0.1", "must be a list"),
    ({"type": "dict", "options": {"a": {"type": "bool"}}}, {"b": 1}, "has no key 'b' (keys: a)"),
    ({"type": "dict", "options": {"a": {"type": "bool"}}}, {"a": 1}, ".a must be true or false"),
]


@pytest.mark.parametrize(("spec", "value", "message"), BAD, ids=lambda x: repr(x)[:30])
def test_bad_values_say_why(spec, value, message):
    with pytest.raises(ValueError) as problem:
        schema.check_value(value, spec)
    assert message in str(problem.value)
    assert "\n" not in str(problem.value)


def test_a_long_bad_value_is_cut_short_in_the_message():
    with pytest.raises(ValueError) as problem:
        schema.check_value("1m;" + "x" * 500, {"type": "str", "pattern": "[0-9]+m"})
    assert len(str(problem.value)) < 150 and "..." in str(problem.value)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"type": "str"}, "type str needs a pattern or choices"),
        ({"type": "text", "pattern": "x"}, "unknown type or key"),
        ({"type": "str", "pattern": "x", "regex": "y"}, "unknown type or key"),
        ({"type": "int", "min": 0}, "type int needs max"),
        ({"type": "list"}, "type list needs elements"),
        ({"type": "list", "elements": {"type": "str"}}, "type str needs a pattern or choices"),
    ],
)
def test_a_bad_schema_entry_is_one_line_naming_the_schema(spec, problem):
    with pytest.raises(BadInput, match=rf"^roles/x/schema.yml: v: {re.escape(problem)}"):
        schema.validate_spec("v", spec, "roles/x/schema.yml")


@pytest.mark.parametrize(
    ("a", "b", "near"),
    [
        ("client_verfiy", "client_verify", True),  # two neighbours swapped
        ("client_verif", "client_verify", True),  # one removed
        ("clientt_verify", "client_verify", True),  # one added
        ("client_verifx", "client_verify", True),  # one replaced
        ("cleint_verfiy", "client_verify", False),  # two edits
        ("client_verify", "client_verify", False),  # the same name is no typo
        ("my_app_setting", "client_verify", False),
    ],
)
def test_one_edit_apart(a, b, near):
    assert schema.one_edit_apart(a, b) is near
    assert schema.one_edit_apart(b, a) is near


# --- the schema files --------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_declared_and_passes_its_schema(role):
    values = yaml.safe_load((ROLES_DIR / role / "defaults.yml").read_text()) or {}
    specs = schema.role_schema(role)
    assert sorted(values.keys() - specs.keys()) == []
    for name, value in values.items():
        assert schema.check_value(value, specs[name]) == value


@pytest.mark.parametrize("role", ROLES)
def test_every_declared_variable_has_a_type_and_a_description(role):
    text = yaml.safe_load((ROLES_DIR / role / "schema.yml").read_text())
    for name, spec in text.items():
        assert "declared_by" in spec or spec.get("description"), f"{role}: {name}"


# v["x"], v.get("x"), with_defaults(ROLE, v)["x"], context["x"] (the template context)
READ = re.compile(r"""(?:\bv|with_defaults\(ROLE, v\)|\bcontext)(?:\.get\(|\[)\s*["'](\w+)["']""")
COMPUTED = {"inventory_hostname", "group_names"}


@pytest.mark.parametrize("role", ROLES)
def test_every_variable_a_role_reads_is_declared(role):
    source = (ROLES_DIR / role / "role.py").read_text()
    read = set(READ.findall(source)) - COMPUTED
    declared = set(schema.role_schema(role)) | set(variables.engine_specs()) | exported()
    assert sorted(read - declared) == []


def exported() -> set[str]:
    """What any role exports to the roles that depend on it (role.py's ``exports``)."""
    from mtls_deploy.inventory import role_defaults
    from mtls_deploy.role_loader import exports_for

    v = {k: x for layer in role_defaults() for k, x in layer.values.items()}
    v |= {"server_name": "api1.example.com", "inventory_hostname": "api1"}
    return {name for role in ROLES for name in exports_for(v, role)}


def test_every_variable_a_backend_template_reads_is_declared():
    """The backend roles hand their php_*/python_* variables to their templates as they are."""
    from mtls_deploy.templating import TEMPLATES_DIR

    for template in [*TEMPLATES_DIR.glob("php/*.j2"), *TEMPLATES_DIR.glob("backend_python/*.j2")]:
        jinja = " ".join(re.findall(r"\{[{%](.*?)[}%]\}", template.read_text()))
        used = set(re.findall(r"\b((?:php|python)_\w+)", jinja))
        assert used, template.name  # the regex finds what the template reads
        assert sorted(used - variables.declared_names()) == [], template.name


# --- no character that could end a directive or a command --------------------------------------

EXAMPLES = {  # a good value for declared strings without a non-empty default
    "ansible_host": "api1.example.test",
    "ansible_user": "deploy",
    "ansible_ssh_private_key_file": "~/.ssh/id_ed25519",
    "ssh_known_hosts_file": "~/.ssh/known_hosts",
    "server_name": "api1.example.test",
    "https_listen": "127.0.0.1",
    "roles": ["nginx"],
    "client_names": ["alice"],
    "bundle_dir": "~/.mtls/{api_name}",
    "server_aliases": ["www.example.test"],
    "server_ip_addresses": ["10.0.0.1"],
    "php_version": "8.2",
    "pki_key_type": "ec",
    "lab_release": "trixie",
    **dict.fromkeys(
        ["client_lifetime", "server_lifetime", "crl_lifetime", "ca_lifetime", "warn_before"], "30d"
    ),
    "client_renew_before": "12h",
    "server_cert_files": {"cert": "c.pem", "chain": "", "key": "k.pem"},
    "acme_email": "ops@example.test",
    "acme_ca_bundle": "~/acme-ca.pem",
    "acme_directory": "https://acme.example.test/directory",
    "acme_eab_kid": "kid-1",
    "acme_eab_hmac_key": "c2VjcmV0",
    "ansible_ssh_common_args": "-o ProxyJump=deploy@bastion.example.test:2222",
    "app_src": "app",
    "app_exclude": ["*.log"],
    "app_shared": ["var"],
    "app_environment": {"APP_MODE": "production"},
    "mtls_routes": [{"path": "/admin", "allow": {"names": ["alice"], "ou": ["ops"]}}],
    "proxy_hardening": ["jit"],
    "proxy_environment": {"WORKERS": "2"},
}
FRAGMENTS = [";", "\n", "\r", "\0", "{", "}", "'", '"', "$(id)", "`id`", "|", "&", "<", ">", " ", "#", "\\", "*"]  # fmt: skip
# Characters a schema allows on purpose, by type: paths on the control machine never reach a
# config file or a remote command.
ALLOWED = {"local_path": set(FRAGMENTS) - {"\n", "\r", "\0"}}
# By variable: ansible_ssh_common_args is ssh options with spaces and quotes, split on the
# control machine (shlex) for its ProxyJump, never written to a file or run (ssh_config.py).
# app_exclude: glob patterns read on the control machine only (release/tree.py); app_environment:
# any one-line value, escaped into the root-only env file (release/environment.py env_file).
ALLOWED_VARIABLES = {
    "ansible_ssh_common_args": {" ", "'", '"'},
    **dict.fromkeys(["app_exclude", "app_environment"], set(FRAGMENTS) - {"\n", "\r", "\0"}),
    # proxy_command: each item one argument, quoted for systemd by backend_proxy ($, %, quotes,
    # backslashes read back as written: test_backend_proxy.py); proxy_environment: a one-line
    # value quoted into Environment="...". No shell reads either.
    **dict.fromkeys(["proxy_command", "proxy_environment"], set(FRAGMENTS) - {"\n", "\r", "\0"}),
}


def string_cases():
    """(id, spec, good value) for every declared variable that holds text, lists and dicts
    of text included (their first element or key)."""
    good = defaults() | EXAMPLES
    for key, spec in every_spec().items():
        name = key.split(":")[1]
        if spec["type"] in ("bool", "int", "float", "port"):
            continue
        allowed = ALLOWED_VARIABLES.get(name) or ALLOWED.get(inner_type(spec), set())
        yield pytest.param(spec, good.get(name), allowed, id=key)


def with_fragment(spec: dict, value, fragment: str):
    """``value`` with ``fragment`` appended to its text (in a list: to its first element; in a
    dict: to its first option)."""
    if spec["type"] == "list":
        return [with_fragment(spec["elements"], value[0], fragment)]
    if spec["type"] == "dict":
        first = next(iter(value))
        return {**value, first: with_fragment(spec["options"][first], value[first], fragment)}
    if spec["type"] == "map":
        return {key: with_fragment(spec["values"], item, fragment) for key, item in value.items()}
    return f"{value}{fragment}"


def inner_type(spec: dict) -> str:
    if spec["type"] == "list":
        return inner_type(spec["elements"])
    if spec["type"] == "dict":
        return inner_type(next(iter(spec["options"].values())))
    return spec["type"]


@pytest.mark.parametrize("fragment", FRAGMENTS, ids=repr)
@pytest.mark.parametrize(("spec", "good", "allowed"), list(string_cases()))
def test_no_declared_string_takes_a_character_its_schema_does_not_allow(
    spec, good, allowed, fragment
):
    assert good not in (None, "", []), "give this variable a good value in EXAMPLES"
    assert schema.check_value(good, spec) is not None
    if fragment in allowed:
        schema.check_value(with_fragment(spec, good, fragment), spec)
        return
    with pytest.raises(ValueError):
        schema.check_value(with_fragment(spec, good, fragment), spec)


def test_a_pattern_that_is_no_regular_expression_is_named():
    with pytest.raises(BadInput, match=r"^x.yml: v: pattern '\[a-' is not a regular expression"):
        schema.validate_spec("v", {"type": "str", "pattern": "[a-"}, "x.yml")


def test_declared_by_points_at_the_owner_and_no_further(monkeypatch):
    assert schema.resolve("tls_dir", {"declared_by": "tls"})["type"] == "path"
    with pytest.raises(BadInput, match="tls_dir: declared_by nginx, which does not declare it"):
        schema.resolve("tls_dir", {"declared_by": "nginx"})  # nginx only points at tls
    with pytest.raises(BadInput, match="no role 'nope'"):
        schema.resolve("x", {"declared_by": "nope"})


def test_describe_says_what_a_spec_accepts():
    assert schema.describe({"type": "int", "min": 1, "max": 4}) == "an integer, 1-4"
    assert (
        schema.describe({"type": "str", "choices": ["on", "optional"]}) == "one of `on`, `optional`"
    )
    assert (
        schema.describe({"type": "list", "elements": {"type": "ip"}}) == "a list of: an IP address"
    )
    assert schema.describe({"type": "path", "max_length": 107}) == (
        "an absolute path, at most 107 characters"
    )
