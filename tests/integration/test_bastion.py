"""ProxyJump on the lab: an API host provisioned through a bastion whose login user has no sudo,
proven by the bastion's own sshd log (the API host is reachable directly on loopback too, so a
working run alone would prove nothing); an unknown host key at either hop is refused; a host
alias in an SSH config connects. Ports of its own: SSH 2251 (bastion), 2252 and HTTPS 8453."""

import os
import re
import signal
import subprocess

import pytest

from mtls_deploy import lab
from mtls_deploy.connection import ConnectError, Remote, SshTarget
from mtls_deploy.host_keys import trust_host
from mtls_deploy.lab.procfs import container_init

from .conftest import ROOT, ApiHost, lab_world, needs_lab

pytestmark = needs_lab

BASTION = lab.LabHost("bastion", "127.0.0.1", 2251, "hop", sudo=False)
JUMPED = ApiHost("jumped", 2252, 8453, "python")
JUMP = "-o ProxyJump=hop@127.0.0.1:2251"  # as Ansible users write it
LAB_KEY = ROOT / ".lab" / "id_ed25519"
LAB_KNOWN_HOSTS = ROOT / ".lab" / "known_hosts"
# sshd at DEBUG1 logs each forwarding request: "server_request_direct_tcpip: originator ...,
# target 127.0.0.1 port 2252". Written into the bastion's root before it boots.
BASTION_LOG_LEVEL = "etc/ssh/sshd_config.d/20-bastion-log.conf"
FORWARDED = re.compile(r"direct_tcpip: originator .* target 127\.0\.0\.1 port 2252\b")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The API host 'jumped' (fresh) and the bastion (fresh, logging forwardings)."""
    with lab_world(tmp_path_factory, [JUMPED], name="Bastion Test API", passphrase="bastion") as w:
        lab.reset([BASTION], ROOT / ".lab")
        # Written while the host's root is mounted (an overlay: lab.down unmounts it and keeps
        # the host's changes), then read by sshd as the host boots again.
        (lab.paths_for(BASTION.name).root / BASTION_LOG_LEVEL).write_text("LogLevel DEBUG1\n")
        lab.down([BASTION])
        lab.up([BASTION], ROOT / ".lab")
        try:
            yield w
        finally:
            lab.down([BASTION])


def forwardings() -> int:
    """How many forwardings to jumped's sshd the bastion's sshd has logged (``journalctl -u
    ssh`` inside the bastion, as root: the lab's own access, its login user has no sudo)."""
    init = container_init(lab.paths_for(BASTION.name))
    journal = subprocess.run(
        ["nsenter", "-t", str(init), "-m", "-u", "-i", "-p", "--",
         "journalctl", "-u", "ssh", "--no-pager", "-o", "cat"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return len(FORWARDED.findall(journal))


def jumped_target(world, known_hosts) -> SshTarget:
    """jumped through the bastion, both hops checked against ``known_hosts``."""
    v = world.host("jumped", ansible_ssh_common_args=JUMP, ssh_known_hosts_file=str(known_hosts))
    return SshTarget.from_vars("jumped", v.vars)


def test_the_bastion_login_user_has_no_sudo(world):
    bastion = SshTarget("bastion", "127.0.0.1", 2251, "hop", LAB_KEY, LAB_KNOWN_HOSTS, True, 10)
    with Remote(bastion) as remote:
        result = remote.run("id -u", sudo=True)
    assert not result.ok and "password" in result.stderr


def test_api_host_is_provisioned_through_the_bastion(world):
    before = forwardings()
    result = world.provision("jumped", ansible_ssh_common_args=JUMP)
    assert not result.failed, [s for s in result.steps if s.status == "failed"]
    assert forwardings() > before  # the run went through the bastion, not straight to 2252
    status, body = world.curl("jumped")
    assert status == 200 and body["subject"]["CN"] == "alice"


def test_unknown_key_of_the_bastion_is_refused(world, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text(_without(LAB_KNOWN_HOSTS.read_text(), "[127.0.0.1]:2251"))
    before = known.read_bytes()
    with pytest.raises(ConnectError) as refused:
        Remote(jumped_target(world, known)).open()
    message = str(refused.value)
    assert re.fullmatch(
        r"jumped: jump host 127\.0\.0\.1: unknown host key for \[127\.0\.0\.1\]:2251 "
        r"\(ssh-ed25519 SHA256:\S+\); if that is right, add it to .*; nothing was written",
        message,
    ), message
    assert known.read_bytes() == before


def test_unknown_key_of_the_jumped_host_is_refused(world, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text(_without(LAB_KNOWN_HOSTS.read_text(), "[127.0.0.1]:2252"))
    before, logged = known.read_bytes(), forwardings()
    with pytest.raises(ConnectError, match=r"^jumped: unknown host key for \[127\.0\.0\.1\]:2252 "):
        Remote(jumped_target(world, known)).open()
    assert known.read_bytes() == before
    assert forwardings() > logged  # refused after the bastion forwarded: checked at the far end


def test_ssh_config_alias_and_proxy_jump_connect(world, tmp_path, monkeypatch):
    config = tmp_path / "ssh_config"
    config.write_text(
        "Host lab-bastion\n  HostName 127.0.0.1\n  Port 2251\n  User hop\n"
        f"  IdentityFile {LAB_KEY}\n"
        "Host jumped-direct jumped-via\n  HostName 127.0.0.1\n  Port 2252\n  User deploy\n"
        f"  IdentityFile {LAB_KEY}\n"
        "Host jumped-via\n  ProxyJump lab-bastion\n"
    )
    monkeypatch.setenv("MTLS_DEPLOY_SSH_CONFIG", str(config))
    for alias in ("jumped-direct", "jumped-via"):
        before = forwardings()
        target = SshTarget.from_vars(alias, {"ssh_known_hosts_file": str(LAB_KNOWN_HOSTS)})
        with Remote(target) as remote:
            assert remote.run("id -un; hostname").stdout.split() == ["deploy", "jumped"]
        assert (forwardings() > before) == (alias == "jumped-via")


def test_hosts_trust_records_the_jumped_hosts_key_through_the_bastion(world, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text(_without(LAB_KNOWN_HOSTS.read_text(), "[127.0.0.1]:2252"))
    logged = forwardings()
    line = trust_host(jumped_target(world, known))
    assert line.startswith("trusted (first use): jumped [127.0.0.1]:2252 ssh-ed25519 SHA256:")
    assert forwardings() > logged  # fetched through the bastion, as the connections go
    recorded = [x for x in known.read_text().splitlines() if x.startswith("[127.0.0.1]:2252 ")]
    assert len(recorded) == 1 and recorded[0] in LAB_KNOWN_HOSTS.read_text().splitlines()


@pytest.fixture
def agent_with_lab_key(tmp_path, monkeypatch):
    """An ssh-agent of this test's own holding the lab key, in SSH_AUTH_SOCK; killed after."""
    sock = tmp_path / "agent.sock"
    started = subprocess.run(
        ["ssh-agent", "-a", str(sock)], capture_output=True, text=True, check=True
    ).stdout
    pid = int(re.search(r"SSH_AGENT_PID=(\d+)", started).group(1))
    try:
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        subprocess.run(["ssh-add", str(LAB_KEY)], capture_output=True, check=True)
        yield
    finally:
        os.kill(pid, signal.SIGTERM)


def test_a_key_from_ssh_agent_works_at_both_hops(world, agent_with_lab_key):
    v = world.host("jumped", ansible_ssh_common_args=JUMP).vars
    target = SshTarget.from_vars("jumped", {k: x for k, x in v.items() if "private_key" not in k})
    assert (target.key_file, target.jump.key_file) == (None, None)
    logged = forwardings()
    with Remote(target) as remote:
        assert remote.run("hostname").stdout.strip() == "jumped"
    assert forwardings() > logged


def _without(text: str, name: str) -> str:
    return "".join(line for line in text.splitlines(True) if not line.startswith(f"{name} "))
