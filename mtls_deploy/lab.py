"""The lab: throwaway Debian 12 "VPSes" on this machine, booted as systemd-nspawn containers.

Each lab host boots real systemd and OpenSSH from its own copy of a cached Debian base. The
containers share this machine's network namespace, so each host's sshd listens on its own
loopback address and port. The lab makes its own SSH key pair and known_hosts in the state
directory (``.lab/``): after ``up``, plain ``ssh`` and the inventory work without edits::

    hosts = [LabHost("api1", "127.0.0.1", 2201, "deploy", sudo=True)]
    up(hosts); status(hosts); reset(hosts); down(hosts)

Needs root, ``systemd-nspawn`` and ``debootstrap``. The base lives in ``/var/cache/mtls-deploy``
(``MTLS_DEPLOY_LAB_CACHE``), the hosts in ``/var/lib/mtls-deploy/lab`` (``MTLS_DEPLOY_LAB_ROOT``).
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .errors import BadInput, UserError
from .files import atomic_write

INSTALL_COMMAND = "apt-get install -y systemd-container debootstrap"
SUITE = "bookworm"
BASE_PACKAGES = (  # curl, openssl, ca-certificates: as on a Debian cloud image (smoke test, --csr)
    "systemd,systemd-sysv,dbus,openssh-server,sudo,python3,iproute2,curl,openssl,ca-certificates"
)
BOOT_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
KEY_COMMENT = "mtls-deploy-lab"
DROP_IN = "etc/ssh/sshd_config.d/10-mtls-deploy-lab.conf"
SUDOERS = "etc/sudoers.d/90-mtls-deploy-lab"
MASKED_UNITS = (
    "console-getty.service",  # the console is a read-only boot log here: nobody logs in on it
    "apt-daily.timer",  # would take the dpkg lock in the middle of a provisioning run
    "apt-daily-upgrade.timer",
)
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
USER_PATTERN = re.compile(r"[a-z_][a-z0-9_-]{0,31}")

Progress = Callable[[str], None]
_SPAWNED: dict[int, subprocess.Popen] = {}  # nspawn processes this process started, to reap them


@dataclass(frozen=True)
class LabHost:
    """One lab host, from the inventory: ``ansible_host``, ``ansible_port``, ``ansible_user``,
    ``ansible_become``."""

    name: str
    address: str
    ssh_port: int
    user: str
    sudo: bool


@dataclass(frozen=True)
class HostStatus:
    """What ``status`` reports for one lab host: ``state`` is running, stopped or absent."""

    name: str
    state: str
    pid: int | None
    address: str
    ssh_port: int


@dataclass(frozen=True)
class HostPaths:
    """Where one lab host lives on this machine."""

    dir: Path
    root: Path
    pid_file: Path
    boot_log: Path
    settings: Path
    apt_archives: Path


# --- places ------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """The base root filesystem and the apt archives: ``/var/cache/mtls-deploy``."""
    return Path(os.environ.get("MTLS_DEPLOY_LAB_CACHE") or "/var/cache/mtls-deploy").absolute()


def hosts_dir() -> Path:
    """Every lab host's directory: ``/var/lib/mtls-deploy/lab``."""
    return Path(os.environ.get("MTLS_DEPLOY_LAB_ROOT") or "/var/lib/mtls-deploy/lab").absolute()


def paths_for(name: str) -> HostPaths:
    """The root filesystem, nspawn pid file and boot log of the lab host ``name``."""
    directory = hosts_dir() / name
    return HostPaths(
        dir=directory,
        root=directory / "root",
        pid_file=directory / "nspawn.pid",
        boot_log=directory / "boot.log",
        settings=directory / "host.json",
        # Per host, so that two hosts' apt runs never fight over one archive lock.
        apt_archives=cache_dir() / "apt-archives" / name,
    )


# --- the lab's verbs -----------------------------------------------------------------------------


def up(
    hosts: Iterable[LabHost], state_dir: Path = Path(".lab"), progress: Progress | None = None
) -> dict[str, str]:
    """Boot the lab hosts, building the base and each host's root first if needed; idempotent.

    Returns what happened per host. Example: ``up([LabHost("api1", "127.0.0.1", 2201, "deploy",
    True)])`` -> ``{"api1": "started in 1.2 s (pid 4242)"}``.
    """
    hosts = _checked(hosts)
    public_key = ensure_key_pair(Path(state_dir))
    return {h.name: _up_one(h, Path(state_dir), public_key, progress or _quiet) for h in hosts}


