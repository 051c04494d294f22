"""The application's tree (mtls_deploy/release/tree.py): what is sent, its digest, what is
refused; and its tar (transfer.py)."""

import os
import tarfile

import pytest

from mtls_deploy.errors import BadInput
from mtls_deploy.release.transfer import tar_of
from mtls_deploy.release.tree import read_tree

KEY = b"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n"


def make(root, files: dict) -> object:
    """Files under ``root`` (path -> bytes; a str value is a symlink target)."""
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            target.symlink_to(content)
        else:
            target.write_bytes(content)
    return root


@pytest.fixture
def app(tmp_path):
    return make(tmp_path / "app", {"index.php": b"<?php echo 1;", "lib/A.php": b"<?php class A {}"})


def paths(tree) -> list[str]:
    return [e.path for e in tree.entries]


def test_the_tree_lists_files_and_directories_in_order(app):
    assert paths(read_tree(app)) == ["index.php", "lib", "lib/A.php"]


def test_git_pycache_and_venv_are_never_sent(app):
    make(app, {".git/HEAD": b"x", "pkg/__pycache__/m.pyc": b"x", ".venv/bin/python": b"x"})
    assert paths(read_tree(app)) == ["index.php", "lib", "lib/A.php", "pkg"]


def test_app_exclude_by_name_by_path_and_directories_only(app):
    make(app, {"a.log": b"x", "lib/b.log": b"x", "tests/t.php": b"x", "docs/x.md": b"x",
               "keep/docs": b"a file called docs"})  # fmt: skip
    tree = read_tree(app, ["*.log", "tests/", "docs/"])
    assert paths(tree) == ["index.php", "keep", "keep/docs", "lib", "lib/A.php"]
    assert "docs/x.md" in paths(read_tree(app, ["*.log", "tests/", "lib/*.php"]))
    assert "lib/A.php" not in paths(read_tree(app, ["lib/*.php"]))


def test_the_digest_is_stable_across_copies_and_times(app, tmp_path):
    copy = make(
        tmp_path / "copy", {"lib/A.php": b"<?php class A {}", "index.php": b"<?php echo 1;"}
    )
    os.utime(copy / "index.php", (0, 0))
    assert read_tree(app).digest == read_tree(copy).digest
    assert len(read_tree(app).sha12) == 12


@pytest.mark.parametrize(
    "change",
    [
        lambda root: (root / "index.php").write_bytes(b"<?php echo 2;"),
        lambda root: (root / "index.php").chmod(0o755),
        lambda root: (root / "index.php").rename(root / "main.php"),
        lambda root: (root / "empty").mkdir(),
        lambda root: (root / "link").symlink_to("index.php"),
    ],
)
def test_any_change_changes_the_digest(app, change):
    before = read_tree(app).digest
    change(app)
    assert read_tree(app).digest != before


def test_an_excluded_file_does_not_change_the_digest(app):
    before = read_tree(app, ["*.log"]).digest
    make(app, {"debug.log": b"x"})
    assert read_tree(app, ["*.log"]).digest == before


def test_build_files_have_their_digests(app):
    make(
        app, {"requirements.txt": b"flask\n", "composer.json": b"{}", "lib/requirements.txt": b"x"}
    )
    import hashlib

    digests = read_tree(app).digests
    assert sorted(digests) == ["composer.json", "requirements.txt"]
    assert digests["requirements.txt"] == hashlib.sha256(b"flask\n").hexdigest()


def test_a_private_key_is_refused_naming_the_file(app):
    make(app, {"config/server.pem": b"cert\n" + KEY})
    with pytest.raises(BadInput, match=r"config/server.pem holds a private key .*app_exclude"):
        read_tree(app)


def test_a_private_key_across_a_read_boundary_is_refused(app, monkeypatch):
    monkeypatch.setattr("mtls_deploy.release.tree.CHUNK", 16)
    make(app, {"k.txt": b"0123456789abc" + KEY})
    with pytest.raises(BadInput, match="private key"):
        read_tree(app)


def test_an_excluded_private_key_is_not_read(app):
    make(app, {"secrets/dev.key": KEY})
    assert "secrets" not in paths(read_tree(app, ["secrets/"]))


def test_a_public_certificate_is_not_a_private_key(app):
    make(app, {"ca.pem": b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"})
    assert "ca.pem" in paths(read_tree(app))


@pytest.mark.parametrize("name", ["pki", "dist", "inventory"])
def test_the_projects_pki_dist_or_inventory_inside_the_tree_is_refused(app, name):
    (app / name).mkdir()
    with pytest.raises(BadInput, match=rf"{name} is the project's pki/, dist/ or inventory/"):
        read_tree(app, forbidden_dirs=[app / "pki", app / "dist", app / "inventory"])


def test_a_tree_inside_the_pki_is_refused(tmp_path):
    pki = make(tmp_path / "pki", {"ca.crt": b"x"})
    with pytest.raises(BadInput, match=r"\. is the project's pki/, dist/ or inventory/"):
        read_tree(pki, forbidden_dirs=[pki])


@pytest.mark.parametrize("target", ["../outside", "/etc/passwd", "lib/../../x", ".."])
def test_a_symlink_leading_outside_the_tree_is_refused(app, target):
    (app / "link").symlink_to(target)
    with pytest.raises(BadInput, match=rf"symlink link -> {target} points outside the tree"):
        read_tree(app)


def test_symlinks_inside_the_tree_are_kept_not_followed(app):
    make(app, {"lib/up": "../index.php", "alias": "lib"})
    tree = read_tree(app)
    kinds = {e.path: (e.kind, e.detail) for e in tree.entries}
    assert kinds["alias"] == ("link", "lib") and kinds["lib/up"] == ("link", "../index.php")
    assert "alias/A.php" not in kinds


def test_a_fifo_is_refused(app):
    os.mkfifo(app / "pipe")
    with pytest.raises(BadInput, match="pipe is not a file, directory or symlink"):
        read_tree(app)


def test_the_tar_is_roots_world_readable_and_keeps_links(app):
    make(app, {"bin/run": b"#!/bin/sh\n", "link": "index.php"})
    (app / "bin" / "run").chmod(0o700)
    (app / "index.php").chmod(0o600)
    with tar_of(read_tree(app)) as spool, tarfile.open(fileobj=spool) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert sorted(members) == ["bin", "bin/run", "index.php", "lib", "lib/A.php", "link"]
    assert {(m.uid, m.gid) for m in members.values()} == {(0, 0)}
    assert members["index.php"].mode == 0o644 and members["bin/run"].mode == 0o755
    assert members["link"].issym() and members["link"].linkname == "index.php"
