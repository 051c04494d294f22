"""Each host's root filesystem: an overlay of the cached base (the base shared read-only, the
host's own changes in its upper directory, a few MB fresh instead of a 430 MB copy) with an
identity of its own, and the configuration written into it before boot (login user, sudo rule,
lab key, sshd drop-in)."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict
from pathlib import Path

from ..errors import UserError
from ..files import atomic_write
from .base import run_command
from .containers import stop
from .keys import KEY_COMMENT
from .spec import HostPaths, LabHost

DROP_IN = "etc/ssh/sshd_config.d/10-mtls-deploy-lab.conf"
SUDOERS = "etc/sudoers.d/90-mtls-deploy-lab"
MASKED_UNITS = (
    "console-getty.service",  # the console is a read-only boot log here: nobody logs in on it
    "apt-daily.timer",  # would take the dpkg lock in the middle of a provisioning run
    "apt-daily-upgrade.timer",
)


def create_root(host: LabHost, paths: HostPaths, base: Path) -> None:
    """Give the host a root of its own: an overlay of the base (shared, never written) with the
    host's changes in its upper directory; then its own identity. ``lower`` is written last:
    without it, what is there is an interrupted creation and is made again."""
    paths.dir.mkdir(parents=True, exist_ok=True)
    unmount_root(paths)
    for leftover in (paths.upper, paths.work, paths.dir / "root.partial"):
        if leftover.exists():
            shutil.rmtree(leftover)  # an interrupted creation; it never booted
    for folder in (paths.upper, paths.work, paths.root):
        folder.mkdir(mode=0o755, exist_ok=True)
    mount_overlay(paths, base)
    give_identity(paths.root, host.name)
    atomic_write(paths.lower, f"{base}\n".encode(), 0o644)


def has_root(paths: HostPaths) -> bool:
    """Whether the host has a root: a finished overlay, or a full copy from before overlays."""
    if paths.upper.exists():
        return paths.lower.is_file()
    return paths.root.is_dir()


def mount_root(paths: HostPaths) -> None:
    """Mount the host's overlay unless it is mounted (after ``down`` or a reboot of this
    machine); a full copy needs nothing."""
    if paths.lower.is_file() and not is_mount_point(paths.root):
        mount_overlay(paths, Path(paths.lower.read_text().strip()))


def mount_overlay(paths: HostPaths, base: Path) -> None:
    """overlayfs on ``root``: the base read-only below, the host's own changes above it."""
    if not base.is_dir():
        raise UserError(f"{paths.root}: its base {base} is gone: run `inv lab.reset` for this host")
    folders = [str(base), str(paths.upper), str(paths.work)]
    if any(c in f for f in folders for c in ",:"):  # they would split mount's option list
        raise UserError(f"{', '.join(folders)}: a ',' or ':' in a lab path: choose another")
    options = f"lowerdir={base},upperdir={paths.upper},workdir={paths.work}"
    run_command(["mount", "-t", "overlay", "overlay", "-o", options, str(paths.root)])


def unmount_root(paths: HostPaths) -> None:
    """Unmount the host's overlay (its container stopped), if it is mounted."""
    if is_mount_point(paths.root):
        run_command(["umount", str(paths.root)])


def give_identity(root: Path, name: str) -> None:
    """Hostname, machine id and SSH host keys of this host alone: the copied base shares them."""
    (root / "etc/hostname").write_text(f"{name}\n")
    (root / "etc/hosts").write_text(hosts_file(name))
    (root / "etc/machine-id").write_text(f"{uuid.uuid4().hex}\n")
    (root / "etc/default/locale").write_text("LANG=C.UTF-8\n")  # pam_env warns on every login
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    run_command(["chroot", str(root), "ssh-keygen", "-A"])
    for unit in MASKED_UNITS:
        mask = root / "etc/systemd/system" / unit
        mask.unlink(missing_ok=True)
        mask.symlink_to("/dev/null")


def hosts_file(name: str) -> str:
    """/etc/hosts that resolves the host's own name (else sudo warns on every call)."""
    return f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def remove_root(paths: HostPaths) -> None:
    """Stop the host and delete its root filesystem (its overlay's upper directory, or its
    full copy) and settings."""
    stop(paths)
    unmount_root(paths)
    paths.lower.unlink(missing_ok=True)  # first: what is left is an unfinished root
    for folder in (paths.root, paths.upper, paths.work):
        if folder.exists():
            refuse_mounts_under(folder)
            shutil.rmtree(folder)
    paths.settings.unlink(missing_ok=True)


