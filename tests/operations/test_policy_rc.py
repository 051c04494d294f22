"""policy-rc.d around apt-get install: in place while apt runs, gone on every exit path, and
only ever ours removed. The install script runs here under sh, with a stand-in apt-get."""

import os
import subprocess

import pytest

from mtls_deploy import operations
from mtls_deploy.facts import HostFacts

THEIRS = "#!/bin/sh\n# the admin's own: hold everything\nexit 101\n"


def install(tmp_path, apt_body: str):
    """Run the install script as ``provision`` does (``set -e``), policy-rc.d in ``tmp_path``.
    The stand-in apt-get saves the policy-rc.d it saw, then runs ``apt_body``."""
    policy = tmp_path / "policy-rc.d"
    (tmp_path / "bin").mkdir(exist_ok=True)
    apt = tmp_path / "bin" / "apt-get"
    apt.write_text(f"#!/bin/sh\ncat {policy} > {tmp_path}/seen 2>/dev/null\n{apt_body}\n")
    apt.chmod(0o755)
    script = "set -e\n" + operations.install_without_starting(["pkg"], str(policy)) + "\n"
    env = {**os.environ, "PATH": f"{tmp_path}/bin:{os.environ['PATH']}"}
    done = subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True, env=env)
    seen = (tmp_path / "seen").read_text() if (tmp_path / "seen").exists() else None
    return done, policy, seen


@pytest.mark.parametrize("status", [0, 100])
def test_our_policy_holds_services_during_apt_and_is_gone_after(tmp_path, status):
    done, policy, seen = install(tmp_path, f"exit {status}")
    assert seen.splitlines() == ["#!/bin/sh", operations.POLICY_RC_MARK, "exit 101"]
    assert (done.returncode == 0) is (status == 0)
    assert not policy.exists()  # also when apt-get failed under set -e


def test_a_dropped_connection_during_apt_removes_our_policy(tmp_path):
    done, policy, seen = install(tmp_path, "kill -HUP $PPID; sleep 1")
    assert operations.POLICY_RC_MARK in seen
    assert done.returncode == 129 and not policy.exists()


@pytest.mark.parametrize("status", [0, 100])
def test_someone_elses_policy_is_obeyed_and_left_in_place(tmp_path, status):
    (tmp_path / "policy-rc.d").write_text(THEIRS)
    done, policy, seen = install(tmp_path, f"exit {status}")
    assert seen == THEIRS and policy.read_text() == THEIRS


def test_a_leftover_of_ours_is_replaced_then_removed(tmp_path):
    (tmp_path / "policy-rc.d").write_text(f"#!/bin/sh\n{operations.POLICY_RC_MARK}\nexit 101\n")
    done, policy, seen = install(tmp_path, "exit 0")
    assert done.returncode == 0 and operations.POLICY_RC_MARK in seen
    assert not policy.exists()


def test_removing_a_leftover_spares_anyone_elses(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.write_text(f"#!/bin/sh\n{operations.POLICY_RC_MARK}\nexit 101\n")
    theirs.write_text(THEIRS.replace("own:", f"own, not {operations.POLICY_RC_MARK}:"))
    for path in (ours, theirs, tmp_path / "none"):
        subprocess.run(["sh", "-c", operations.remove_our_policy(str(path))], check=True)
    assert not ours.exists() and theirs.exists()


def test_a_leftover_found_by_the_facts_is_planned_away():
    assert operations.plan_policy_leftover(HostFacts()) == []
    [step] = operations.plan_policy_leftover(HostFacts(policy_rc_leftover=True))
    assert (step.kind, step.name, step.status) == ("absent", "/usr/sbin/policy-rc.d", "changed")
    assert step.commands == [operations.remove_our_policy()]
