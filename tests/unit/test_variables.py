"""Every host's variables are checked against the engine's schema and its roles' when the
inventory loads, before any connection: the attacks an outside review proved, refused with one
line; misspelt variables warned about; other tools' variables left alone."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mtls_deploy import inventory, variables
from mtls_deploy.errors import BadInput

ROOT = Path(__file__).resolve().parents[2]

HOSTS = """
all:
  children:
    api:
      hosts:
        api1: {ansible_host: 127.0.0.1, ansible_port: 2299, server_name: api1.example.test,
               https_port: 8443, https_listen: 127.0.0.1}
    consumers:
      hosts:
        bob: {ansible_host: 127.0.0.1, ansible_port: 2298}
"""


@pytest.fixture
def inv(tmp_path):
    folder = tmp_path / "inventory"
    (folder / "host_vars").mkdir(parents=True)
    (folder / "group_vars").mkdir()
    (folder / "hosts.yml").write_text(HOSTS)
    return folder


def host_vars(folder: Path, host: str, text: str) -> Path:
    path = folder / "host_vars" / f"{host}.yml"
    path.write_text(textwrap.dedent(text))
    return path


# The attacks the review proved, each as the inventory would carry it.
ATTACKS = {
    "body size opens a location without a certificate": (
        "client_max_body_size",
        'client_max_body_size: "1m;\\n error_page 495 496 = @open;\\n location @open '
        "{ fastcgi_pass unix:/run/php/api-php.sock; fastcgi_param VERIFIED SUCCESS; "
        'fastcgi_param DN CN=admin; } #"\n',
        "is not an nginx size",
    ),
    "unit name runs a command as root": (
        "python_unit",
        'backend: python\npython_unit: "api-python.service; touch /tmp/x; true"\n',
        "is not a systemd unit name",
    ),
    "server_name with a final newline": (
        "server_name",
        'server_name: "a.test\\n"\n',
        "'a.test\\n' is not a valid DNS name",
    ),
    "https_listen with a scope id": (
        "https_listen",
        'https_listen: "fe80::1%x; return 200"\n',
        "has an IPv6 scope id",
    ),
    "php socket path ends the directive": (
        "php_socket",
        'php_socket: "/run/php/api.sock;\\n}\\nserver { listen 80"\n',
        "is not an absolute, normalised path",
    ),
    "pool user adds a pool option": (
        "php_user",
        'php_user: "api\\nphp_admin_value[open_basedir] = /"\n',
        "is not a user or group name",
    ),
    "php version reaches the handler": (
        "php_version",
        'php_version: "8.2; rm -rf /"\n',
        "is not a PHP version",
    ),
    "alias adds a directive": (
        "server_aliases",
        'server_aliases: ["b.test;\\n return 200"]\n',
        "is not a valid DNS name",
    ),
    "memory limit adds a unit setting": (
        "python_memory_max",
        'backend: python\npython_memory_max: "128M\\nExecStartPre=/bin/touch /tmp/x"\n',
        "is not a systemd size",
    ),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_an_attack_is_refused_naming_host_variable_value_and_file(inv, attack):
    name, text, problem = ATTACKS[attack]
    path = host_vars(inv, "api1", text)
    with pytest.raises(BadInput) as refused:
        inventory.load(inv)
    message = str(refused.value)
    assert message.startswith(f"api1: {name}")
    assert problem in message and f"(set in {path})" in message
    assert "\n" not in message


def test_a_bad_value_from_the_command_line_names_it(inv):
    with pytest.raises(
        BadInput, match=r"api1: client_max_body_size '1m;' .*\(set in command line\)"
    ):
        inventory.load(inv, extra_vars={"client_max_body_size": "1m;"})


def test_a_group_file_is_named_for_its_bad_value(inv):
    (inv / "group_vars" / "api.yml").write_text("nginx_log_dir: /var/log/../../etc\n")
    with pytest.raises(
        BadInput, match=r"api1: nginx_log_dir '/var/log/\.\./\.\./etc' .*group_vars/api.yml"
    ):
        inventory.load(inv)


def test_a_nested_value_is_named_with_its_key(inv):
    host_vars(inv, "api1", "server_cert_files: {cert: /c.pem, crt: /x.pem}\n")
    with pytest.raises(
        BadInput, match=r"api1: server_cert_files has no key 'crt' \(keys: cert, chain, key, ca\)"
    ):
        inventory.load(inv)


def test_only_the_roles_a_host_has_are_checked(inv):
    """bob (no roles) is not provisioned: nginx's variables on it are nobody's business."""
    host_vars(inv, "bob", "client_max_body_size: whatever\n")
    assert inventory.load(inv).host("bob").vars["client_max_body_size"] == "whatever"


def test_the_backend_chooses_which_schema_applies(inv):
    host_vars(inv, "api1", "backend: python\nphp_user: 'not checked: php is not used'\n")
    inventory.load(inv)
    host_vars(inv, "api1", "backend: php\nphp_user: 'Bad User'\n")
    with pytest.raises(BadInput, match="api1: php_user 'Bad User' is not a user or group name"):
        inventory.load(inv)


def test_a_host_role_list_is_checked_and_a_missing_role_named(inv):
    path = host_vars(inv, "api1", "roles: [tls, ngnix]\n")
    with pytest.raises(
        BadInput, match=rf"api1: roles lists 'ngnix', .*\(set in {path}\); known roles: "
    ):
        inventory.load(inv)


def test_values_are_normalised_where_the_file_set_them(inv):
    host_vars(inv, "api1", "client_verify: on\nhttps_listen: '::0:1'\nserver_name: API1.test\n")
    api1 = inventory.load(inv).host("api1")
    assert (api1.vars["client_verify"], api1.vars["https_listen"]) == ("on", "::1")
    assert api1.vars["server_name"] == "api1.test"


# --- misspelt variables ----------------------------------------------------------------------


def test_a_variable_one_edit_from_a_declared_one_is_a_warning(inv, capsys):
    path = host_vars(inv, "api1", "client_verfiy: optional\n")
    (inv / "group_vars" / "all.yml").write_text("ngnix_log_dir: /var/log/x\n")
    inventory.load(inv)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "warning: ngnix_log_dir is not a variable any role or the engine reads; did you mean "
        f"nginx_log_dir? (set in {inv / 'group_vars' / 'all.yml'})",
        "warning: client_verfiy is not a variable any role or the engine reads; did you mean "
        f"client_verify? (set in {path})",
    ]  # group_vars/all: said once, not once per host


def test_other_tools_variables_pass_silently(inv, capsys):
    host_vars(
        inv,
        "api1",
        "ansible_python_interpreter: /usr/bin/python3\nansible_hots: x\n"
        "ntp_servers: [a]\nmy_team: payments\n",
    )
    inventory.load(inv)
    assert capsys.readouterr().err == ""


def test_the_lab_inventory_loads_without_a_warning(capsys, monkeypatch):
    monkeypatch.delenv("MTLS_DEPLOY_INVENTORY", raising=False)
    inventory.load(ROOT / "inventory")
    assert capsys.readouterr().err == ""


def test_role_names_by_group_or_by_list():
    # nginx (groups: [api]) after its dependencies: tls, acme (it acts only with server_cert
    # acme), and the backend its variable chooses, after app (it acts only with app_src).
    assert variables.role_names({"group_names": ["api"], "backend": "python"}) == [
        "tls",
        "acme",
        "app",
        "backend_python",
        "nginx",
    ]
    assert variables.role_names({"group_names": ["api"], "roles": ["tls"]}) == ["tls"]
    assert variables.role_names({"group_names": ["consumers"]}) == []


# --- through the real command: before any connection, nothing written --------------------------


def run_inv(*args, inventory: Path):
    env = {**os.environ, "MTLS_DEPLOY_INVENTORY": str(inventory), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args],
        capture_output=True,
        text=True,
        cwd=inventory.parent,
        env=env,
        timeout=60,
    )


COMMANDS = [
    ["provision", "--host", "api1"],
    ["provision", "--host", "api1", "--check"],
    ["smoke-test", "--host", "api1"],
    ["inventory", "--host", "api1"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize(
    "attack",
    ["body size opens a location without a certificate", "unit name runs a command as root"],
)
def test_the_command_refuses_before_connecting(inv, command, attack):
    """Port 2299 has no sshd: a refusal that names the value came before any connection."""
    host_vars(inv, "api1", ATTACKS[attack][1])
    before = sorted(inv.parent.rglob("*"))
    result = run_inv(*command, inventory=inv)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: api1: {ATTACKS[attack][0]} "), lines
    assert "Traceback" not in result.stderr and "cannot reach" not in result.stdout
    assert sorted(inv.parent.rglob("*")) == before


def test_the_command_warns_about_a_misspelt_variable(inv):
    host_vars(inv, "api1", "client_verfiy: optional\n")
    result = run_inv("inventory", "--host", "api1", inventory=inv)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        "warning: client_verfiy is not a variable any role or the engine reads; "
        "did you mean client_verify? (set in "
    )
    assert lines[0].endswith("host_vars/api1.yml)")
