"""Host keys and known_hosts lines for tests that need no host (test_connection, test_host_keys)."""

import base64
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from mtls_deploy.connection import SshTarget

NAME = "[127.0.0.1]:2201"


def new_key() -> paramiko.PKey:
    """A fresh ed25519 public key, as paramiko reads it from a server or a known_hosts line."""
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    kind, data = line.decode().split()
    return paramiko.PKey.from_type_string(kind, base64.b64decode(data))


def line(names: str, key) -> str:
    """A known_hosts line for ``names``."""
    return f"{names} {key.get_name()} {key.get_base64()}"


def target(known_hosts: Path, host="api1", port=2201) -> SshTarget:
    """The lab's api1 as a target checked against ``known_hosts``."""
    return SshTarget(host, "127.0.0.1", port, "deploy", None, known_hosts, True, 1)


def hashed(name: str) -> str:
    """``name`` hashed as OpenSSH's HashKnownHosts writes it."""
    return paramiko.HostKeys.hash_host(name)
