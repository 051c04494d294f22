"""Start-up stays cheap while the inventory grows (issue "Architecture"): checking the variables
of every host looks the roles up once, not once per variable of every host."""

import socket

import paramiko
import pytest

from mtls_deploy import connection, inventory, project, role_loader
from mtls_deploy.connection import ConnectError
from tests.unit.ssh_keys import target

FLEET = (
    "all:\n  children:\n    api:\n      vars: {backend: php}\n      hosts:\n        api[01:30]:\n"
)


def counted_project_dirs(monkeypatch) -> list:
    calls = []
    real = project.project_dir

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(project, "project_dir", counting)
    return calls


def test_thirty_hosts_find_the_project_directory_once(tmp_path, monkeypatch):
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "hosts.yml").write_text(FLEET)
    monkeypatch.chdir(tmp_path)
    calls = counted_project_dirs(monkeypatch)
    loaded = inventory.load(tmp_path / "inventory")
    assert len(loaded.select(["api*"])) == 30
    assert len(calls) < 30  # fewer than one a host; it was 1,794: every role lookup afresh


def test_outside_the_check_each_lookup_sees_the_folders_as_they_are(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inventory").mkdir()
    assert role_loader.role_folder("mine") is None
    (tmp_path / "roles" / "mine").mkdir(parents=True)
    (tmp_path / "roles" / "mine" / "role.py").write_text("")
    assert role_loader.role_folder("mine") == tmp_path / "roles" / "mine"
    with role_loader.pinned():
        assert role_loader.role_folder("mine") == tmp_path / "roles" / "mine"
        assert "mine" in role_loader.all_roles()
    assert role_loader._pinned is None


# --- SSH: Nagle's algorithm off, as OpenSSH's client has it ------------------------------------


@pytest.fixture
def listener():
    server = socket.create_server(("127.0.0.1", 0))
    yield server.getsockname()[1]
    server.close()


def test_the_ssh_socket_has_nagle_off(tmp_path, listener, monkeypatch):
    """Each small write of the key exchange waited for the host's delayed ACK (40 ms): 70 ms
    to connect and authenticate in the lab instead of 25."""
    import fabric

    seen = {}

    def opened(self):
        seen["sock"] = sock = self.connect_kwargs.get("sock")
        seen["nodelay"] = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        raise paramiko.SSHException("stop here")

    monkeypatch.setattr(fabric.Connection, "open", opened)
    (tmp_path / "known_hosts").write_text("")
    with pytest.raises(ConnectError, match="SSH to deploy@127.0.0.1:.* failed: SSHException"):
        connection.Remote(target(tmp_path / "known_hosts", port=listener)).open()
    assert seen["nodelay"] == 1
    assert seen["sock"].fileno() == -1  # closed again after the failure


def test_a_refused_connection_is_the_same_line_as_before(tmp_path):
    (tmp_path / "known_hosts").write_text("")
    with pytest.raises(paramiko.ssh_exception.NoValidConnectionsError):
        connection.tcp_socket(target(tmp_path / "known_hosts", port=1))
    with pytest.raises(ConnectError, match=r"cannot reach deploy@127.0.0.1:1: connection refused"):
        connection.Remote(target(tmp_path / "known_hosts", port=1)).open()
