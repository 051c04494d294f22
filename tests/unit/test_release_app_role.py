"""The app role (roles/app): its exports, its resources, the environment file; and the schema
types it brought (map, one_of)."""

import pytest

from mtls_deploy import role_loader, schema
from mtls_deploy.errors import BadInput
from mtls_deploy.facts import HostFacts
from mtls_deploy.release.environment import env_file, resolved
from mtls_deploy.resources import Directory, File

APP = role_loader.load("app")


def app_vars(**overrides) -> dict:
    v = {**role_loader.defaults("app"), "api_name": "orders", "inventory_hostname": "api1"}
    return {**v, **overrides}


def test_the_exports_tell_the_backends_where_the_app_lives():
    exported = APP.call(
        "exports", app_vars(app_src="app", app_shared=["var/", "storage", "var"]), HostFacts()
    )
    assert exported == {
        "app_enabled": True,
        "app_root": "/srv/orders",
        "app_current": "/srv/orders/current",
        "app_env_file": "/etc/mtls-deploy/orders/app.env",
        "app_shared": ["var", "storage"],
        "app_shared_root": "/srv/orders/shared",
    }
    assert APP.call("exports", app_vars(), HostFacts())["app_enabled"] is False


def test_without_app_src_the_role_wants_nothing():
    assert APP.call("resources", app_vars(), HostFacts()) == []


def test_with_app_src_root_owned_dirs_and_a_secret_env_file(monkeypatch):
    monkeypatch.setenv("ORDERS_DB", "postgres://u:p@db/orders")
    v = app_vars(app_src="app", app_environment={"MODE": "prod", "DB": {"env": "ORDERS_DB"}})
    found = APP.call("resources", v, HostFacts())
    dirs = {r.path: r for r in found if isinstance(r, Directory)}
    assert set(dirs) == {"/srv/orders", "/srv/orders/releases", "/srv/orders/shared",
                         "/etc/mtls-deploy", "/etc/mtls-deploy/orders"}  # fmt: skip
    assert dirs["/etc/mtls-deploy/orders"].mode == 0o700
    [env] = [r for r in found if isinstance(r, File)]
    assert (env.path, env.mode, env.owner, env.secret) == (
        "/etc/mtls-deploy/orders/app.env",
        0o600,
        "root",
        True,
    )
    assert env.content == b'MODE="prod"\nDB="postgres://u:p@db/orders"\n'
    assert env.notify == ("app environment changed",)


def test_a_missing_control_machine_variable_is_one_line_without_values(monkeypatch):
    monkeypatch.delenv("ORDERS_DB", raising=False)
    with pytest.raises(
        BadInput, match=r"^api1: app_environment.DB comes from \$ORDERS_DB, which is not set"
    ):
        resolved("api1", {"MODE": "secret-mode", "DB": {"env": "ORDERS_DB"}}, {})


def test_a_multi_line_value_from_the_environment_is_refused_unprinted():
    with pytest.raises(BadInput) as refused:
        resolved("api1", {"KEY": {"env": "K"}}, {"K": "line1\nhunter2"})
    assert "hunter2" not in str(refused.value) and "one line" in str(refused.value)


def test_the_env_file_escapes_what_systemd_would_read():
    assert env_file({"A": 'say "hi" $HOME `x` \\n'}) == b'A="say \\"hi\\" \\$HOME \\`x\\` \\\\n"\n'


SPEC = schema.role_schema("app")["app_environment"]


def test_a_map_checks_each_key_and_value():
    assert schema.check_value({"A_1": "x", "B": {"env": "C"}}, SPEC) == {
        "A_1": "x",
        "B": {"env": "C"},
    }
    with pytest.raises(ValueError, match="has a bad key: '1A' is not an environment variable name"):
        schema.check_value({"1A": "x"}, SPEC)
    with pytest.raises(ValueError, match=r"^\.A must be one line of text or a mapping of `env`"):
        schema.check_value({"A": "x\ny"}, SPEC)
    with pytest.raises(ValueError, match="has no key 'file'"):
        schema.check_value({"file": "x"}, SPEC["values"]["alternatives"][1])


def test_a_map_and_a_one_of_need_their_parts():
    with pytest.raises(BadInput, match="type map needs keys and values"):
        schema.validate_spec("v", {"type": "map"}, "x.yml")
    with pytest.raises(BadInput, match="type one_of needs alternatives"):
        schema.validate_spec("v", {"type": "one_of"}, "x.yml")
    with pytest.raises(BadInput, match="type str needs a pattern"):
        schema.validate_spec(
            "v", {"type": "map", "keys": {"type": "str"}, "values": {"type": "bool"}}, "x.yml"
        )


def test_app_shared_refuses_what_leaves_the_shared_root():
    spec = schema.role_schema("app")["app_shared"]
    for bad in (["../etc"], ["/var"], ["a/../../b"], ["."]):
        with pytest.raises(ValueError):
            schema.check_value(bad, spec)
    assert schema.check_value(["var/", "storage/app"], spec) == ["var/", "storage/app"]
