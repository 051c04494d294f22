"""Inventory: Ansible's YAML format, precedence with provenance, one-line errors."""

import textwrap

import pytest

from mtls_deploy import inventory
from mtls_deploy.errors import BadInput, UserError
from mtls_deploy.variables import require


def write(folder, files: dict):
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return folder


HOSTS = """
all:
  vars: {backend: php, https_port: 443}
  children:
    api:
      vars: {https_port: 8443}
      hosts:
        api1: {ansible_host: 127.0.0.1, ansible_port: 2201, server_name: API1.example.test}
        api2:
    consumers:
      hosts:
        bob: {ansible_user: bob}
"""


@pytest.fixture
def inv(tmp_path):
    return write(
        tmp_path / "inv",
        {
            "hosts.yml": HOSTS,
            "group_vars/all.yml": "backend: python\nclient_verify: optional\n",
            "group_vars/api.yml": "client_verify: on\n",
            "host_vars/api2.yml": "https_port: 9443\nserver_name: api2.example.test\n",
        },
    )


def test_groups_and_hosts(inv):
    loaded = inventory.load(inv)
    assert inventory.groups_report(loaded) == {"api": ["api1", "api2"], "consumers": ["bob"]}
    assert [h.name for h in loaded.select(group="api")] == ["api1", "api2"]


def test_precedence_lowest_first(inv):
    loaded = inventory.load(inv)
    api1, api2, bob = (loaded.host(n) for n in ("api1", "api2", "bob"))
    assert api1.vars["tls_dir"] == "/etc/nginx/mtls"  # role default
    assert bob.vars["backend"] == "python"  # group_vars/all beats inline all vars
    assert api1.vars["https_port"] == 8443  # group api beats group all
    assert api2.vars["https_port"] == 9443  # host_vars beats group
    assert api2.source_of("https_port").endswith("host_vars/api2.yml")
    assert api1.source_of("tls_dir") == "roles/tls/defaults.yml"


def test_command_line_beats_everything(inv):
    loaded = inventory.load(inv, extra_vars={"https_port": 10443})
    assert loaded.host("api2").vars["https_port"] == 10443
    assert loaded.host("api2").source_of("https_port") == "command line"


def test_values_are_normalised(inv):
    api1 = inventory.load(inv).host("api1")
    assert api1.vars["client_verify"] == "on"  # YAML reads a bare `on` as true
    assert api1.vars["server_name"] == "api1.example.test"


def test_dicts_are_replaced_not_merged(inv):
    write(inv, {"host_vars/api1.yml": "server_cert_files: {cert: /c.pem}\n"})
    assert inventory.load(inv).host("api1").vars["server_cert_files"] == {"cert": "/c.pem"}


def test_unknown_host_lists_the_known_ones(inv):
    with pytest.raises(BadInput, match=r"^unknown host 'api9'; known hosts: api1, api2, bob$"):
        inventory.load(inv).host("api9")


def test_unknown_group(inv):
    with pytest.raises(BadInput, match="unknown group 'web'; known groups: all, api, consumers"):
        inventory.load(inv).select(group="web")


def test_yaml_syntax_error_names_file_and_line(inv):
    write(inv, {"host_vars/api1.yml": "https_port: 8443\nserver_name: [unclosed\n"})
    with pytest.raises(BadInput, match=r"host_vars/api1.yml:3: YAML syntax error"):
        inventory.load(inv)


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "https_port: 70000\n",
            r"api1: https_port port 70000 is out of range \(1-65535\) \(set in .*host_vars/api1.yml\)",
        ),
        ("https_port: '443'\n", r"api1: https_port must be a port number, not '443'"),
        ("ansible_become: 'yes'\n", r"api1: ansible_become must be true or false"),
        ("server_name: 'bad name!'\n", r"api1: server_name 'bad name!' is not a valid DNS name"),
        ("backend: ruby\n", r"api1: backend must be one of php, python, not 'ruby'"),
        (
            "server_ip_addresses: [1.2.3]\n",
            r"api1: server_ip_addresses '1.2.3' is not an IP address",
        ),
    ],
)
def test_wrong_types_name_the_file(inv, text, message):
    write(inv, {"host_vars/api1.yml": text})
    with pytest.raises(BadInput, match=message):
        inventory.load(inv)


def test_missing_required_variable(inv):
    with pytest.raises(BadInput, match=r"api2: https_listen is not set"):
        require(inventory.load(inv).host("api2"), "server_name", "https_listen")


