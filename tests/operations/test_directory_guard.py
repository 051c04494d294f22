"""``operations.directory_guard``: run with sh against real directories, links and modes."""

import getpass
import os
import subprocess

import pytest

from mtls_deploy.operations import directory_guard
from mtls_deploy.resources import Directory

ME = getpass.getuser()


def guard(path, mode=0o700, owner=ME) -> subprocess.CompletedProcess:
    line = directory_guard(Directory(str(path), mode, owner, owner))
    return subprocess.run(
        ["sh", "-c", f"set -e\n{line}\necho passed"], capture_output=True, text=True
    )


def test_a_private_directory_of_the_owner_passes(tmp_path):
    folder = tmp_path / "a b"  # a space: the path is quoted
    folder.mkdir(mode=0o700)
    done = guard(folder)
    assert (done.returncode, done.stdout) == (0, "passed\n")


@pytest.mark.parametrize("make", ["link", "loose", "file", "absent", "owner"])
def test_anything_else_stops_the_script(tmp_path, make):
    folder, real = tmp_path / "bundle", tmp_path / "real"
    real.mkdir(mode=0o700)
    if make == "link":
        folder.symlink_to(real)  # a link to a perfect directory is still refused
    elif make == "loose":
        folder.mkdir()
        os.chmod(folder, 0o755)
    elif make == "file":
        folder.write_text("")
    elif make == "owner":
        folder.mkdir(mode=0o700)
    done = guard(folder, owner="nobody" if make == "owner" else ME)  # ours, nobody's wanted
    assert done.returncode == 5 and "passed" not in done.stdout
    assert f"{folder} is a link, or not a directory of" in done.stderr
