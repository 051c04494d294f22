"""Booting and stopping a host's container: systemd-nspawn under a supervisor that boots it again
after a reboot, waiting for its sshd, powering it off."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from contextlib import suppress
from pathlib import Path

from ..errors import UserError
from ..files import atomic_write
from .package_index import nspawn_options
from .procfs import SUPERVISOR_NAME, child_pids, nspawn_of_supervisor, process_state, running_pid
from .spec import HostPaths, LabHost

BOOT_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
_SPAWNED: dict[int, subprocess.Popen] = {}  # nspawn processes this process started, to reap them
# As systemd-nspawn@.service's RestartForceExitStatus=133: a reboot inside the container makes
# nspawn exit with 133, and the host boots again, as a VPS does after `systemctl reboot`.
SUPERVISOR = 'while :; do "$@"; rc=$?; [ "$rc" -eq 133 ] || exit "$rc"; done'


def nspawn_command(host: LabHost, paths: HostPaths) -> list[str]:
    """systemd-nspawn booting the host's root, sharing this machine's network namespace, with
    this machine's package-index settings (``package_index``; writes the host's pip.conf)."""
    return [
        "systemd-nspawn",
        "--boot",
        "--register=no",
        "--keep-unit",
        "--console=read-only",
        f"--directory={paths.root}",
        f"--machine={host.name}",
        f"--bind={paths.apt_archives}:/var/cache/apt/archives",
        *nspawn_options(paths.dir),  # pip's settings and mirrors of this machine, read-only
    ]


def supervised(command: list[str]) -> list[str]:
    """``command`` run again whenever it exits with 133 (a reboot), else its exit ends it."""
    return ["sh", "-c", SUPERVISOR, SUPERVISOR_NAME, *command]


def boot(host: LabHost, paths: HostPaths) -> int:
    """Start the container in its own session and wait for its sshd; return the nspawn pid."""
    require_port_free(host)
    paths.apt_archives.mkdir(parents=True, exist_ok=True)
    pid = spawn_detached(supervised(nspawn_command(host, paths)), paths.boot_log)
    atomic_write(paths.pid_file, f"{pid}\n".encode(), 0o644)
    wait_for_ssh(host, paths, pid)
    return pid


def spawn_detached(argv: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    """Start ``argv`` in a session of its own, its output in ``log`` (truncated): it outlives this
    process and a Ctrl-C in the terminal does not reach it. ``has_exited`` reaps it."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # setsid
        )
    _SPAWNED[process.pid] = process
    return process.pid


def require_port_free(host: LabHost) -> None:
    """Raise if another program already holds the host's SSH address and port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.address, host.ssh_port))
        except OSError as error:
            raise UserError(
                f"{host.name}: {host.address}:{host.ssh_port} is taken by another program"
                f" ({error.strerror}): stop it, or give {host.name} another ansible_port"
            ) from None


def wait_for_ssh(host: LabHost, paths: HostPaths, pid: int) -> None:
    """Wait until sshd answers with its banner; on failure stop the container and say why."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        if ssh_banner(host.address, host.ssh_port):
            return
        if has_exited(pid):
            raise UserError(
                f"{host.name}: the container stopped while booting; see {paths.boot_log}"
            )
        time.sleep(0.2)
    stop(paths)
    raise UserError(
        f"{host.name}: no SSH banner on {host.address}:{host.ssh_port} within"
        f" {BOOT_TIMEOUT:.0f} s; see the boot log {paths.boot_log}"
    )


def ssh_banner(address: str, port: int, timeout: float = 1.0) -> bool:
    """Whether an SSH server answers on ``address``:``port`` with its ``SSH-`` banner."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as connection:
            answered = connection.recv(64).startswith(b"SSH-")
            if answered:  # say who we are, or sshd logs an error for every probe
                connection.sendall(b"SSH-2.0-mtls-deploy-lab-probe\r\n")
            return answered
    except OSError:
        return False


def stop(paths: HostPaths) -> bool:
    """Power the host's container off: SIGTERM to nspawn (it halts the container's init), then
    SIGKILL to the container's init and nspawn if it is not gone in time. False if not running."""
    pid = running_pid(paths)
    if pid is None:
        paths.pid_file.unlink(missing_ok=True)  # none or stale
        return False
    nspawn = nspawn_of_supervisor(pid)
    _signal(nspawn, signal.SIGTERM)  # nspawn exits 0 after poweroff: the supervisor ends too
    if not wait_for_exit(pid, STOP_TIMEOUT):
        _signal(pid, signal.SIGKILL)  # the supervisor first, so nothing boots again
        for process in [*child_pids(nspawn), nspawn]:  # the init's death ends its pid namespace
            _signal(process, signal.SIGKILL)
        if not wait_for_exit(pid, 5.0):
            raise UserError(f"systemd-nspawn (pid {pid}) does not exit, even on SIGKILL")
    paths.pid_file.unlink(missing_ok=True)
    return True


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the process to exit; True if it did."""
    deadline = time.monotonic() + timeout
    while not has_exited(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def wait_until_reaped(pids: list[int], timeout: float) -> None:
    """Wait a little for init to reap exited processes, so that none is left, not even a zombie."""
    deadline = time.monotonic() + timeout
    while any(process_state(pid) == "Z" for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def has_exited(pid: int) -> bool:
    """Whether ``pid`` has exited (reaping it when this process started it)."""
    process = _SPAWNED.get(pid)
    if process is not None:
        if process.poll() is None:
            return False
        del _SPAWNED[pid]
        return True
    return process_state(pid) in (None, "Z")  # a zombie has exited; its parent reaps it


def _signal(pid: int, signum: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signum)
