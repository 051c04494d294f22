"""A failed ``apt-get install`` leaves no policy-rc.d behind (it used to stay, "exit 101",
refusing every later service start), and a leftover of ours is removed by the next run while
one of someone else's stays. Through the engine (facts, plan, install) on the toolbox lab host."""

import posixpath

import pytest

from mtls_deploy.facts import MANIFEST
from mtls_deploy.operations import POLICY_RC, POLICY_RC_MARK
from mtls_deploy.provision import HostRun, RunOptions
from mtls_deploy.resources import Packages

from .conftest import needs_lab

pytestmark = needs_lab

NO_SUCH_PACKAGE = "mtls-deploy-no-such-package"
OURS = f"#!/bin/sh\n{POLICY_RC_MARK}\nexit 101\n"
THEIRS = "#!/bin/sh\n# the admin's own: hold every service\nexit 101\n"


class PackagesRole:
    """A role that only wants ``names`` installed, as the engine sees a role
    (``role_loader.Role``: its meta, and its functions through ``call``)."""

    name = "packages"
    meta = {"dependencies": [], "requires": []}

    def __init__(self, *names: str):
        self.names = names

    def call(self, function, v, facts, default=None):
        return [Packages(self.names)] if function == "resources" else default

    def validators(self, v, facts):
        return {}

    def fact_packages(self):
        return ()


def converge(connection, *names: str):
    """One engine run on the host for a role wanting ``names``: its steps, less the engine's
    bookkeeping of the host's manifest (written on the first run a host sees)."""
    steps = HostRun(connection, [PackagesRole(*names)], {}, RunOptions()).converge(None)
    bookkeeping = {MANIFEST, posixpath.dirname(MANIFEST)}
    return [s for s in steps if s.name not in bookkeeping]


def sh(connection, command: str):
    return connection.run(command, sudo=True)


def service_start_allowed(connection) -> bool:
    """invoke-rc.d asks policy-rc.d first and, refused, says so and exits 0: so restart ssh
    through it (the open session survives) and see whether a new sshd really started."""
    main_pid = "systemctl show -p MainPID --value ssh"
    before = sh(connection, main_pid).stdout
    restart = sh(connection, "invoke-rc.d ssh restart")
    assert restart.exit_status == 0, restart.stderr
    return sh(connection, main_pid).stdout != before and "denied" not in restart.stderr


@pytest.fixture
def host(toolbox_host):
    """The toolbox host with no policy-rc.d, before and after the test."""
    sh(toolbox_host, f"rm -f {POLICY_RC}")
    yield toolbox_host
    sh(toolbox_host, f"rm -f {POLICY_RC}")


def plant(connection, content: str) -> None:
    connection.run_script(
        f"cat > {POLICY_RC} <<'EOF'\n{content}EOF\nchmod 755 {POLICY_RC}\n", sudo=True, check=True
    )


def test_a_failed_install_leaves_no_policy_rc_and_services_still_start(host):
    [step] = converge(host, NO_SUCH_PACKAGE)
    assert step.status == "failed" and NO_SUCH_PACKAGE in step.reason
    assert sh(host, f"test -e {POLICY_RC}").exit_status == 1
    assert service_start_allowed(host)


def test_a_leftover_of_ours_is_removed_by_the_next_run(host):
    plant(host, OURS)
    assert not service_start_allowed(host)  # what a leftover does
    steps = converge(host, "openssh-server")  # nothing to install: only the leftover to remove
    assert [(s.kind, s.name, s.status) for s in steps] == [
        ("absent", POLICY_RC, "changed"),
        ("packages", "openssh-server", "ok"),
    ]
    assert sh(host, f"test -e {POLICY_RC}").exit_status == 1
    assert service_start_allowed(host)
    assert [s.status for s in converge(host, "openssh-server")] == ["ok"]


def test_someone_elses_policy_rc_stays_after_a_failed_install(host):
    plant(host, THEIRS)
    [step] = converge(host, NO_SUCH_PACKAGE)
    assert step.status == "failed"
    assert sh(host, f"cat {POLICY_RC}").stdout == THEIRS
