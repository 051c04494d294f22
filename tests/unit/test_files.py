"""Files on the control machine (mtls_deploy/files.py): crash-safe private writes, YAML
parsing, and what importing costs."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mtls_deploy import files
from mtls_deploy.errors import UserError
from mtls_deploy.files import parse_yaml, sync_filesystem

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "path",
    sorted([*ROOT.glob("roles/*/*.yml"), *ROOT.glob("inventory/**/*.yml")]),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_parse_yaml_reads_every_yaml_file_of_ours_as_the_pure_python_parser_does(path):
    text = path.read_text()
    assert parse_yaml(text) == yaml.safe_load(text)


def test_yaml_1_1_words_stay_what_they_were():
    assert parse_yaml("a: yes\nb: on\nc: '0644'\nd: 0644\ne: ~\n") == {
        "a": True,
        "b": True,
        "c": "0644",
        "d": 420,
        "e": None,
    }


@pytest.mark.parametrize(
    "text, problem",
    [
        ("\tx: 1\n", "found character '\\t' that cannot start any token"),
        ("a: *nope\n", "found undefined alias 'nope'"),
        ("a: [1, 2\nb: 3\n", "expected ',' or ']', but got ':'"),
    ],
)
def test_a_syntax_error_is_told_as_the_pure_python_parser_tells_it(text, problem):
    with pytest.raises(yaml.MarkedYAMLError) as raised:
        parse_yaml(text)
    assert raised.value.problem == problem


def test_importing_files_runs_no_ldconfig_and_loads_no_ctypes():
    """``find_library`` runs ldconfig: only a sync may pay for it, not every command's start."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys, mtls_deploy.files; print('ctypes' in sys.modules)"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert done.stdout.strip() == "False"


def test_sync_filesystem_still_syncs(tmp_path):
    (tmp_path / "f").write_text("x")
    sync_filesystem(tmp_path)  # syncfs(2) found on first use; no error


# --- writing: the old version or the new, private from the first byte -------------------------


def leftovers(folder: Path) -> list[str]:
    """Temporary files or directories a write left behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def mode_of(path) -> int:
    return os.stat(path).st_mode & 0o777


def test_atomic_write_replaces_the_content_with_the_mode_asked_whatever_the_umask(tmp_path):
    target = tmp_path / "ca.crt"
    target.write_text("old\n")
    old_umask = os.umask(0o077)
    try:
        files.atomic_write(target, "new\n", 0o644)
    finally:
        os.umask(old_umask)
    assert target.read_text() == "new\n" and mode_of(target) == 0o644
    assert leftovers(tmp_path) == []


def test_a_new_file_is_0600_before_its_first_byte_even_when_it_ends_public(tmp_path, monkeypatch):
    """The mode at creation is what another user could open it with before the fchmod."""
    seen, real_fchmod = [], os.fchmod

    def watching(fd, mode):
        seen.append(os.fstat(fd).st_mode & 0o777)
        real_fchmod(fd, mode)

    monkeypatch.setattr(files.os, "fchmod", watching)
    old_umask = os.umask(0)
    try:
        files.atomic_write(tmp_path / "public.pem", b"x", 0o644)
    finally:
        os.umask(old_umask)
    assert seen == [0o600] and mode_of(tmp_path / "public.pem") == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "index.json"
    target.write_text("old\n")

    def full_disk(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "_write_all", full_disk)
    with pytest.raises(OSError, match="No space left"):
        files.atomic_write(target, b"new\n", 0o600)
    assert target.read_text() == "old\n" and leftovers(tmp_path) == []


def test_atomic_write_replaces_a_symlink_instead_of_writing_through_it(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not yours\n")
    link = tmp_path / "key.pem"
    link.symlink_to(elsewhere)
    files.atomic_write(link, b"key\n", 0o600)
    assert elsewhere.read_text() == "not yours\n"
    assert not link.is_symlink() and link.read_bytes() == b"key\n" and mode_of(link) == 0o600


def test_write_new_file_never_follows_a_symlink(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not yours\n")
    (tmp_path / "planted").symlink_to(elsewhere)
    with pytest.raises(OSError) as raised:
        files.write_new_file(tmp_path / "planted", b"secret", 0o600)
    assert raised.value.errno == errno.ELOOP and elsewhere.read_text() == "not yours\n"


def test_make_private_dir_creates_parents_0700_and_tightens_an_existing_one(tmp_path):
    deep = files.make_private_dir(tmp_path / "a" / "b")
    assert mode_of(deep) == mode_of(tmp_path / "a") == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    files.make_private_dir(loose)
    assert mode_of(loose) == 0o700
    (tmp_path / "plain").write_text("")
    with pytest.raises(NotADirectoryError):
        files.make_private_dir(tmp_path / "plain")


def test_writable_private_dir_proves_it_can_write_and_leaves_nothing(tmp_path):
    folder = files.writable_private_dir(tmp_path / "dist", "set MTLS_DEPLOY_DIST_DIR")
    assert mode_of(folder) == 0o700 and list(folder.iterdir()) == []


def test_writable_private_dir_refuses_in_one_line_with_the_fix(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError) as raised:
        files.writable_private_dir(tmp_path / "file" / "dist", "set MTLS_DEPLOY_DIST_DIR")
    assert str(raised.value) == (
        f"cannot write in {tmp_path}/file/dist/: Not a directory; set MTLS_DEPLOY_DIST_DIR"
    )


def test_replace_directory_holds_exactly_the_new_set(tmp_path):
    source = tmp_path / "source.crt"
    source.write_text("certificate\n")
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "stale.key").write_text("old key\n")
    files.replace_directory(folder, {"bob.key": (b"key\n", 0o600), "bob.crt": source})
    assert sorted(p.name for p in folder.iterdir()) == ["bob.crt", "bob.key"]
    assert mode_of(folder) == 0o700 and mode_of(folder / "bob.key") == 0o600
    assert os.stat(folder / "bob.crt").st_ino == os.stat(source).st_ino  # linked, not copied
    assert leftovers(tmp_path) == []


def test_a_failed_replace_directory_keeps_the_old_set_and_removes_the_half_built_one(
    tmp_path, monkeypatch
):
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "bob.key").write_text("old key\n")
    real = files.write_new_file

    def failing_second(path, data, mode, durable=False):
        if path.name == "b":
            raise OSError(errno.EIO, "Input/output error")
        real(path, data, mode, durable=durable)

    monkeypatch.setattr(files, "write_new_file", failing_second)
    with pytest.raises(OSError):
        files.replace_directory(folder, {"a": (b"1", 0o600), "b": (b"2", 0o600)})
    assert [p.name for p in folder.iterdir()] == ["bob.key"] and leftovers(tmp_path) == []


def test_link_or_copy_copies_across_filesystems_keeping_the_mode(tmp_path, monkeypatch):
    source = tmp_path / "ca.crt"
    source.write_text("ca\n")
    source.chmod(0o640)

    def cross_device(a, b):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(files.os, "link", cross_device)
    files.link_or_copy(source, tmp_path / "copy.crt")
    assert (tmp_path / "copy.crt").read_text() == "ca\n" and mode_of(tmp_path / "copy.crt") == 0o640


def test_link_or_copy_lets_other_errors_through(tmp_path):
    with pytest.raises(FileNotFoundError):
        files.link_or_copy(tmp_path / "missing", tmp_path / "copy")