def down(hosts: Iterable[LabHost]) -> dict[str, str]:
    """Stop the lab's own containers for these hosts and wait until they are gone; idempotent."""
    hosts = _checked(hosts, tools=())
    pids = [running_pid(paths_for(h.name)) for h in hosts]
    outcome = {h.name: _down_one(paths_for(h.name)) for h in hosts}
    wait_until_reaped([pid for pid in pids if pid], timeout=10.0)
    return outcome


def status(hosts: Iterable[LabHost]) -> list[HostStatus]:
    """Whether each lab host is running, stopped or absent, with its nspawn pid."""
    return [_status_one(host) for host in hosts]


def reset(
    hosts: Iterable[LabHost], state_dir: Path = Path(".lab"), progress: Progress | None = None
) -> dict[str, str]:
    """Stop the hosts, delete their roots, and boot fresh copies of the base: new VPSes."""
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
    restarted = pid is not None and stop(paths)  # running with other settings
    if not paths.root.is_dir():
        create_root(host, paths, ensure_base(progress))
    configure_root(host, paths.root, public_key)
    write_settings(paths, host)
    started = time.monotonic()
    pid = boot(host, paths)
    record_host_key(state_dir, host, paths.root)
    verb = "restarted with new settings" if restarted else "started"
    return f"{verb} in {time.monotonic() - started:.1f} s (pid {pid})"


def _down_one(paths: HostPaths) -> str:
    if stop(paths):
        return "stopped"
    return "not running" if paths.root.is_dir() else "absent"


def _status_one(host: LabHost) -> HostStatus:
    paths = paths_for(host.name)
    pid = running_pid(paths)
    state = "running" if pid else "stopped" if paths.root.is_dir() else "absent"
    return HostStatus(host.name, state, pid, host.address, host.ssh_port)


def _quiet(message: str) -> None:
    pass


# --- checks --------------------------------------------------------------------------------------


def _checked(hosts: Iterable[LabHost], tools=("systemd-nspawn", "debootstrap")) -> list[LabHost]:
    hosts = list(hosts)
    check_hosts(hosts)
    require_root()
    require_tools(tools)
    return hosts


def require_root() -> None:
    """The lab boots containers: only root may."""
    if os.geteuid() != 0:
        raise UserError("the lab needs root: run it as root (for example `sudo -E inv lab.up`)")


def require_tools(tools: Iterable[str] = ("systemd-nspawn", "debootstrap")) -> None:
    """Each tool must be on PATH; if not, name the apt-get command that installs them."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise UserError(f"{' and '.join(missing)} not found: install with `{INSTALL_COMMAND}`")


def check_hosts(hosts: list[LabHost]) -> None:
    """Each host valid, and no two hosts sharing a name or an SSH address and port."""
    for host in hosts:
        check_host(host)
    for label, keys in (
        ("name", [h.name for h in hosts]),
        ("ssh address", [f"{h.address}:{h.ssh_port}" for h in hosts]),
    ):
        doubles = sorted({key for key in keys if keys.count(key) > 1})
        if doubles:
            raise BadInput(f"two lab hosts share the {label} {doubles[0]}: give each its own")


def check_host(host: LabHost) -> None:
    """A name fit for a directory, a 127.x address, a port, and a login user that is not root."""
    if not NAME_PATTERN.fullmatch(host.name):
        raise BadInput(f"lab host name {host.name!r}: use lowercase letters, digits and '-'")
    if not _is_loopback_v4(host.address):
        raise BadInput(
            f"{host.name}: ansible_host {host.address!r} is not a 127.x address; lab hosts share"
            " this machine's network and listen on loopback only"
        )
    if not 0 < host.ssh_port < 65536:
        raise BadInput(f"{host.name}: ansible_port {host.ssh_port} is not a TCP port (1-65535)")
    if host.user == "root" or not USER_PATTERN.fullmatch(host.user):
        raise BadInput(f"{host.name}: ansible_user {host.user!r}: set a login user other than root")


def _is_loopback_v4(address: str) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return parsed.version == 4 and parsed.is_loopback


# --- the lab's SSH key pair and known_hosts ------------------------------------------------------


def ensure_key_pair(state_dir: Path) -> str:
    """Make ``state_dir/id_ed25519`` (0600) once; return its public key line."""
    key_file = state_dir / "id_ed25519"
    if not key_file.exists():
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        atomic_write(key_file, pem, 0o600)
    public_key = public_key_line(key_file.read_bytes())
    atomic_write(state_dir / "id_ed25519.pub", f"{public_key}\n".encode(), 0o644)
    return public_key


def public_key_line(private_pem: bytes) -> str:
    """The ``ssh-ed25519 AAAA... mtls-deploy-lab`` line of an OpenSSH private key."""
    key = serialization.load_ssh_private_key(private_pem, password=None)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return f"{public.decode()} {KEY_COMMENT}"


def known_hosts_name(address: str, port: int) -> str:
    """How known_hosts names a host: ``[127.0.0.1]:2201``, or bare ``127.0.0.1`` on port 22."""
    return address if port == 22 else f"[{address}]:{port}"


def known_hosts_line(address: str, port: int, host_key: str) -> str:
    """``"ssh-ed25519 AAAA... root@vm"`` -> ``"[127.0.0.1]:2201 ssh-ed25519 AAAA..."``."""
    key_type, key = host_key.split()[:2]
    return f"{known_hosts_name(address, port)} {key_type} {key}"


def replace_known_host(text: str, address: str, port: int, line: str) -> str:
    """known_hosts ``text`` with every line for ``address``:``port`` replaced by ``line``."""
    name = known_hosts_name(address, port)
    kept = [old for old in text.splitlines() if name not in old.split(" ", 1)[0].split(",")]
    return "\n".join([*kept, line]) + "\n"


def record_host_key(state_dir: Path, host: LabHost, root: Path) -> None:
    """Write the host's ed25519 key, read straight from its root, into ``state_dir/known_hosts``."""
    host_key = (root / "etc/ssh/ssh_host_ed25519_key.pub").read_text()
    path = state_dir / "known_hosts"
    old = path.read_text() if path.exists() else ""
    line = known_hosts_line(host.address, host.ssh_port, host_key)
    new = replace_known_host(old, host.address, host.ssh_port, line)
    if new != old:
        atomic_write(path, new.encode(), 0o644)


