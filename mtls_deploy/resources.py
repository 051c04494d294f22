"""Desired state: what a role says a host should have. Plain frozen data, no I/O.

Roles return a list of these; the engine gathers the matching facts in one batch,
plans the difference (``operations.py``) and applies only what is missing.
"""

from dataclasses import dataclass, field

from .shell import ShellCommand

Handlers = tuple[str, ...]


@dataclass(frozen=True)
class Packages:
    """Debian packages that must be installed (apt), installed without auto-starting services."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class Directory:
    """A directory with an owner, group and mode.

    ``tree``: everything that comes to be under it is ours (what a release pipeline or a
    service writes there). When this run creates it, the manifest records it as a tree, and
    when its role leaves the host the whole tree goes (``manifest.py``); one that was there
    before us is only ever removed when empty."""

    path: str
    mode: int = 0o755
    owner: str = "root"
    group: str = "root"
    tree: bool = False


@dataclass(frozen=True)
class File:
    """A file with exact content, owner, group and mode.

    ``secret`` files (private keys) are never diffed or printed: their fingerprint is shown.
    ``validate`` names a check a role declares (``Validator``), run after the file is in place; when it fails,
    every file of that check is restored and the host fails.
    ``notify`` names handlers to run once, at the end of the host's run, if this changed.
    ``tags`` let a run pick some resources only (``RunOptions(tags=...)``: the CRL push).
    """

    path: str
    content: bytes
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    secret: bool = False
    validate: str | None = None
    notify: Handlers = ()
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Absent:
    """A path (file or symlink) that must not exist, such as a distribution's default site."""

    path: str
    validate: str | None = None
    notify: Handlers = ()
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class User:
    """A system user (no login shell, no home in /home) for a service."""

    name: str
    home: str = "/nonexistent"
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Service:
    """A systemd unit that must be enabled and running (``running=False``: stopped and disabled)."""

    name: str
    running: bool = True
    enabled: bool = True


@dataclass(frozen=True)
class Command:
    """A command run as root, guarded as in Ansible: skipped when ``creates`` exists or
    when ``unless`` (a read-only check, run with the facts) succeeds. Unguarded, it runs each
    time, so give it a guard.

    ``command`` and ``unless`` are argv (``(("a2enmod", name),)``, quoted by the engine: the
    form for anything that carries a variable) or a str, a fixed script with no variable in it
    (see ``shell.py``)."""

    command: ShellCommand
    creates: str | None = None
    unless: ShellCommand | None = None
    notify: Handlers = ()


@dataclass(frozen=True)
class Removed:
    """What a role that left the host had put there, as the host's manifest recorded it: a
    ``unit`` stopped and disabled, a ``file`` deleted, a ``directory`` deleted when empty, a
    ``user`` deleted. The engine plans these itself (``manifest.py``); roles never return one."""

    kind: str
    name: str
    role: str


@dataclass(frozen=True)
class Handler:
    """A command run once at the end of a host's run when some change notified it: argv such
    as ``(("systemctl", "restart", unit),)`` or a fixed script (see ``Command``). ``covers``:
    handlers it does the work of (a restart covers a reload): when both are notified, only
    this one runs."""

    name: str
    command: ShellCommand
    order: int = 50
    listen: Handlers = field(default=())
    covers: Handlers = field(default=())


@dataclass(frozen=True)
class Validator:
    """A check of the files a role owns, named by their ``validate``: run as root after they are
    in place and before any handler; when it fails, they are restored. ``error_lines``: a word
    that picks the line of its output to report (default: the first non-empty line)."""

    name: str
    command: ShellCommand
    error_lines: str | None = None


def tagged(resource, tags) -> bool:
    """True when ``resource`` carries one of ``tags``."""
    return bool(set(getattr(resource, "tags", ())) & set(tags))
