"""Connecting without a host (mtls_deploy/connection.py): what a refused or failed connection says."""

from pathlib import Path

import paramiko
import pytest

from mtls_deploy import connection
from mtls_deploy.connection import ConnectError, SshTarget
from tests.unit.ssh_keys import NAME, new_key, target

# --- connecting: refused before any connection, one line each ---------------------------------


def test_connecting_refuses_that_line_too_instead_of_a_traceback(tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text(f"@revoked {NAME} ssh-ed25519 {new_key().get_base64()}\n")
    with pytest.raises(
        ConnectError, match=r"^api1: line 1 of .* \(markers such as @revoked are not supported\)$"
    ):
        connection.Remote(target(kh, port=1)).open()  # refused before any connection


def test_no_key_file_means_agent_and_default_keys_not_a_traceback(tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    with pytest.raises(
        ConnectError, match=r"^api1: cannot reach deploy@127.0.0.1:1: connection refused"
    ):
        connection.Remote(target(kh, port=1)).open()


def test_a_changed_key_at_connect_time_names_the_right_fix(tmp_path):
    error = paramiko.BadHostKeyException("127.0.0.1", new_key(), new_key())
    message = connection.describe_connect_error(target(tmp_path / "kh"), error)
    assert message.startswith(f"api1: HOST KEY CHANGED for {NAME}: offered ssh-ed25519 SHA256:")
    assert message.endswith(
        "if the host was rebuilt, check the new fingerprint out of band, then run "
        "`inv hosts.trust --host api1 --replace`"
    )


# --- the user's SSH setup: ~/.ssh/config and ProxyJump (mtls_deploy/ssh_config.py) -------------

LAB_VARS = {"ssh_known_hosts_file": "/lab/known_hosts"}


@pytest.fixture
def ssh_config_file(tmp_path, monkeypatch):
    """An SSH config in force (MTLS_DEPLOY_SSH_CONFIG), with an alias, a bastion and a default."""
    from mtls_deploy import ssh_config

    monkeypatch.setattr(ssh_config, "_warned", set())
    path = tmp_path / "ssh_config"
    path.write_text(
        "Host api1\n  HostName 192.0.2.10\n  Port 2222\n  User ops\n  IdentityFile /keys/api\n"
        "  ConnectTimeout 4\n"
        "Host behind\n  HostName 10.0.0.5\n  ProxyJump bastion\n"
        "Host bastion\n  HostName 198.51.100.1\n  User jump\n  Port 2200\n"
        "Host loop-a\n  ProxyJump loop-b\nHost loop-b\n  ProxyJump loop-a\n"
    )
    monkeypatch.setenv("MTLS_DEPLOY_SSH_CONFIG", str(path))
    return path


def test_the_ssh_config_fills_what_the_inventory_leaves_unset(ssh_config_file):
    found = SshTarget.from_vars("api1", LAB_VARS)
    assert (found.address, found.port, found.user) == ("192.0.2.10", 2222, "ops")
    assert (found.key_file, found.timeout, found.jump) == (Path("/keys/api"), 4.0, None)


def test_inventory_variables_win_over_the_ssh_config(ssh_config_file):
    found = SshTarget.from_vars(
        "api1",
        {**LAB_VARS, "ansible_port": 22, "ansible_user": "deploy",
         "ansible_ssh_private_key_file": "/keys/mine", "ssh_connect_timeout": 9},
    )  # fmt: skip
    assert (found.address, found.port, found.user) == ("192.0.2.10", 22, "deploy")
    assert (found.key_file, found.timeout) == (Path("/keys/mine"), 9)


def test_the_config_is_looked_up_under_ansible_host_as_ssh_is_called(ssh_config_file):
    found = SshTarget.from_vars("web", {**LAB_VARS, "ansible_host": "api1"})
    assert (found.host, found.address, found.port) == ("web", "192.0.2.10", 2222)


def test_proxy_jump_from_the_config_is_a_hop_with_our_known_hosts(ssh_config_file):
    found = SshTarget.from_vars("behind", {**LAB_VARS, "ansible_ssh_private_key_file": "/k"})
    hop = found.jump
    assert (found.address, found.port, found.user) == ("10.0.0.5", 22, "root")
    assert (hop.host, hop.address, hop.port, hop.user) == (
        "behind: jump host bastion", "198.51.100.1", 2200, "jump"
    )  # fmt: skip
    # no IdentityFile of its own: the target's key; host key checked in the same file
    assert (hop.key_file, hop.known_hosts, hop.jump_for, hop.jump) == (
        Path("/k"), Path("/lab/known_hosts"), "behind", None
    )  # fmt: skip


def test_common_args_jump_wins_over_the_config_and_none_turns_it_off(ssh_config_file):
    chain = SshTarget.from_vars(
        "behind", {**LAB_VARS, "ansible_ssh_common_args": "-J a@127.0.0.1:2251,bastion"}
    )
    assert (chain.jump.address, chain.jump.jump.address) == ("198.51.100.1", "127.0.0.1")
    assert (chain.jump.jump.user, chain.jump.jump.port) == ("a", 2251)
    direct = SshTarget.from_vars("behind", {**LAB_VARS, "ansible_ssh_common_args": "-J none"})
    assert direct.jump is None


def test_a_proxy_jump_loop_is_one_line(ssh_config_file):
    from mtls_deploy.errors import BadInput

    with pytest.raises(BadInput, match=r"^loop-a: ProxyJump loops \(more than 8 hops\); fix"):
        SshTarget.from_vars("loop-a", LAB_VARS)


def test_an_unreachable_jump_host_is_one_line_naming_it(tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    jumped = SshTarget.from_vars(
        "api1",
        {"ansible_host": "127.0.0.1", "ansible_port": 2201, "ssh_known_hosts_file": str(kh),
         "ansible_ssh_common_args": "-o ProxyJump=hop@127.0.0.1:1"},
    )  # fmt: skip
    with pytest.raises(ConnectError) as refused:
        connection.Remote(jumped).open()
    assert str(refused.value) == (
        "api1: jump host 127.0.0.1: cannot reach hop@127.0.0.1:1: connection refused; "
        "is the host up and sshd running?"
    )


def test_an_unknown_jump_host_key_names_a_fix_that_exists(tmp_path):
    kh = tmp_path / "known_hosts"
    hop = SshTarget.from_vars(
        "api1", {"ssh_known_hosts_file": str(kh), "ansible_ssh_common_args": "-J 127.0.0.1:2251"}
    ).jump
    with pytest.raises(ConnectError) as refused:
        connection._RefuseUnknown(hop).missing_host_key(None, "[127.0.0.1]:2251", new_key())
    message = str(refused.value)
    assert message.startswith("api1: jump host 127.0.0.1: unknown host key for [127.0.0.1]:2251")
    assert message.endswith(
        f"add it to {kh} (`ssh-keyscan -p 2251 127.0.0.1` prints its line); nothing was written"
    )
    assert "hosts.trust" not in message  # the bastion is no inventory host
