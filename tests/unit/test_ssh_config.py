"""The user's SSH setup (mtls_deploy/ssh_config.py): which config file is read, what is taken
from it, the one warning line for what is not, and ProxyJump as Ansible users write it."""

import pytest

from mtls_deploy import ssh_config
from mtls_deploy.errors import BadInput
from mtls_deploy.ssh_config import JumpHop, jump_from_common_args, lookup, parse_jumps


@pytest.fixture(autouse=True)
def fresh_run(monkeypatch):
    """Each test is a run of its own: no option warned about yet."""
    monkeypatch.setattr(ssh_config, "_warned", set())


def use_config(tmp_path, monkeypatch, text: str):
    path = tmp_path / "ssh_config"
    path.write_text(text)
    monkeypatch.setenv("MTLS_DEPLOY_SSH_CONFIG", str(path))
    return path


# --- which file -------------------------------------------------------------------------------


def test_no_config_file_means_the_name_as_it_is(monkeypatch):
    monkeypatch.delenv("MTLS_DEPLOY_SSH_CONFIG", raising=False)
    assert ssh_config.config_path() is None  # tests/conftest.py gives HOME a fresh directory
    assert lookup("api1") == ssh_config.HostSettings(address="api1")


def test_the_users_config_is_read_when_it_exists(monkeypatch, tmp_path):
    monkeypatch.delenv("MTLS_DEPLOY_SSH_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text("Host api1\n  HostName 192.0.2.10\n")
    assert lookup("api1").address == "192.0.2.10"


def test_an_empty_override_reads_no_config(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text("Host api1\n  HostName 192.0.2.10\n")
    monkeypatch.setenv("MTLS_DEPLOY_SSH_CONFIG", "")
    assert lookup("api1").address == "api1"


# --- what is read -----------------------------------------------------------------------------


def test_the_honoured_options_of_a_host_alias(tmp_path, monkeypatch, capsys):
    use_config(
        tmp_path,
        monkeypatch,
        "Host api1\n  HostName 192.0.2.10\n  Port 2222\n  User deploy\n"
        "  IdentityFile ~/.ssh/api_key\n  ProxyJump bastion\n  ConnectTimeout 7\n"
        "Host *\n  User nobody\n",
    )
    found = lookup("api1")
    assert (found.address, found.port, found.user) == ("192.0.2.10", 2222, "deploy")
    assert found.key_file.name == "api_key" and found.key_file.is_absolute()
    assert (found.proxy_jump, found.timeout) == ("bastion", 7.0)
    assert capsys.readouterr().err == ""  # nothing ignored, nothing said


def test_options_not_honoured_are_named_in_one_line_once_per_run(tmp_path, monkeypatch, capsys):
    path = use_config(
        tmp_path,
        monkeypatch,
        "Include ~/.ssh/more\nHost *\n  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile /dev/null\n  ProxyCommand nc %h %p\n",
    )
    lookup("api1")
    lookup("api2")
    err = capsys.readouterr().err
    assert err == (
        "warning: SSH options not honoured, ignored: include, proxycommand, "
        f"stricthostkeychecking, userknownhostsfile (in {path}); mtls-deploy reads only "
        "HostName, User, Port, IdentityFile, ProxyJump, ConnectTimeout and checks host keys in "
        "its own known_hosts file\n"
    )


def test_a_port_that_is_no_number_is_one_line(tmp_path, monkeypatch):
    path = use_config(tmp_path, monkeypatch, "Host api1\n  Port ssh\n")
    with pytest.raises(BadInput) as refused:
        lookup("api1")
    assert str(refused.value) == f"SSH config {path}: port 'ssh' is not a number; fix that line"


def test_a_missing_override_file_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLS_DEPLOY_SSH_CONFIG", str(tmp_path / "nope"))
    with pytest.raises(BadInput, match=r"^cannot read the SSH config .*nope: No such file"):
        lookup("api1")


def test_a_changed_config_is_read_again(tmp_path, monkeypatch):
    import os

    path = use_config(tmp_path, monkeypatch, "Host api1\n  Port 2200\n")
    assert lookup("api1").port == 2200
    path.write_text("Host api1\n  Port 2300\n")
    os.utime(path, (1, 1))  # another mtime, even within the same clock tick
    assert lookup("api1").port == 2300


# --- ansible_ssh_common_args --------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        "-o ProxyJump=bastion",
        "-oProxyJump=bastion",
        "-o 'ProxyJump bastion'",
        "-o proxyjump=bastion",
        "-J bastion",
        "-Jbastion",
    ],
)
def test_proxy_jump_in_common_args(args, capsys):
    assert jump_from_common_args(args, "api1") == "bastion"
    assert capsys.readouterr().err == ""


def test_other_common_args_are_named_in_the_warning(capsys):
    args = "-o StrictHostKeyChecking=no -o ProxyJump=deploy@10.0.0.1:2222 -C"
    assert jump_from_common_args(args, "api1") == "deploy@10.0.0.1:2222"
    assert capsys.readouterr().err.startswith(
        "warning: SSH options not honoured, ignored: StrictHostKeyChecking=no, -C "
        "(in ansible_ssh_common_args of api1); "
    )


def test_no_common_args_no_jump():
    assert jump_from_common_args(None, "api1") is None
    assert jump_from_common_args("", "api1") is None


@pytest.mark.parametrize(
    "args, message",
    [
        ("-o 'ProxyJump=b", "api1: ansible_ssh_common_args \"-o 'ProxyJump=b\" cannot be read "
         "(No closing quotation); fix its quoting"),
        ("-J", "api1: ansible_ssh_common_args: -J needs a value; write -J VALUE"),
        ("-C -o", "api1: ansible_ssh_common_args: -o needs a value; write -o VALUE"),
    ],
)  # fmt: skip
def test_unreadable_common_args_are_one_line(args, message):
    with pytest.raises(BadInput) as refused:
        jump_from_common_args(args, "api1")
    assert str(refused.value) == message


# --- ProxyJump hops -----------------------------------------------------------------------------


def test_hops_in_order():
    assert parse_jumps("a,deploy@b:2222, ssh://c", "api1") == [
        JumpHop(None, "a", None),
        JumpHop("deploy", "b", 2222),
        JumpHop(None, "c", None),
    ]
    assert parse_jumps("[2001:db8::1]:2200", "api1") == [JumpHop(None, "2001:db8::1", 2200)]


def test_none_means_no_jump():
    assert parse_jumps("none", "api1") == []


@pytest.mark.parametrize("spec", ["bastion:ssh", "bastion:70000", "deploy@", "a,,b", "a b"])
def test_a_hop_that_cannot_be_read_is_one_line(spec):
    with pytest.raises(BadInput, match=r"^api1: ProxyJump hop .* is not \[user@\]host\[:port\]"):
        parse_jumps(spec, "api1")
