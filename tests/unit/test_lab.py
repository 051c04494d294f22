"""The lab's pure parts: sshd drop-in, known_hosts and authorized_keys edits, pid files, checks."""

import multiprocessing
import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from mtls_deploy.errors import BadInput, UserError
from mtls_deploy.lab import LabHost
from mtls_deploy.lab.base import debootstrap_command
from mtls_deploy.lab.containers import (
    nspawn_command,
    require_port_free,
    ssh_banner,
    stop,
    supervised,
)
from mtls_deploy.lab.keys import ensure_key_pair, record_host_key
from mtls_deploy.lab.procfs import is_nspawn_of, parse_pid, parse_stat, running_pid
from mtls_deploy.lab.root import (
    authorized_keys_text,
    passwd_entry,
    sshd_drop_in,
    write_authorized_keys,
)
from mtls_deploy.lab.spec import HostStatus, check_hosts, paths_for, require_tools
from mtls_deploy.lab.verbs import status, up

API1 = LabHost("api1", "127.0.0.1", 2201, "deploy", sudo=True)
BOB = LabHost("bob", "127.0.0.1", 2202, "bob", sudo=False)
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAE4yampipZdJhMYYJmQvLaMu9Ks5a6BHgEtZaPxVlQt"


@pytest.fixture
def lab_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLS_DEPLOY_LAB_ROOT", str(tmp_path / "lab"))
    monkeypatch.setenv("MTLS_DEPLOY_LAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "lab"


# --- sshd drop-in ------------------------------------------------------------------------------


def test_sshd_drop_in_listens_on_the_hosts_loopback_port_only():
    text = sshd_drop_in(API1)
    assert "Port 2201\n" in text
    assert "ListenAddress 127.0.0.1\n" in text
    assert "PermitRootLogin no\n" in text
    assert "PasswordAuthentication no\n" in text


# --- known_hosts -------------------------------------------------------------------------------


def test_record_host_key_reads_the_key_from_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "etc/ssh").mkdir(parents=True)
    (root / "etc/ssh/ssh_host_ed25519_key.pub").write_text(f"{ED25519} root@api1\n")
    (tmp_path / "known_hosts").write_text("[127.0.0.1]:2201 ssh-ed25519 STALE\n")
    record_host_key(tmp_path, API1, root)
    assert (tmp_path / "known_hosts").read_text() == f"[127.0.0.1]:2201 {ED25519}\n"


def record_many(state_dir: str, port: int) -> None:
    """In a process of its own: record lab hosts on ``port``..``port + 39``, one at a time."""
    root = Path(state_dir) / "root"
    for offset in range(40):
        record_host_key(
            Path(state_dir),
            LabHost(f"h{offset}", "127.0.0.1", port + offset, "u", sudo=False),
            root,
        )


def test_two_processes_recording_host_keys_at_once_lose_no_line(tmp_path):
    """The test suite's two workers boot lab hosts side by side: each record must survive the
    other's (a read-change-write without a lock loses lines)."""
    (tmp_path / "root/etc/ssh").mkdir(parents=True)
    (tmp_path / "root/etc/ssh/ssh_host_ed25519_key.pub").write_text(f"{ED25519} root@h\n")
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=record_many, args=(str(tmp_path), p)) for p in (3000, 4000)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert len((tmp_path / "known_hosts").read_text().splitlines()) == 80


# --- the lab's key pair and authorized_keys ---------------------------------------------------


def test_key_pair_is_private_and_stable(tmp_path):
    first = ensure_key_pair(tmp_path / ".lab")
    key_file = tmp_path / ".lab/id_ed25519"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert first.startswith("ssh-ed25519 ") and first.endswith(" mtls-deploy-lab")
    assert ensure_key_pair(tmp_path / ".lab") == first
    assert (tmp_path / ".lab/id_ed25519.pub").read_text() == f"{first}\n"


def test_key_pair_is_readable_by_ssh_keygen(tmp_path):
    public_key = ensure_key_pair(tmp_path)
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(tmp_path / "id_ed25519")], capture_output=True, text=True
    )
    assert derived.returncode == 0, derived.stderr
    assert derived.stdout.split()[:2] == public_key.split()[:2]


def test_authorized_keys_replaces_an_older_lab_key_and_keeps_the_rest():
    old = "ssh-ed25519 AAAAmine me@laptop\nssh-ed25519 AAAAold mtls-deploy-lab\n"
    new = authorized_keys_text(old, "ssh-ed25519 AAAAnew mtls-deploy-lab")
    assert new == "ssh-ed25519 AAAAmine me@laptop\nssh-ed25519 AAAAnew mtls-deploy-lab\n"


def test_authorized_keys_refuses_a_symlink_out_of_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("bob:x:1000:1000::/home/bob:/bin/bash\n")
    (root / "home/bob").mkdir(parents=True)
    (root / "home/bob/.ssh").symlink_to(tmp_path)
    with pytest.raises(UserError, match="symbolic link"):
        write_authorized_keys(root, "bob", "ssh-ed25519 AAAA mtls-deploy-lab")


