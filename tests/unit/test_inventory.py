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
        ("backend: ruby\n", r"api1: backend must be one of php, python, proxy, not 'ruby'"),
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


# --- Ansible parity: ranges, patterns, what we refuse -----------------------------------------

RANGED = """
all:
  hosts:
    lone: {ansible_python_interpreter: /usr/bin/python3, ansible_ssh_pipelining: true}
  children:
    api:
      vars: {https_port: 8443}
      hosts:
        api[01:12].example.test: {ansible_user: deploy}
        edge[a:c]:
    db:
      hosts:
        db[1:10:4]-n[1:2]:
"""


@pytest.fixture
def ranged(tmp_path):
    return write(
        tmp_path / "ranged",
        {"hosts.yml": RANGED, "host_vars/api03.example.test.yml": "https_port: 9443\n"},
    )


def test_host_ranges_expand_as_in_ansible(ranged):
    loaded = inventory.load(ranged)
    assert loaded.groups["api"][:2] == ["api01.example.test", "api02.example.test"]
    assert len(loaded.groups["api"]) == 15 and loaded.groups["api"][-3:] == [
        "edgea",
        "edgeb",
        "edgec",
    ]
    assert loaded.groups["db"] == ["db1-n1", "db1-n2", "db5-n1", "db5-n2", "db9-n1", "db9-n2"]
    assert "api[01:12].example.test" not in loaded.hosts


def test_inline_vars_and_host_vars_apply_to_each_expanded_host(ranged):
    loaded = inventory.load(ranged)
    api = [loaded.host(f"api{n:02}.example.test") for n in (1, 3, 12)]
    assert all(h.vars["ansible_user"] == "deploy" for h in api)
    assert [h.vars["https_port"] for h in api] == [8443, 9443, 8443]
    assert api[1].source_of("https_port").endswith("host_vars/api03.example.test.yml")


def test_a_port_after_a_host_name_is_its_ansible_port(ranged):
    write(
        ranged, {"hosts.yml": "all:\n  hosts:\n    n[1:2]:2201:\n    m:2202: {ansible_port: 22}\n"}
    )
    loaded = inventory.load(ranged)
    assert [loaded.host(n).vars["ansible_port"] for n in ("n1", "n2", "m")] == [2201, 2201, 22]


def test_hosts_are_in_natural_order(ranged):
    write(ranged, {"hosts.yml": "all:\n  hosts:\n    n[1:10]:\n"})
    assert list(inventory.load(ranged).hosts)[:3] == ["n1", "n2", "n3"]


def test_ungrouped_is_ansibles_implicit_group(ranged):
    loaded = inventory.load(ranged)
    assert loaded.groups["ungrouped"] == ["lone"]
    assert [h.name for h in loaded.select(["ungrouped"])] == ["lone"]


@pytest.mark.parametrize(
    ("hosts", "group", "expected"),
    [
        (["api0*"], None, [f"api0{n}.example.test" for n in range(1, 10)]),
        (["~api1[0-9]"], None, ["api10.example.test", "api11.example.test", "api12.example.test"]),
        (["db:!db5*"], None, ["db1-n1", "db1-n2", "db9-n1", "db9-n2"]),
        (["edge*:lone"], None, ["edgea", "edgeb", "edgec", "lone"]),
        (["api", "&edge*"], None, ["edgea", "edgeb", "edgec"]),
        (["lone"], "db[0]", ["lone", "db1-n1"]),
        (None, "all:!api:!db", ["lone"]),
    ],
)
def test_select_reads_ansible_host_patterns(ranged, hosts, group, expected):
    assert [h.name for h in inventory.load(ranged).select(hosts, group)] == expected


def test_select_without_a_pattern_is_every_host(ranged):
    assert len(inventory.load(ranged).select()) == 22


def test_a_pattern_matching_nothing_is_one_line(ranged):
    with pytest.raises(BadInput, match=r"^no host matches 'api:&db'; known hosts: api01"):
        inventory.load(ranged).select(["api:&db"])


def test_an_unknown_name_in_a_pattern_is_todays_error(ranged):
    with pytest.raises(BadInput, match=r"^unknown host 'api13' in pattern 'api:api13'; known"):
        inventory.load(ranged).select(["api:api13"])


def test_a_bad_range_in_the_inventory_is_one_line(ranged):
    write(ranged, {"hosts.yml": "all:\n  hosts:\n    api[01:100]:\n"})
    with pytest.raises(BadInput, match=r"^host range 'api\[01:100\]': a zero-padded range"):
        inventory.load(ranged)


def test_ansible_variables_we_do_not_read_pass_quietly(ranged, capsys):
    lone = inventory.load(ranged).host("lone")
    assert lone.vars["ansible_python_interpreter"] == "/usr/bin/python3"
    assert capsys.readouterr().err == ""


def test_ssh_common_args_pass_through_the_schema(ranged):
    write(ranged, {"host_vars/lone.yml": "ansible_ssh_common_args: '-o ProxyJump=deploy@b:22'\n"})
    lone = inventory.load(ranged).host("lone")
    assert lone.vars["ansible_ssh_common_args"] == "-o ProxyJump=deploy@b:22"
    write(
        ranged,
        {"host_vars/lone.yml": """ansible_ssh_common_args: '-o ProxyCommand="ssh -W %h:%p b"'\n"""},
    )
    assert "ProxyCommand" in inventory.load(ranged).host("lone").vars["ansible_ssh_common_args"]


