"""hosts.py through the fake transport: ad-hoc commands and provisioning on several inventory
hosts at once, each host's output or failure on its own line, then the recap."""

import json
import threading

import pytest

from mtls_deploy import hosts
from mtls_deploy.connection import CommandResult
from tests.unit.fakes import FakeHost, FakeTransport

INVENTORY = """\
all:
  children:
    api:
      hosts:
        api1: {ansible_host: 127.0.0.1, ansible_port: 2201, ansible_user: deploy,
               ansible_become: true, server_name: api1.lab.test, https_port: 8441,
               https_listen: 127.0.0.1}
        api2: {ansible_host: 127.0.0.1, ansible_port: 2203, ansible_user: deploy,
               ansible_become: true, server_name: api2.lab.test, https_port: 8441,
               https_listen: 127.0.0.1}
    consumers:
      hosts:
        bob: {ansible_host: 127.0.0.1, ansible_port: 2202, ansible_user: bob}
"""


@pytest.fixture
def transport(monkeypatch, pki_env):
    """A three-host inventory of the test's own; ``Remote`` is the fake in hosts and provision."""
    from mtls_deploy import provision

    folder = pki_env.root / "inventory"
    folder.mkdir()
    (folder / "hosts.yml").write_text(INVENTORY)
    monkeypatch.setenv("MTLS_DEPLOY_INVENTORY", str(folder))
    monkeypatch.setenv("XDG_CACHE_HOME", str(pki_env.root / "cache"))
    fake = FakeTransport(*(FakeHost.recorded("api1", name=n) for n in ("api1", "api2", "bob")))
    monkeypatch.setattr(hosts, "Remote", fake.connect)
    monkeypatch.setattr(provision, "Remote", fake.connect)
    return fake


def reply_all(transport, command: str, reply) -> None:
    for host in transport.hosts.values():
        host.commands[command] = reply


def test_a_command_runs_on_every_host_at_once(transport, capsys):
    arrived = threading.Barrier(3, timeout=5)  # each host waits until all three are running

    def together(command):
        arrived.wait()
        return CommandResult("Linux\n", "", 0)

    reply_all(transport, "uname -s", together)
    group = hosts.run_command([], "all", "uname -s", sudo=False)
    assert [(r.host, r.steps[0].status, r.steps[0].reason) for r in group.results] == [
        ("api1", "ok", "Linux"),
        ("api2", "ok", "Linux"),
        ("bob", "ok", "Linux"),
    ]
    assert "ok       api2  command uname -s  (Linux)" in capsys.readouterr().out


def test_each_host_has_its_own_output_or_failure_and_the_recap_counts_them(transport, capsys):
    transport.hosts["api1"].commands["id -un"] = CommandResult("root\n", "", 0)
    transport.hosts["api2"].commands["id -un"] = CommandResult(
        "", "sudo: a password is required\n", 1
    )
    transport.hosts["bob"].unreachable = "bob: cannot reach bob@127.0.0.1:2202: connection refused"
    group = hosts.run_command([], "all", "id -un", sudo=True)
    assert [r.host for r in group.failed] == ["api2", "bob"]
    assert transport.remotes["api1"].commands == [("id -un", True)]
    out = capsys.readouterr().out
    assert "failed   api2  command id -un  (sudo: a password is required)" in out
    assert "failed   bob  cannot reach bob@127.0.0.1:2202: connection refused" in out
    recap = out[out.index("RECAP") :].splitlines()[1:]
    assert recap == [
        "api1 : ok=1 changed=0 failed=0 skipped=0",
        "api2 : ok=0 changed=0 failed=1 skipped=0",
        "bob  : ok=0 changed=0 failed=1 skipped=0",
    ]


def test_a_silent_failure_shows_its_exit_status(transport):
    transport.hosts["api1"].commands["false"] = CommandResult("", "", 1)
    group = hosts.run_command(["api1"], None, "false", sudo=False)
    assert group.results[0].steps[0].reason == "exit 1"


def test_provision_defaults_to_group_api_and_reports_json_per_host(transport, pki_store, capsys):
    transport.hosts["api2"].unreachable = "api2: cannot reach deploy@127.0.0.1:2203: timed out"
    group = hosts.provision_hosts([], None, True, False, None, True, {})
    document = json.loads(capsys.readouterr().out)
    assert sorted(document["hosts"]) == ["api1", "api2"]  # bob is no API host
    assert document["failed"] == ["api2"] and [r.host for r in group.failed] == ["api2"]
    assert document["hosts"]["api1"]["ssh_channels"] == 2  # no cache yet: facts, then the rest
    assert document["hosts"]["api2"]["error"].endswith("timed out")
    assert transport.remotes["api1"].applies == []  # --check
