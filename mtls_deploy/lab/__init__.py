"""The lab: throwaway Debian 12 or 13 "VPSes" on this machine, booted as systemd-nspawn containers.

Each lab host boots real systemd and OpenSSH from an overlay of a cached Debian base (one per
release, ``lab_release: trixie`` in the host's inventory vars for Debian 13). The
containers share this machine's network namespace, so each host's sshd listens on its own
loopback address and port. The lab makes its own SSH key pair and known_hosts in the state
directory (``.lab/``): after ``up``, plain ``ssh`` and the inventory work without edits::

    hosts = [LabHost("api1", "127.0.0.1", 2201, "deploy", sudo=True)]
    up(hosts); status(hosts); reset(hosts); down(hosts)

Needs root, ``systemd-nspawn`` and ``debootstrap``. The base lives in ``/var/cache/mtls-deploy``
(``MTLS_DEPLOY_LAB_CACHE``), the hosts in ``/var/lib/mtls-deploy/lab`` (``MTLS_DEPLOY_LAB_ROOT``).

Modules: ``spec`` (a host, its places, the checks), ``keys`` (the lab's key pair and known_hosts),
``base`` (the Debian bases), ``root`` (each host's overlay and its configuration), ``limits``
(the kernel's inotify limits), ``containers``
(boot and stop), ``procfs`` (pid files and /proc), ``verbs`` (up, down, status, reset);
``acme`` and ``acme_config`` (the lab's ACME CA: Pebble and its DNS on loopback, ``inv lab.up
--with-acme``), ``services`` (long-lived processes the lab owns besides its containers).
"""

from .containers import nspawn_command, ssh_banner, stop, supervised
from .procfs import child_pids, nspawn_of_supervisor, parse_pid, read_cmdline, running_pid
from .root import remove_root
from .spec import HostPaths, HostStatus, LabHost, hosts_from_inventory, paths_for
from .verbs import down, reset, status, up

__all__ = [
    "HostPaths",
    "HostStatus",
    "LabHost",
    "child_pids",
    "down",
    "hosts_from_inventory",
    "nspawn_command",
    "nspawn_of_supervisor",
    "parse_pid",
    "paths_for",
    "read_cmdline",
    "remove_root",
    "reset",
    "running_pid",
    "ssh_banner",
    "status",
    "stop",
    "supervised",
    "up",
]
