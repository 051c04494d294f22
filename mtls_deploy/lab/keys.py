"""The lab's own SSH key pair, and the known_hosts file it keeps for its hosts (``.lab/``)."""

from __future__ import annotations

import fcntl
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..files import atomic_write
from ..host_keys import known_hosts_line, replace_known_host
from .spec import LabHost

KEY_COMMENT = "mtls-deploy-lab"


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


def record_host_key(state_dir: Path, host: LabHost, root: Path) -> None:
    """Write the host's ed25519 key, read straight from its root, into ``state_dir/known_hosts``.
    Read, change and write hold a lock: two processes booting lab hosts at once (the test
    suite's workers) must not each write back the file without the other's line."""
    host_key = (root / "etc/ssh/ssh_host_ed25519_key.pub").read_text()
    path = state_dir / "known_hosts"
    line = known_hosts_line(host.address, host.ssh_port, host_key)
    with open(state_dir / "known_hosts.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = path.read_text() if path.exists() else ""
        new = replace_known_host(old, host.address, host.ssh_port, line)
        if new != old:
            atomic_write(path, new.encode(), 0o644)