def mount_points() -> list[str]:
    """Every mount point of this machine (``/proc/self/mountinfo``), unescaped."""
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line.split()[4].encode().decode("unicode_escape") for line in lines]


def is_mount_point(path: Path) -> bool:
    """Whether something is mounted on ``path``."""
    return str(path) in mount_points()


def refuse_mounts_under(root: Path) -> None:
    """Never delete through a mount point (a bind mount left behind would lose its source)."""
    prefix = f"{root}/"
    for mount_point in mount_points():
        if mount_point == str(root) or mount_point.startswith(prefix):
            raise UserError(f"{mount_point} is mounted: unmount it, then run again")


def configure_root(host: LabHost, root: Path, public_key: str) -> None:
    """The login user, its sudo rule, the lab key in its authorized_keys, and the sshd drop-in."""
    ensure_user(root, host.user)
    write_sudoers(root, host)
    write_authorized_keys(root, host.user, public_key)
    drop_in = root / DROP_IN
    drop_in.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(drop_in, sshd_drop_in(host).encode(), 0o644)


def sshd_drop_in(host: LabHost) -> str:
    """sshd settings of a lab host: its own loopback port, keys only, no root."""
    return (
        "# Written by mtls-deploy's lab: loopback only, keys only, no root.\n"
        f"Port {host.ssh_port}\n"
        f"ListenAddress {host.address}\n"
        "PermitRootLogin no\n"
        "PasswordAuthentication no\n"
    )


def ensure_user(root: Path, user: str) -> None:
    """Create the login user with a home directory, unless the root has it already."""
    if passwd_entry(root, user) is None:
        # "*": no password at all, yet not locked, so key logins work.
        useradd = ["useradd", "--create-home", "--shell", "/bin/bash", "--user-group", "-p", "*"]
        run_command(["chroot", str(root), *useradd, user])


def passwd_entry(root: Path, user: str) -> tuple[int, int, str] | None:
    """``(uid, gid, home)`` of ``user`` in the root's own /etc/passwd, or None."""
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if len(fields) >= 7 and fields[0] == user:
            return int(fields[2]), int(fields[3]), fields[5]
    return None


def write_sudoers(root: Path, host: LabHost) -> None:
    """Passwordless sudo for the login user when ``host.sudo``; no rule otherwise."""
    path = root / SUDOERS
    if host.sudo:
        atomic_write(path, f"{host.user} ALL=(ALL:ALL) NOPASSWD: ALL\n".encode(), 0o440)
    else:
        path.unlink(missing_ok=True)


def write_authorized_keys(root: Path, user: str, public_key: str) -> None:
    """Put the lab's key in the user's authorized_keys, replacing an older lab key."""
    entry = passwd_entry(root, user)
    if entry is None:
        raise UserError(f"no user {user} in {root}: run `inv lab.reset` for this host")
    uid, gid, home = entry
    ssh_dir = root / home.lstrip("/") / ".ssh"
    path = ssh_dir / "authorized_keys"
    refuse_symlinks(root, path)  # the user owns these: never follow a link out of the root
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    os.chown(ssh_dir, uid, gid)
    old = path.read_text() if path.exists() else ""
    new = authorized_keys_text(old, public_key)
    if new != old:
        atomic_write(path, new.encode(), 0o600, owner=(uid, gid))


def authorized_keys_text(old: str, public_key: str) -> str:
    """``old`` authorized_keys without earlier lab keys, plus ``public_key``."""
    kept = [line for line in old.splitlines() if not line.endswith(f" {KEY_COMMENT}")]
    return "\n".join([*kept, public_key]) + "\n"


def refuse_symlinks(root: Path, path: Path) -> None:
    """Raise if ``path`` or a directory between it and ``root`` is a symbolic link."""
    for part in [path, *path.parents]:
        if part == root:
            return
        if part.is_symlink():
            raise UserError(f"{part} is a symbolic link: run `inv lab.reset` for this host")


def read_settings(paths: HostPaths) -> LabHost | None:
    """The settings a host was last booted with, or None."""
    try:
        return LabHost(**json.loads(paths.settings.read_text()))
    except (FileNotFoundError, TypeError, ValueError):
        return None


def write_settings(paths: HostPaths, host: LabHost) -> None:
    """Remember what the host boots with, so ``up`` can tell when the inventory changed."""
    atomic_write(paths.settings, json.dumps(asdict(host), indent=2).encode(), 0o644)
