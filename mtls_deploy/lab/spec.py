"""A lab host as the lab sees it (``LabHost``), where it lives on this machine, and the checks
made before anything is touched: valid names and addresses, root, the tools."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInput, UserError

INSTALL_COMMAND = "apt-get install -y systemd-container debootstrap"
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
USER_PATTERN = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
Progress = Callable[[str], None]
# The Debian releases a lab host can run (``lab_release``): codename -> version.
RELEASES = {"bookworm": "12", "trixie": "13"}


@dataclass(frozen=True)
class LabHost:
    """One lab host, from the inventory: ``ansible_host``, ``ansible_port``, ``ansible_user``,
    ``ansible_become``, and ``lab_release`` (the Debian it runs: bookworm or trixie)."""

    name: str
    address: str
    ssh_port: int
    user: str
    sudo: bool
    release: str = "bookworm"


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
    """Where one lab host lives on this machine. ``root`` is where the host's root filesystem
    is mounted: an overlay of the cached base (``lower`` names it) with the host's own changes
    in ``upper`` (``work``: overlayfs's scratch space); a host made before overlays has a
    full copy there instead."""

    dir: Path
    root: Path
    upper: Path
    work: Path
    lower: Path
    pid_file: Path
    boot_log: Path
    settings: Path
    apt_archives: Path


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
        upper=directory / "upper",
        work=directory / "work",
        lower=directory / "lower",  # a file: the path of the base the overlay sits on
        pid_file=directory / "nspawn.pid",
        boot_log=directory / "boot.log",
        settings=directory / "host.json",
        # Per host, so that two hosts' apt runs never fight over one archive lock.
        apt_archives=cache_dir() / "apt-archives" / name,
    )


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
    if host.release not in RELEASES:
        known = ", ".join(f"{name} (Debian {version})" for name, version in RELEASES.items())
        raise BadInput(f"{host.name}: lab_release {host.release!r}: use one of {known}")


def _is_loopback_v4(address: str) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return parsed.version == 4 and parsed.is_loopback


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
        release=str(v.get("lab_release", "bookworm")),
    )