# --- the base and each host's root ---------------------------------------------------------------


def base_name() -> str:
    """``base-bookworm-1a2b3c4d``: a change to the package list builds a new base, never
    reusing a stale one."""
    digest = hashlib.sha256(" ".join(debootstrap_command(Path("/"))).encode()).hexdigest()
    return f"base-{SUITE}-{digest[:8]}"


def ensure_base(progress: Progress) -> Path:
    """The cached Debian base root filesystem, built once with debootstrap (about a minute)."""
    base = cache_dir() / base_name()
    if base.is_dir():
        return base
    with _locked(cache_dir() / "base.lock"):
        if not base.is_dir():  # another process may have built it while we waited
            progress(f"building the Debian 12 base in {base} (about a minute, once)")
            build_base(base)
    return base


def build_base(base: Path) -> None:
    """debootstrap into a temporary directory and rename it: an interrupted build leaves no base."""
    for leftover in base.parent.glob(f"{base.name}.partial-*"):
        shutil.rmtree(leftover)
    partial = Path(tempfile.mkdtemp(prefix=f"{base.name}.partial-", dir=base.parent))
    log = base.parent / f"{base.name}.log"
    with open(log, "wb") as out:
        result = subprocess.run(debootstrap_command(partial), stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise UserError(f"debootstrap failed, see {log}: check that deb.debian.org is reachable")
    for deb in (partial / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    partial.chmod(0o755)  # mkdtemp made it 0700: users in the container could not reach /
    partial.rename(base)


def debootstrap_command(target: Path) -> list[str]:
    """The debootstrap command that builds a minimal Debian 12 with systemd and OpenSSH."""
    include = f"--include={BASE_PACKAGES}"
    return ["debootstrap", "--variant=minbase", include, SUITE, str(target)]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def create_root(host: LabHost, paths: HostPaths, base: Path) -> None:
    """Copy the base for one host and give the copy its own identity, then rename it in place."""
    paths.dir.mkdir(parents=True, exist_ok=True)
    partial = paths.dir / "root.partial"
    if partial.exists():
        shutil.rmtree(partial)  # an interrupted copy; it never booted
    _run(["cp", "-a", "--reflink=auto", str(base), str(partial)])
    give_identity(partial, host.name)
    partial.rename(paths.root)


def give_identity(root: Path, name: str) -> None:
    """Hostname, machine id and SSH host keys of this host alone: the copied base shares them."""
    (root / "etc/hostname").write_text(f"{name}\n")
    (root / "etc/hosts").write_text(hosts_file(name))
    (root / "etc/machine-id").write_text(f"{uuid.uuid4().hex}\n")
    (root / "etc/default/locale").write_text("LANG=C.UTF-8\n")  # pam_env warns on every login
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    _run(["chroot", str(root), "ssh-keygen", "-A"])
    for unit in MASKED_UNITS:
        mask = root / "etc/systemd/system" / unit
        mask.unlink(missing_ok=True)
        mask.symlink_to("/dev/null")


def hosts_file(name: str) -> str:
    """/etc/hosts that resolves the host's own name (else sudo warns on every call)."""
    return f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def remove_root(paths: HostPaths) -> None:
    """Stop the host and delete its root filesystem and settings."""
    stop(paths)
    if paths.root.exists():
        refuse_mounts_under(paths.root)
        shutil.rmtree(paths.root)
    paths.settings.unlink(missing_ok=True)


def refuse_mounts_under(root: Path) -> None:
    """Never delete through a mount point (a bind mount left behind would lose its source)."""
    prefix = f"{root}/"
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount_point = line.split()[4].encode().decode("unicode_escape")
        if mount_point == str(root) or mount_point.startswith(prefix):
            raise UserError(f"{mount_point} is mounted: unmount it, then run again")


# --- configuration written into a root before boot ----------------------------------------------


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
        _run(["chroot", str(root), *useradd, user])


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


# --- boot and stop -----------------------------------------------------------------------------


def nspawn_command(host: LabHost, paths: HostPaths) -> list[str]:
    """systemd-nspawn booting the host's root, sharing this machine's network namespace."""
    return [
        "systemd-nspawn",
        "--boot",
        "--register=no",
        "--keep-unit",
        "--console=read-only",
        f"--directory={paths.root}",
        f"--machine={host.name}",
        f"--bind={paths.apt_archives}:/var/cache/apt/archives",
    ]


# As systemd-nspawn@.service's RestartForceExitStatus=133: a reboot inside the container makes
# nspawn exit with 133, and the host boots again, as a VPS does after `systemctl reboot`.
SUPERVISOR_NAME = "mtls-lab-host"
SUPERVISOR = 'while :; do "$@"; rc=$?; [ "$rc" -eq 133 ] || exit "$rc"; done'


def supervised(command: list[str]) -> list[str]:
    """``command`` run again whenever it exits with 133 (a reboot), else its exit ends it."""
    return ["sh", "-c", SUPERVISOR, SUPERVISOR_NAME, *command]


def boot(host: LabHost, paths: HostPaths) -> int:
    """Start the container in its own session and wait for its sshd; return the nspawn pid."""
    require_port_free(host)
    paths.apt_archives.mkdir(parents=True, exist_ok=True)
    with open(paths.boot_log, "wb") as log:
        process = subprocess.Popen(
            supervised(nspawn_command(host, paths)),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # setsid: a Ctrl-C in the terminal does not reach it
        )
    _SPAWNED[process.pid] = process
    atomic_write(paths.pid_file, f"{process.pid}\n".encode(), 0o644)
    wait_for_ssh(host, paths, process.pid)
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


# --- pid files and /proc -----------------------------------------------------------------------


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


def parse_stat(text: str) -> tuple[str, int]:
    """``(state, ppid)`` from a /proc/<pid>/stat line (the command name may hold spaces)."""
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _read_stat(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None


def _run(argv: list[str]) -> None:
    """Run a command; a failure becomes a one-line UserError with its last line of output."""
    try:
        subprocess.run(argv, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as error:
        output = (error.stderr or error.stdout or "").strip().splitlines()
        reason = output[-1] if output else f"exit status {error.returncode}"
        raise UserError(f"`{' '.join(argv)}` failed: {reason}") from None


def hosts_from_inventory(hosts) -> list[LabHost]:
    """``LabHost``s for inventory hosts; a host without ``lab: true`` is refused, so a
    production inventory can never have its hosts treated as throwaway containers."""
    not_lab = [h.name for h in hosts if not h.vars.get("lab")]
    if not_lab:
        raise UserError(
            f"{', '.join(not_lab)}: not a lab host (set `lab: true` in its inventory vars "
            "to let `inv lab.*` build it on this machine)"
        )
    return [_from_vars(h.name, h.vars) for h in hosts]


def _from_vars(name: str, v: dict) -> LabHost:
    return LabHost(
        name=name,
        address=str(v.get("ansible_host", "127.0.0.1")),
        ssh_port=int(v.get("ansible_port", 22)),
        user=str(v.get("ansible_user", "root")),
        sudo=bool(v.get("ansible_become", False)),
    )
