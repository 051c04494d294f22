"""Long-lived processes the lab owns besides its containers (Pebble and its DNS): started in a
session of their own so they outlive ``inv``, found again through a pid file and the command
line they were started with, kept when their settings are unchanged, stopped on ``down``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..files import atomic_write
from .containers import has_exited, spawn_detached, wait_for_exit
from .procfs import parse_pid, read_cmdline

READY_TIMEOUT = 20.0
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Service:
    """One long-lived process: what it runs, where its pid and log go, the ports it binds."""

    label: str
    argv: list[str]
    env: dict[str, str]
    inputs: dict[str, bytes]  # files it reads at start: a change restarts it
    pid_file: Path
    log: Path
    settings: Path
    ports: tuple[tuple[int, int], ...]  # (socket type, port) it binds on 127.0.0.1


def ensure_running(service: Service, ready: Callable[[], bool]) -> bool:
    """Keep ``service`` when it runs with the same settings, else (re)start it; True if started."""
    wanted = settings_text(service.argv, service.env, service.inputs)
    if running_service_pid(service) is not None:
        if read_or_empty(service.settings).decode() == wanted:
            return False
        stop_service(service)
    require_ports_free(service)
    atomic_write(service.settings, wanted.encode(), 0o644)
    pid = spawn_detached(service.argv, service.log, service.env)
    atomic_write(service.pid_file, f"{pid}\n".encode(), 0o644)
    wait_until_ready(service, pid, ready)
    return True


def running_service_pid(service: Service) -> int | None:
    """The service's pid, if its pid file names a live process running its recorded command."""
    try:
        pid = parse_pid(service.pid_file.read_text())
        argv = json.loads(service.settings.read_text())["argv"]
    except (FileNotFoundError, ValueError, KeyError):
        return None
    if pid is None or read_cmdline(pid) != b"".join(a.encode() + b"\0" for a in argv):
        return None
    return None if has_exited(pid) else pid


def stop_service(service: Service) -> bool:
    """SIGTERM, then SIGKILL if it lingers; False if it was not running."""
    pid = running_service_pid(service)
    if pid is not None:
        _signal(pid, signal.SIGTERM)
        if not wait_for_exit(pid, 10.0):
            _signal(pid, signal.SIGKILL)
            if not wait_for_exit(pid, 5.0):
                raise UserError(f"{service.label} (pid {pid}) does not exit, even on SIGKILL")
    service.pid_file.unlink(missing_ok=True)
    return pid is not None


def wait_until_ready(service: Service, pid: int, ready: Callable[[], bool]) -> None:
    """Wait until ``ready()``; if the process ends or takes too long, stop it and say why."""
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready():
        if has_exited(pid) or time.monotonic() > deadline:
            stop_service(service)
            raise UserError(
                f"{service.label} did not start: {last_line(service.log)} (see {service.log})"
            )
        time.sleep(0.1)


def require_ports_free(service: Service) -> None:
    """Raise, naming the port, if another program holds one of the service's ports."""
    for kind, port in service.ports:
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((LOOPBACK, port))
            except OSError as error:
                raise UserError(
                    f"{service.label}: {LOOPBACK}:{port} is taken by another program "
                    f"({error.strerror}): stop it (another project's lab: `inv lab.down` there)"
                ) from None


def require_programs(programs: tuple[str, ...], package: str) -> None:
    """The programs on PATH, Debian's ``package`` installed first if one is missing (as root)."""
    if all(shutil.which(p) for p in programs):
        return
    install = ["apt-get", "install", "-y", package]
    if os.geteuid() != 0:
        raise UserError(f"{programs[0]} is not installed: run `{' '.join(install)}` as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(install, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"`{' '.join(install)}` failed: {reason}")


def program_path(name: str) -> str:
    """The program's absolute path (what /proc shows for the process), or its bare name."""
    return shutil.which(name) or name


def last_line(path: Path) -> str:
    """The last non-empty line of a log, or a note that it is empty."""
    lines = [line for line in read_or_empty(path).decode(errors="replace").splitlines() if line]
    return lines[-1] if lines else "no output"


def settings_text(argv: list[str], env: dict[str, str], inputs: dict[str, bytes]) -> str:
    """What a process was started with (command line, environment, sha256 of the files it
    reads): when it is unchanged, a running process is kept."""
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(inputs.items())}
    return json.dumps({"argv": argv, "env": env, "inputs": digests}, indent=2) + "\n"


def read_or_empty(path: Path) -> bytes:
    """The file's bytes, or ``b""`` if there is no such file."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _signal(pid: int, signum: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signum)
