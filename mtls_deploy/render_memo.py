"""Rendered templates remembered between runs, so that a run whose templates and variables did
not change neither imports Jinja2 nor renders (about 20 ms of a no-op ``inv provision``).

An entry is keyed by the SHA-256 of the template's name, its search path, the exact variables
it got (types included: a tuple is not a list, dict order kept) and the Jinja2 install it was
rendered with; it lists every template the render loaded (or looked for and did not find) with
the SHA-256 of its source. It is used only while each of those still resolves to the same file
with the same bytes. Variables that are not plain data (str, numbers, bool, None, lists, tuples,
dicts with str keys) are never remembered. A template's output must depend on its sources and
variables only: Jinja2's ``random`` filter and ``lipsum`` would be frozen.

The entries live in a private folder of the user's cache (``~/.cache/mtls-deploy/rendered/``,
0700, files 0600): config files the hosts hold, rendered from the inventory. Secrets are not
rendered through templates (keys, ``app.env`` and the pool's env include are built in Python).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from contextlib import contextmanager, suppress
from functools import cache
from importlib.util import find_spec
from pathlib import Path

KEEP = 256  # entries kept (a few per host); an older one only costs a render
_recording = threading.local()


class NotPlain(Exception):
    """A variable that is not plain data: the render is not remembered."""


def key(name: str, search: list[str], context: dict, options: dict) -> str | None:
    """The entry's key, or None when ``context`` holds something that is not plain data."""
    try:
        plain = [_plain(v) for v in (name, search, context, options)]
    except NotPlain:
        return None
    text = json.dumps([plain, "sandboxed", *_jinja2()], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@cache
def _jinja2() -> tuple[str, int]:
    """Where Jinja2 is installed and when (found without importing it), once a process."""
    jinja = find_spec("jinja2")
    origin = jinja.origin if jinja and jinja.origin else ""
    return origin, os.stat(origin).st_mtime_ns if origin else 0


def _plain(value):
    if value is None or type(value) in (bool, int, float, str):
        return [type(value).__name__, value]
    if type(value) in (list, tuple):
        return [type(value).__name__, [_plain(v) for v in value]]
    if type(value) is dict and all(type(k) is str for k in value):
        return ["dict", [[k, _plain(v)] for k, v in value.items()]]
    raise NotPlain(type(value).__name__)


def recall(entry_key: str, search: list[str]) -> bytes | None:
    """The remembered output, when every template it loaded is still the same file."""
    folder = _folder()
    if folder is None:
        return None
    try:
        entry = json.loads((folder / f"{entry_key}.json").read_text())
        fresh = all(_source(search, name) == [filename, digest]
                    for name, filename, digest in entry["deps"])  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return entry["output"].encode() if fresh else None


def remember(entry_key: str, search: list[str], names: list[str], output: bytes) -> None:
    """Keep the output of a render that loaded ``names``; skipped when the cache is unusable."""
    folder = _folder()
    if folder is None:
        return
    from .files import atomic_write

    deps = [[name, *_source(search, name)] for name in dict.fromkeys(names)]
    text = json.dumps({"deps": deps, "output": output.decode()})
    with suppress(OSError):
        atomic_write(folder / f"{entry_key}.json", text.encode(), 0o600, durable=False)
        _prune(folder)


def _source(search: list[str], name: str) -> list:
    """``[file, sha256]`` of the template ``name`` as the loader finds it (the first search
    directory that has it), ``[None, None]`` when none has it."""
    for folder in search:
        path = os.path.normpath(os.path.join(folder, *name.split("/")))
        try:
            with open(path, "rb") as file:
                return [path, hashlib.sha256(file.read()).hexdigest()]
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            continue
    return [None, None]


@contextmanager
def recording():
    """Collect the names of the templates loaded in this thread while the block runs."""
    names: list[str] = []
    outer = getattr(_recording, "names", None)
    _recording.names = names
    try:
        yield names
    finally:
        _recording.names = outer


def loaded(name: str) -> None:
    """The environment tells: template ``name`` was loaded (or looked for) in this thread."""
    names = getattr(_recording, "names", None)
    if names is not None:
        names.append(name)


def _base() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "mtls-deploy" / "rendered"


def _folder() -> Path | None:
    """The private folder, made if needed; None when it is not ours alone."""
    folder = _base()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        mine = folder.stat()
    except OSError:
        return None
    return folder if mine.st_uid == os.getuid() and not mine.st_mode & 0o077 else None


def _prune(folder: Path) -> None:
    """Drop the oldest entries beyond ``KEEP`` (checked once the folder holds a quarter more)."""
    entries = list(os.scandir(folder))
    if len(entries) <= KEEP + KEEP // 4:
        return
    entries.sort(key=lambda e: e.stat().st_mtime_ns)
    for entry in entries[: len(entries) - KEEP]:
        with suppress(OSError):
            os.unlink(entry.path)
