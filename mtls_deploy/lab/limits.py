"""The kernel's inotify limits the lab needs: every booted host's systemd, journald, logind
and dbus hold inotify instances of root's (the containers share this machine's users), and
``fs.inotify.max_user_instances`` is 128 on a fresh machine: past about 20 hosts a container
fails to boot ("Failed to create control group inotify object: Too many open files")."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .procfs import running_pid
from .spec import Progress, hosts_dir, paths_for

PROC_SYS = Path("/proc/sys/fs/inotify")
INSTANCES_PER_HOST = 12  # a booted host holds about 7 (measured): room for what it runs later
WATCHES_PER_HOST = 1024  # about 30 (measured)
MACHINE_SHARE = 64  # this machine's own programs running as root
RAISED_TO = {"max_user_instances": 1024, "max_user_watches": 65536}  # floors once raised


def needed(hosts: int) -> dict[str, int]:
    """The inotify limits ``hosts`` running lab hosts need, by /proc/sys/fs/inotify name."""
    return {
        "max_user_instances": MACHINE_SHARE + INSTANCES_PER_HOST * hosts,
        "max_user_watches": 8192 + WATCHES_PER_HOST * hosts,
    }


def running_lab_hosts() -> set[str]:
    """Names of the lab hosts running now, whatever inventory they came from."""
    folder = hosts_dir()
    names = [p.name for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    return {name for name in names if running_pid(paths_for(name)) is not None}


def ensure_inotify(names: list[str], progress: Progress, proc_sys: Path = PROC_SYS) -> None:
    """Raise the inotify limits to what the running lab hosts and ``names`` need, saying so in
    one line; where they cannot be raised from here, one line with the ``sysctl`` to run."""
    hosts = len(running_lab_hosts() | set(names))
    for name, need in needed(hosts).items():
        path = proc_sys / name
        now = int(path.read_text())
        if now >= need:
            continue
        value = max(need, RAISED_TO[name])
        try:
            path.write_text(f"{value}\n")
        except OSError as error:
            raise UserError(
                f"fs.inotify.{name} is {now}, {hosts} lab hosts need {need}, and this process"
                f" cannot raise it ({error.strerror}): run `sysctl -w fs.inotify.{name}={value}`"
            ) from None
        progress(
            f"raised fs.inotify.{name} from {now} to {value} for {hosts} lab hosts"
            " (until this machine reboots)"
        )
