"""The lab on this machine: boot, SSH as the login user, sudo, no root, idempotence, down, reset.

Boots its own two hosts (labtest1, labtest2 on ports 2291-2293) under a temporary lab root, so it
never touches the default lab (api1 on 2201, bob on 2202). Needs root and systemd-nspawn.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mtls_deploy import lab
from mtls_deploy.lab import LabHost

pytestmark = [
    pytest.mark.lab,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
    pytest.mark.skipif(not shutil.which("systemd-nspawn"), reason="systemd-nspawn is missing"),
]

DEPLOY = LabHost("labtest1", "127.0.0.1", 2291, "deploy", sudo=True)
BOB = LabHost("labtest2", "127.0.0.1", 2292, "bob", sudo=False)
HOSTS = [DEPLOY, BOB]


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """A lab root of its own; everything in it is stopped and deleted at the end."""
    directory = tmp_path_factory.mktemp("lab-roots")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTLS_DEPLOY_LAB_ROOT", str(directory))
        try:
            yield directory
        finally:
            lab.down(HOSTS)
            for host in HOSTS:
                lab.remove_root(lab.paths_for(host.name))
                shutil.rmtree(lab.paths_for(host.name).apt_archives, ignore_errors=True)
            shutil.rmtree(directory)


@pytest.fixture(scope="module")
def state(roots, tmp_path_factory):
    """The lab's state directory (key pair, known_hosts) with both hosts up."""
    state_dir = tmp_path_factory.mktemp("state") / ".lab"
    outcome = lab.up(HOSTS, state_dir)
    assert all(text.startswith("started") for text in outcome.values()), outcome
    return state_dir


def ssh(state: Path, host: LabHost, *command: str, user: str | None = None):
    """Plain OpenSSH with the lab's key and known_hosts, strict host key checking."""
    options = [
        "-F", "/dev/null",
        "-i", str(state / "id_ed25519"),
        "-o", f"UserKnownHostsFile={state / 'known_hosts'}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes",
        "-o", "ConnectTimeout=10",
    ]  # fmt: skip
    target = f"{user or host.user}@{host.address}"
    argv = ["ssh", *options, "-p", str(host.ssh_port), target, *command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def lab_processes(roots: Path) -> list[str]:
    """Processes of this test's lab: nspawn naming its roots, or anything living inside them."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            cmdline = lab.read_cmdline(int(entry.name)).replace(b"\0", b" ").decode()
            try:
                inside = os.readlink(entry / "root").startswith(str(roots))
            except OSError:
                inside = False
            if str(roots) in cmdline or inside:
                found.append(f"{entry.name} {cmdline}")
    return found


def test_each_host_answers_as_its_login_user(state):
    for host in HOSTS:
        result = ssh(state, host, "id -un; hostname")
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [host.user, host.name]


def test_sudo_works_on_the_sudo_host_only(state):
    assert ssh(state, DEPLOY, "sudo -n true").returncode == 0
    refused = ssh(state, BOB, "sudo -n true")
    assert refused.returncode == 1
    assert "password is required" in refused.stderr


def test_root_login_is_refused_even_with_the_key(state, roots):
    root_keys = lab.paths_for(BOB.name).root / "root/.ssh/authorized_keys"
    root_keys.parent.mkdir(mode=0o700, exist_ok=True)
    root_keys.write_text((state / "id_ed25519.pub").read_text())
    try:
        refused = ssh(state, BOB, "true", user="root")
    finally:
        root_keys.unlink()
    assert refused.returncode == 255
    assert "Permission denied (publickey)" in refused.stderr  # and no password method offered


def test_sshd_listens_on_loopback_only(state):
    listening = ssh(state, DEPLOY, "ss -Hltn")
    ours = [line.split()[3] for line in listening.stdout.splitlines() if ":229" in line]
    assert sorted(ours) == ["127.0.0.1:2291", "127.0.0.1:2292"]


def test_up_again_is_a_no_op(state):
    known_hosts = (state / "known_hosts").read_text()
    pids = {s.name: s.pid for s in lab.status(HOSTS)}
    outcome = lab.up(HOSTS, state)
    assert outcome == {name: f"already running (pid {pid})" for name, pid in pids.items()}
    assert (state / "known_hosts").read_text() == known_hosts


def test_changed_settings_restart_the_host(state):
    moved = LabHost(BOB.name, BOB.address, 2293, BOB.user, BOB.sudo)
    assert lab.up([moved], state)[BOB.name].startswith("restarted with new settings")
    assert ssh(state, moved, "true").returncode == 0
    assert lab.up([BOB], state)[BOB.name].startswith("restarted with new settings")
    assert "[127.0.0.1]:2293" in (state / "known_hosts").read_text()  # harmless: same key


def test_reset_gives_a_fresh_host(state):
    assert ssh(state, DEPLOY, "touch ~/before-reset").returncode == 0
    old_key = lab.paths_for(DEPLOY.name).root.joinpath("etc/ssh/ssh_host_ed25519_key.pub")
    old_key = old_key.read_text()
    outcome = lab.reset([DEPLOY], state)
    assert outcome[DEPLOY.name].startswith("started")
    after = ssh(state, DEPLOY, "test -e ~/before-reset && echo still-there || echo gone")
    assert after.returncode == 0, after.stderr  # known_hosts already has the new host key
    assert after.stdout.strip() == "gone"
    assert old_key.split()[1] not in (state / "known_hosts").read_text()


def test_down_leaves_no_lab_process(state, roots):
    assert lab.down(HOSTS) == {DEPLOY.name: "stopped", BOB.name: "stopped"}
    assert lab_processes(roots) == []
    nspawn = subprocess.run(["pgrep", "-af", "systemd-nspawn"], capture_output=True, text=True)
    assert str(roots) not in nspawn.stdout
    assert not any(lab.ssh_banner(h.address, h.ssh_port, timeout=0.5) for h in HOSTS)
    assert [s.state for s in lab.status(HOSTS)] == ["stopped", "stopped"]
    assert lab.down(HOSTS) == {DEPLOY.name: "not running", BOB.name: "not running"}


def test_up_after_down_survives_a_stale_pid_file(state):
    lab.paths_for(BOB.name).pid_file.write_text(f"{os.getpid()}\n")  # not our nspawn
    assert lab.up([BOB], state)[BOB.name].startswith("started")
    assert ssh(state, BOB, "true").returncode == 0
