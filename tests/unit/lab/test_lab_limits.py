"""The lab raises the kernel's inotify limits its hosts need (one line saying so), or, where it
cannot, refuses in one line with the exact ``sysctl`` to run."""

import errno
from pathlib import Path

import pytest

from mtls_deploy.errors import UserError
from mtls_deploy.lab import limits


@pytest.fixture
def proc_sys(tmp_path, monkeypatch):
    """A fresh machine's limits (128 instances), and no lab host running."""
    monkeypatch.setenv("MTLS_DEPLOY_LAB_ROOT", str(tmp_path / "lab"))
    folder = tmp_path / "inotify"
    folder.mkdir()
    (folder / "max_user_instances").write_text("128\n")
    (folder / "max_user_watches").write_text("65536\n")
    return folder


def test_a_small_lab_leaves_the_limits_alone(proc_sys):
    said = []
    limits.ensure_inotify(["api1", "bob"], said.append, proc_sys)
    assert said == [] and (proc_sys / "max_user_instances").read_text() == "128\n"


def test_thirty_two_hosts_raise_the_instances_and_say_so(proc_sys):
    said = []
    limits.ensure_inotify([f"fleet{i}" for i in range(1, 33)], said.append, proc_sys)
    assert (proc_sys / "max_user_instances").read_text() == "1024\n"
    assert said == [
        "raised fs.inotify.max_user_instances from 128 to 1024 for 32 lab hosts"
        " (until this machine reboots)"
    ]
    assert (proc_sys / "max_user_watches").read_text() == "65536\n"  # enough already


def test_hosts_already_running_count_too(proc_sys, monkeypatch):
    monkeypatch.setattr(limits, "running_lab_hosts", lambda: {f"h{i}" for i in range(40)})
    assert limits.needed(40)["max_user_instances"] > 128
    said = []
    limits.ensure_inotify(["h1"], said.append, proc_sys)  # h1 runs already: 40 hosts
    assert "for 40 lab hosts" in said[0]


def test_limits_that_cannot_be_raised_name_the_sysctl_to_run(proc_sys, monkeypatch):
    def read_only(self, text):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Path, "write_text", read_only)
    with pytest.raises(UserError) as error:
        limits.ensure_inotify([f"fleet{i}" for i in range(1, 33)], print, proc_sys)
    assert str(error.value) == (
        "fs.inotify.max_user_instances is 128, 32 lab hosts need 448, and this process cannot"
        " raise it (Read-only file system): run `sysctl -w fs.inotify.max_user_instances=1024`"
    )
