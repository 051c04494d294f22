"""The application's tree on the control machine: what is sent, its digest, what is refused.

``read_tree`` walks ``app_src`` (symlinks are never followed), leaves out what ``app_exclude``
names and ``.git``, ``__pycache__``, ``.venv``, and refuses, in one line, a tree that holds a
PEM private key, the project's ``pki/``, ``dist/`` or ``inventory/``, a symlink that leads
outside it, or anything that is not a file, directory or symlink. The digest covers paths, kinds, executable
bits, contents and link targets: the same tree gives the same digest on any machine.
"""

import fnmatch
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInput

ALWAYS_EXCLUDED = (".git", "__pycache__", ".venv")
BUILD_FILES = ("requirements.txt", "composer.json", "composer.lock", "package.json")
PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    """One path of the tree: ``kind`` file, dir or link; ``detail`` a file's sha256 or a link's
    target; ``executable`` for files with an execute bit."""

    path: str
    kind: str
    detail: str = ""
    executable: bool = False

    def line(self) -> str:
        """What the digest covers of this entry."""
        return f"{self.kind}\0{self.path}\0{'x' if self.executable else '-'}\0{self.detail}\n"


@dataclass(frozen=True)
class Tree:
    """A walked tree: its root on this machine and its entries, sorted by path."""

    root: Path
    entries: tuple[Entry, ...]

    @property
    def digest(self) -> str:
        """sha256 hex of every entry's line, in path order."""
        lines = "".join(entry.line() for entry in self.entries)
        return hashlib.sha256(lines.encode("utf-8", "surrogateescape")).hexdigest()

    @property
    def sha12(self) -> str:
        """The digest's first 12 hex digits (a release's name ends with ``plan.release_sha12``,
        which adds the backend)."""
        return self.digest[:12]

    @property
    def files(self) -> frozenset[str]:
        """Relative paths of the tree's regular files."""
        return frozenset(e.path for e in self.entries if e.kind == "file")

    @property
    def digests(self) -> dict[str, str]:
        """sha256 of the build files a backend reads (``requirements.txt``, ...), when present."""
        return {
            e.path: e.detail for e in self.entries if e.kind == "file" and e.path in BUILD_FILES
        }


def read_tree(root: Path, exclude=(), forbidden_dirs=()) -> Tree:
    """Walk ``root`` (a directory) into a ``Tree``, or one ``BadInput`` line saying what in it
    is refused and how to fix it. ``forbidden_dirs``: the project's ``pki/``, ``dist/``,
    ``inventory/``.

    Example: ``read_tree(Path("app"), ["*.log", "tests/"]).sha12`` -> ``"1a2b3c4d5e6f"``
    """
    root = Path(root)
    forbidden = {_real(Path(d)) for d in forbidden_dirs}
    entries: list[Entry] = []
    for folder, dirs, files in os.walk(root):
        relative = _relative(root, Path(folder))
        if _real(Path(folder)) in forbidden:
            raise BadInput(_holds_project_dir(root, relative))
        dirs[:] = sorted(d for d in dirs if not _excluded(_join(relative, d), True, exclude))
        names = [f for f in files if not _excluded(_join(relative, f), False, exclude)]
        for name in sorted(names + [d for d in dirs if os.path.islink(Path(folder) / d)]):
            entries.append(_entry(root, _join(relative, name)))
        dirs[:] = [d for d in dirs if not os.path.islink(Path(folder) / d)]
        entries += [Entry(_join(relative, d), "dir") for d in dirs]
    return Tree(root, tuple(sorted(entries, key=lambda e: e.path)))


def _excluded(path: str, is_dir: bool, patterns) -> bool:
    """True when ``path`` (relative, '/'-separated) is not sent: a part of it is one of
    ``ALWAYS_EXCLUDED``, or a pattern matches it; a pattern without '/' matches any single
    name, one ending in '/' only directories."""
    if set(path.split("/")) & set(ALWAYS_EXCLUDED):
        return True
    return any(_matches(path, is_dir, pattern) for pattern in patterns)


def _matches(path: str, is_dir: bool, pattern: str) -> bool:
    if pattern.endswith("/"):
        if not is_dir:
            return False
        pattern = pattern.rstrip("/")
    if "/" in pattern:
        return fnmatch.fnmatchcase(path, pattern)
    return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)


def _entry(root: Path, relative: str) -> Entry:
    path = root / relative
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        return Entry(relative, "link", _link_target(root, relative))
    if not stat.S_ISREG(info.st_mode):
        raise BadInput(
            f"app_src {root}: {relative} is not a file, directory or symlink (a socket, fifo or "
            "device): remove it or list it in app_exclude"
        )
    executable = bool(info.st_mode & 0o111)
    return Entry(relative, "file", _file_digest(root, relative), executable)


def _file_digest(root: Path, relative: str) -> str:
    """sha256 of the file, refusing one that holds a PEM private key."""
    digest, tail = hashlib.sha256(), b""
    with open(root / relative, "rb") as stream:
        while chunk := stream.read(CHUNK):
            if PRIVATE_KEY.search(tail + chunk):
                raise BadInput(
                    f"app_src {root}: {relative} holds a private key (PEM): keys do not belong "
                    "in a release; move it out of the tree or list it in app_exclude"
                )
            digest.update(chunk)
            tail = (tail + chunk)[-64:]
    return digest.hexdigest()


def _link_target(root: Path, relative: str) -> str:
    """The link's target, refused when it is absolute or leads outside the tree."""
    target = os.readlink(root / relative)
    parent = os.path.dirname(relative)
    inside = os.path.normpath(os.path.join(parent, target))
    if os.path.isabs(target) or inside == ".." or inside.startswith("../"):
        raise BadInput(
            f"app_src {root}: symlink {relative} -> {target} points outside the tree: "
            "make it relative and inside the tree, or list it in app_exclude"
        )
    return target


def _holds_project_dir(root: Path, relative: str) -> str:
    where = relative or "."
    return (
        f"app_src {root}: {where} is the project's pki/, dist/ or inventory/ (CA keys, client "
        "bundles, secrets): point app_src at the application's own directory, or list it in "
        "app_exclude"
    )


def _relative(root: Path, folder: Path) -> str:
    relative = folder.relative_to(root).as_posix()
    return "" if relative == "." else relative


def _join(relative: str, name: str) -> str:
    return f"{relative}/{name}" if relative else name


def _real(path: Path) -> str:
    return os.path.realpath(path)
