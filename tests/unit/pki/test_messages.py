"""pki/messages.py: the PKI's one-line errors name the file, what the index holds, the fix."""

import errno
import sqlite3

import pytest

from mtls_deploy.errors import UserError
from mtls_deploy.pki import messages


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_paths_show_relative_to_the_working_directory(here):
    assert messages.display(here / "pki" / "index.sqlite3") == "pki/index.sqlite3"
    assert messages.display(here) == "."
    assert messages.display(here.parent / "elsewhere") == str(here.parent / "elsewhere")


def test_a_full_disk_names_the_file_and_says_whether_the_index_holds_the_change(here):
    error = OSError(errno.ENOSPC, "No space left on device", str(here / "pki" / "clients" / "x"))
    assert str(messages.storage_error(error, here / "pki", committed=True)) == (
        "disk full writing pki/clients/x: recorded in the index; the next run finishes the "
        "files; free some space and re-run"
    )
    full = sqlite3.OperationalError("database or disk is full")
    assert str(messages.storage_error(full, here / "pki", committed=False)).startswith(
        "disk full writing pki/: nothing was recorded in the index"
    )


def test_a_refused_write_says_the_directory_must_be_yours(here):
    error = PermissionError(errno.EACCES, "Permission denied")
    line = str(messages.storage_error(error, here / "pki", committed=False))
    assert line.startswith("cannot write in pki/: Permission denied; nothing was recorded")
    assert line.endswith("(for example `sudo chown -R $USER pki`)")


def test_read_head_is_none_for_a_missing_file_and_one_line_for_an_unreadable_one(here, monkeypatch):
    (here / "pki").mkdir()
    (here / "pki" / "ca.crt").write_bytes(b"-----BEGIN")
    assert messages.read_head(here / "pki" / "ca.crt", 5) == b"-----"
    assert messages.read_head(here / "pki" / "missing", 5) is None
    assert messages.read_head(here / "pki" / "ca.crt" / "x", 5) is None  # under a file

    def refused(path, mode):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(messages, "open", refused, raising=False)  # root reads every file
    with pytest.raises(UserError) as raised:
        messages.read_head(here / "pki" / "ca.crt", 5)
    assert str(raised.value).startswith("cannot read pki/ca.crt: Permission denied; the PKI")