def test_passwd_entry_reads_the_roots_own_passwd(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    assert passwd_entry(tmp_path, "root") == (0, 0, "/root")
    assert passwd_entry(tmp_path, "deploy") is None


# --- pid files and /proc -----------------------------------------------------------------------


def test_parse_pid():
    assert parse_pid("4242\n") == 4242
    assert parse_pid("") is None
    assert parse_pid("0") is None
    assert parse_pid("garbage") is None


def test_is_nspawn_of_matches_only_nspawn_booting_that_root():
    root = Path("/var/lib/mtls-deploy/lab/api1/root")
    ours = b"systemd-nspawn\0--boot\0--directory=/var/lib/mtls-deploy/lab/api1/root\0"
    assert is_nspawn_of(ours, root)
    assert not is_nspawn_of(ours, Path("/var/lib/mtls-deploy/lab/bob/root"))
    assert not is_nspawn_of(b"vim\0--directory=/var/lib/mtls-deploy/lab/api1/root\0", root)
    assert not is_nspawn_of(b"", root)  # gone, or a zombie


def test_a_pid_file_naming_another_process_is_stale(lab_root):
    paths = paths_for("api1")
    paths.dir.mkdir(parents=True)
    paths.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not our systemd-nspawn
    assert running_pid(paths) is None
    assert status([API1])[0].state == "absent"


def test_a_pid_file_naming_a_finished_process_is_stale(lab_root):
    paths = paths_for("api1")
    paths.root.mkdir(parents=True)
    paths.pid_file.write_text("4194303\n")
    assert running_pid(paths) is None
    assert status([API1]) == [HostStatus("api1", "stopped", None, "127.0.0.1", 2201)]


def test_stop_with_a_stale_pid_file_removes_it(lab_root):
    paths = paths_for("api1")
    paths.dir.mkdir(parents=True)
    paths.pid_file.write_text(f"{os.getpid()}\n")
    assert stop(paths) is False
    assert not paths.pid_file.exists()


def test_parse_stat_survives_spaces_and_parens_in_the_command_name():
    assert parse_stat("42 (my (odd) name) S 7 42 42 0 -1") == ("S", 7)


def test_paths_follow_the_environment(lab_root):
    paths = paths_for("bob")
    assert paths.root == lab_root / "bob/root"
    assert paths.pid_file == lab_root / "bob/nspawn.pid"
    assert paths.apt_archives == lab_root.parent / "cache/apt-archives/bob"


def test_nspawn_command_boots_the_root_sharing_the_network(lab_root):
    command = nspawn_command(API1, paths_for("api1"))
    assert command[:4] == ["systemd-nspawn", "--boot", "--register=no", "--keep-unit"]
    assert f"--directory={lab_root}/api1/root" in command
    assert not any(arg.startswith(("--network", "--private-network")) for arg in command)


# --- checks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("tool", ["systemd-nspawn", "debootstrap"])
def test_a_missing_tool_names_the_apt_get_command(tmp_path, monkeypatch, tool):
    for present in {"systemd-nspawn", "debootstrap"} - {tool}:
        (tmp_path / present).write_text("#!/bin/sh\n")
        (tmp_path / present).chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError) as raised:
        require_tools()
    assert str(raised.value) == (
        f"{tool} not found: install with `apt-get install -y systemd-container debootstrap`"
    )


def test_both_tools_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="systemd-nspawn and debootstrap not found"):
        require_tools()


def test_not_root_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(UserError, match="needs root"):
        up([API1])


@pytest.mark.parametrize(
    ("host", "message"),
    [
        (LabHost("api1", "10.0.0.5", 2201, "deploy", True), "not a 127.x address"),
        (LabHost("api1", "::1", 2201, "deploy", True), "not a 127.x address"),
        (LabHost("api1", "localhost", 2201, "deploy", True), "not a 127.x address"),
        (LabHost("api1", "127.0.0.1", 2201, "root", True), "other than root"),
        (LabHost("../etc", "127.0.0.1", 2201, "deploy", True), "lab host name"),
        (LabHost("api1", "127.0.0.1", 0, "deploy", True), "not a TCP port"),
    ],
)
def test_bad_hosts_are_refused(host, message):
    with pytest.raises(BadInput, match=message):
        check_hosts([host])


def test_two_hosts_on_one_port_are_refused():
    with pytest.raises(BadInput, match="share the ssh address 127.0.0.1:2201"):
        check_hosts([API1, LabHost("bob", "127.0.0.1", 2201, "bob", False)])


def test_good_hosts_pass():
    check_hosts([API1, BOB, LabHost("api2", "127.0.0.2", 2201, "deploy", True)])


def test_a_taken_port_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        host = LabHost("api1", "127.0.0.1", port, "deploy", True)
        with pytest.raises(UserError, match=f"127.0.0.1:{port} is taken by another program"):
            require_port_free(host)


def test_ssh_banner_is_false_when_nothing_listens():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    assert ssh_banner("127.0.0.1", port, timeout=0.5) is False


def test_debootstrap_command_is_minbase_bookworm_with_sshd(tmp_path):
    command = debootstrap_command(tmp_path)
    assert command[:2] == ["debootstrap", "--variant=minbase"]
    assert "openssh-server" in command[2] and "systemd-sysv" in command[2]
    assert command[-2:] == ["bookworm", str(tmp_path)]


def test_the_supervisor_of_a_host_counts_as_its_nspawn():
    root = Path("/var/lib/mtls-deploy/lab/api1/root")
    argv = supervised(["systemd-nspawn", "--boot", f"--directory={root}"])
    assert is_nspawn_of("\0".join(argv).encode() + b"\0", root)
    assert not is_nspawn_of("\0".join(argv).encode(), Path("/other/root"))


def test_the_supervisor_restarts_only_on_exit_133(tmp_path):
    """A command that exits 133 twice then 0 runs three times; any other status ends it."""
    counter = tmp_path / "runs"
    script = f"echo x >> {counter}; [ $(wc -l < {counter}) -ge 3 ] && exit 0; exit 133"
    done = subprocess.run(supervised(["sh", "-c", script]), timeout=10)
    assert done.returncode == 0 and counter.read_text().count("x") == 3
    failed = subprocess.run(supervised(["sh", "-c", "exit 7"]), timeout=10)
    assert failed.returncode == 7
