"""The lab's verbs: ``up``, ``down``, ``status``, ``reset``."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from ..errors import UserError
from .base import ensure_base
from .containers import boot, stop, wait_until_reaped
from .keys import ensure_key_pair, record_host_key
from .limits import ensure_inotify
from .procfs import running_pid
from .root import (
    configure_root,
    create_root,
    has_root,
    mount_root,
    read_settings,
    remove_root,
    unmount_root,
    write_authorized_keys,
    write_settings,
)
from .spec import (
    HostPaths,
    HostStatus,
    LabHost,
    Progress,
    check_hosts,
    paths_for,
    require_root,
    require_tools,
)


def up(
    hosts: Iterable[LabHost], state_dir: Path = Path(".lab"), progress: Progress | None = None
) -> dict[str, str]:
    """Boot the lab hosts, building the base and each host's root first if needed; idempotent.

    Returns what happened per host. Example: ``up([LabHost("api1", "127.0.0.1", 2201, "deploy",
    True)])`` -> ``{"api1": "started in 1.2 s (pid 4242)"}``.
    """
    hosts, progress = _checked(hosts), progress or _quiet
    ensure_inotify([h.name for h in hosts], progress)
    public_key = ensure_key_pair(Path(state_dir))
    return {h.name: _up_one(h, Path(state_dir), public_key, progress) for h in hosts}


def down(hosts: Iterable[LabHost]) -> dict[str, str]:
    """Stop the lab's own containers for these hosts and wait until they are gone; idempotent."""
    hosts = _checked(hosts, tools=())
    pids = [running_pid(paths_for(h.name)) for h in hosts]
    outcome = {h.name: _down_one(paths_for(h.name)) for h in hosts}
    wait_until_reaped([pid for pid in pids if pid], timeout=10.0)
    for host in hosts:  # nothing of a stopped lab stays mounted
        unmount_root(paths_for(host.name))
    return outcome


def status(hosts: Iterable[LabHost]) -> list[HostStatus]:
    """Whether each lab host is running, stopped or absent, with its nspawn pid."""
    return [_status_one(host) for host in hosts]


def reset(
    hosts: Iterable[LabHost], state_dir: Path = Path(".lab"), progress: Progress | None = None
) -> dict[str, str]:
    """Stop the hosts, delete their roots (their overlays' upper directories), and boot fresh
    ones on the base: new VPSes."""
    hosts = _checked(hosts)
    for host in hosts:
        remove_root(paths_for(host.name))
    return up(hosts, state_dir, progress)


def _up_one(host: LabHost, state_dir: Path, public_key: str, progress: Progress) -> str:
    paths = paths_for(host.name)
    pid = running_pid(paths)
    if pid is not None and read_settings(paths) == host:
        write_authorized_keys(paths.root, host.user, public_key)
        record_host_key(state_dir, host, paths.root)
        return f"already running (pid {pid})"
    refuse_release_change(host, read_settings(paths), paths)
    restarted = pid is not None and stop(paths)  # running with other settings
    if has_root(paths):
        mount_root(paths)
    else:
        create_root(host, paths, ensure_base(progress, host.release))
    configure_root(host, paths.root, public_key)
    write_settings(paths, host)
    started = time.monotonic()
    pid = boot(host, paths)
    record_host_key(state_dir, host, paths.root)
    verb = "restarted with new settings" if restarted else "started"
    return f"{verb} in {time.monotonic() - started:.1f} s (pid {pid})"


def refuse_release_change(host: LabHost, last: LabHost | None, paths: HostPaths) -> None:
    """A host's Debian release is its root's: another ``lab_release`` needs a new root."""
    if last is not None and last.release != host.release and has_root(paths):
        raise UserError(
            f"{host.name} runs {last.release} and the inventory now says lab_release:"
            f" {host.release}: run `inv lab.reset --host {host.name}` to make it anew"
        )


def _down_one(paths: HostPaths) -> str:
    if stop(paths):
        return "stopped"
    return "not running" if has_root(paths) else "absent"


def _status_one(host: LabHost) -> HostStatus:
    paths = paths_for(host.name)
    pid = running_pid(paths)
    state = "running" if pid else "stopped" if has_root(paths) else "absent"
    return HostStatus(host.name, state, pid, host.address, host.ssh_port)


def _quiet(message: str) -> None:
    pass


def _checked(hosts: Iterable[LabHost], tools=("systemd-nspawn", "debootstrap")) -> list[LabHost]:
    hosts = list(hosts)
    check_hosts(hosts)
    require_root()
    require_tools(tools)
    return hosts