@pytest.mark.parametrize("value", ["-o ProxyCommand=$(reboot)", "-J b; reboot", "-J `id`"])
def test_ssh_common_args_with_shell_characters_are_refused(ranged, value):
    write(ranged, {"host_vars/lone.yml": f"ansible_ssh_common_args: '{value}'\n"})
    with pytest.raises(BadInput, match=r"^lone: ansible_ssh_common_args .*host_vars/lone.yml"):
        inventory.load(ranged)


VAULTED = "$ANSIBLE_VAULT;1.1;AES256\n61626364\n"


@pytest.mark.parametrize("name", ["group_vars/all.yml", "host_vars/lone.yml", "hosts.yml"])
def test_a_vault_encrypted_file_is_refused_in_one_line(ranged, name):
    write(ranged, {name: VAULTED})
    with pytest.raises(BadInput) as caught:
        inventory.load(ranged)
    assert str(caught.value) == (
        f"{ranged / name} is encrypted with ansible-vault: decrypt it (ansible-vault decrypt) or "
        "move the secret to an environment variable; mtls-deploy does not read vault files"
    )


def test_a_vault_encrypted_value_is_refused_in_one_line(ranged):
    write(
        ranged,
        {"host_vars/lone.yml": "db_password: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6162\n"},
    )
    with pytest.raises(BadInput, match=r"host_vars/lone.yml:1 holds a value encrypted with "
                       r"ansible-vault: decrypt it"):  # fmt: skip
        inventory.load(ranged)


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("group_vars/api.yml", "api_name: '{{ inventory_hostname }}'\n", "group_vars/api.yml"),
        ("host_vars/lone.yml", "roles: ['{% if x %}tls{% endif %}']\n", "host_vars/lone.yml"),
        (
            "hosts.yml",
            "all:\n  vars: {https_port: '{{ p }}'}\n  hosts: {a:}\n",
            r"hosts.yml \(group all\)",
        ),
        ("hosts.yml", "all:\n  hosts: {a: {smtp: {host: '{{h}}'}}}\n", r"hosts.yml \(group all\)"),
    ],
)
def test_a_jinja_expression_is_refused_naming_file_and_variable(ranged, name, text, where):
    write(ranged, {name: text})
    variable = (
        text.split(":")[0] if name != "hosts.yml" else ("https_port" if "vars" in text else "smtp")
    )
    with pytest.raises(
        BadInput, match=rf"{where}: {variable} holds a Jinja expression .*write the value itself$"
    ):
        inventory.load(ranged)


@pytest.mark.parametrize(
    ("name", "text", "mode", "words"),
    [
        ("ec2.py", "print('{}')\n", 0o644, "is a dynamic inventory script"),
        ("cloud.sh", "echo '{}'\n", 0o644, "is a dynamic inventory script"),
        ("inventory-script", "#!/bin/sh\necho '{}'\n", 0o755, "is a dynamic inventory script"),
        ("aws_ec2.yml", "plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n", 0o644,
         "configures the inventory plugin 'amazon.aws.aws_ec2'"),
        ("hosts.yml", "plugin: constructed\n", 0o644, "configures the inventory plugin 'constructed'"),
        ("prod.yml", "all:\n  hosts: {p1:}\n", 0o644, "is a second inventory file beside hosts.yml"),
        ("hosts.ini", "[api]\np1\n", 0o644, "is a second inventory file beside hosts.yml"),
        ("more/hosts.yaml", "all: {}\n", 0o644, "is a second inventory file beside hosts.yml"),
    ],
)  # fmt: skip
def test_a_dynamic_inventory_is_refused_in_one_line(ranged, name, text, mode, words):
    write(ranged, {name: text})
    (ranged / name).chmod(mode)
    with pytest.raises(BadInput) as caught:
        inventory.load(ranged)
    message = str(caught.value)
    assert message.startswith(f"{ranged / name} {words}") and "\n" not in message
    assert message.endswith(
        f"mtls-deploy reads one static YAML inventory (hosts.yml, group_vars/, host_vars/): "
        f"print its hosts with `ansible-inventory -i {ranged / name} --list --yaml --export` "
        "and put them in hosts.yml"
    )


def test_other_files_and_hidden_ones_are_left_alone(ranged):
    write(ranged, {"README.md": "# notes\n", ".hidden/x.yml": "all: {}\n", "group_vars/x.yml": ""})
    assert "lone" in inventory.load(ranged).hosts


def test_an_executable_yaml_file_is_still_yaml(ranged):
    (ranged / "hosts.yml").chmod(0o755)  # some file systems mark everything executable
    assert "lone" in inventory.load(ranged).hosts


def test_group_vars_files_beat_every_group_written_in_hosts_yml(inv):
    """Ansible's VARIABLE_PRECEDENCE: all inventory-file group vars, then the group_vars files:
    group_vars/all.yml beats ``vars:`` of group api in hosts.yml (the parity test found it)."""
    write(inv, {"group_vars/all.yml": "https_port: 7443\n"})
    api1 = inventory.load(inv).host("api1")
    assert api1.vars["https_port"] == 7443
    assert api1.source_of("https_port").endswith("group_vars/all.yml")
