"""Pid files and /proc: which systemd-nspawn runs a host, and the state of a process."""

from __future__ import annotations

import os
import time
from pathlib import Path

from .spec import HostPaths

SUPERVISOR_NAME = "mtls-lab-host"  # the supervisor's $0, how /proc tells it apart


def running_pid(paths: HostPaths) -> int | None:
    """The pid of this host's running systemd-nspawn, from its pid file; None if the pid file is
    missing or stale (the process is gone, or the pid now belongs to something else)."""
    try:
        pid = parse_pid(paths.pid_file.read_text())
    except FileNotFoundError:
        return None
    if pid is None or not is_nspawn_of(read_cmdline(pid), paths.root):
        return None
    return pid


def parse_pid(text: str) -> int | None:
    """``"4242\\n"`` -> ``4242``; anything else -> None."""
    text = text.strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def is_nspawn_of(cmdline: bytes, root: Path) -> bool:
    """Whether a /proc/<pid>/cmdline is systemd-nspawn booting ``root``."""
    argv = cmdline.split(b"\0")
    if len(argv) > 4 and argv[3] == SUPERVISOR_NAME.encode():
        argv = argv[4:]  # our supervisor: sh -c SCRIPT mtls-lab-host systemd-nspawn ...
    program = os.path.basename(argv[0])
    return program == b"systemd-nspawn" and f"--directory={root}".encode() in argv


def nspawn_of_supervisor(pid: int, timeout: float = 5.0) -> int:
    """The systemd-nspawn the supervisor ``pid`` runs now (itself for an unsupervised pid file);
    during a reboot there is none for a moment, so wait a little."""
    if os.path.basename(read_cmdline(pid).split(b"\0")[0]) == b"systemd-nspawn":
        return pid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in child_pids(pid):
            if os.path.basename(read_cmdline(child).split(b"\0")[0]) == b"systemd-nspawn":
                return child
        time.sleep(0.1)
    return pid


def container_init(paths: HostPaths) -> int | None:
    """The pid (on this machine) of the host's init, the first process inside its container;
    None when the host is not running."""
    pid = running_pid(paths)
    if pid is None:
        return None
    children = child_pids(nspawn_of_supervisor(pid))
    return children[0] if len(children) == 1 else None


def read_cmdline(pid: int) -> bytes:
    """/proc/<pid>/cmdline, or ``b""`` if there is no such process (a zombie's is empty too)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return b""


def process_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` (R, S, Z...), or None if there is no such process."""
    stat = _read_stat(pid)
    return parse_stat(stat)[0] if stat else None


def child_pids(parent: int) -> list[int]:
    """The pids whose parent is ``parent``."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _read_stat(int(entry.name))
            if stat and parse_stat(stat)[1] == parent:
                children.append(int(entry.name))
    return children


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot): with the pid, names one process for good
    (a pid alone may be reused). None if there is no such process or it has exited."""
    stat = _read_stat(pid)
    if stat is None:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else int(fields[19])


def parse_stat(text: str) -> tuple[str, int]:
    """``(state, ppid)`` from a /proc/<pid>/stat line (the command name may hold spaces)."""
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _read_stat(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