def test_environment_variable_selects_the_inventory(inv, monkeypatch):
    monkeypatch.setenv("MTLS_DEPLOY_INVENTORY", str(inv))
    assert "api2" in inventory.load().hosts


def test_missing_inventory(tmp_path):
    with pytest.raises(UserError, match="no inventory at"):
        inventory.load(tmp_path / "nowhere")


def test_secrets_are_masked(inv):
    write(inv, {"host_vars/bob.yml": "p12_password: hunter2\napi_token: abc\n"})
    report = inventory.host_report(inventory.load(inv).host("bob"))
    assert report["p12_password"]["value"] == "********"
    assert report["api_token"]["value"] == "********"
    assert report["ansible_user"]["value"] == "bob"


def test_group_vars_directory_form(inv):
    write(inv, {"group_vars/consumers/main.yml": "bundle_dir: /srv/bundles\n"})
    assert inventory.load(inv).host("bob").vars["bundle_dir"] == "/srv/bundles"


def test_the_default_inventory_describes_the_lab():
    loaded = inventory.load("inventory")
    api1 = loaded.host("api1")
    assert api1.vars["server_name"] == "api1.lab.test" and api1.vars["ansible_become"] is True
    assert loaded.host("bob").vars["ansible_user"] == "bob"
    assert loaded.groups["api"] == ["api1"] and loaded.groups["consumers"] == ["bob"]


def test_nested_secrets_are_masked_all_the_way_down(inv):
    write(
        inv,
        {
            "host_vars/bob.yml": """\
                smtp: {host: mail.example.test, password: hunter2, auth: {token: t0k3n}}
                mirrors: [{url: https://a.test, secret: s3cr3t}, plain]
                credentials: {user: bob, key: k}
                """
        },
    )
    report = inventory.host_report(inventory.load(inv).host("bob"))
    assert report["smtp"]["value"] == {
        "host": "mail.example.test",
        "password": "********",
        "auth": {"token": "********"},
    }
    assert report["mirrors"]["value"] == [{"url": "https://a.test", "secret": "********"}, "plain"]
    assert report["credentials"]["value"] == "********"  # a secret name hides the whole value
    assert "hunter2" not in repr(report) and "t0k3n" not in repr(report)


def test_relative_key_and_known_hosts_resolve_from_the_project_directory(tmp_path, monkeypatch):
    """Not from the current directory: `cd docs && inv ...` uses the same key file."""
    monkeypatch.delenv("MTLS_DEPLOY_PROJECT", raising=False)
    write(
        tmp_path,
        {
            "inventory/hosts.yml": "all:\n  hosts:\n    api1:\n    bob:\n",
            "inventory/group_vars/all.yml": (
                "ansible_ssh_private_key_file: .lab/id_ed25519\n"
                "ssh_known_hosts_file: keys/known_hosts\n"
            ),
            "inventory/host_vars/bob.yml": (
                "ansible_ssh_private_key_file: ~/.ssh/bob\nssh_known_hosts_file: /etc/kh\n"
            ),
            "docs/README.md": "",
        },
    )
    monkeypatch.chdir(tmp_path / "docs")
    loaded = inventory.load()
    api1, bob = loaded.host("api1"), loaded.host("bob")
    assert api1.vars["ansible_ssh_private_key_file"] == str(tmp_path / ".lab/id_ed25519")
    assert api1.vars["ssh_known_hosts_file"] == str(tmp_path / "keys/known_hosts")
    assert api1.source_of("ssh_known_hosts_file").endswith("inventory/group_vars/all.yml")
    assert bob.vars["ansible_ssh_private_key_file"] == "~/.ssh/bob"  # ~ and absolute: as given
    assert bob.vars["ssh_known_hosts_file"] == "/etc/kh"


def test_the_inventory_is_the_project_directorys(tmp_path, monkeypatch):
    monkeypatch.delenv("MTLS_DEPLOY_INVENTORY", raising=False)
    monkeypatch.delenv("MTLS_DEPLOY_PROJECT", raising=False)
    write(tmp_path, {"inventory/hosts.yml": "all:\n  hosts:\n    api7:\n", "docs/a/b.md": ""})
    monkeypatch.chdir(tmp_path / "docs" / "a")
    assert inventory.inventory_dir() == tmp_path / "inventory"
    assert list(inventory.load().hosts) == ["api7"]
