"""Connecting without a host (mtls_deploy/connection.py): what a refused or failed connection says."""

import base64
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from mtls_deploy import connection
from mtls_deploy.connection import ConnectError, SshTarget

NAME = "[127.0.0.1]:2201"


def new_key() -> paramiko.PKey:
    """A fresh ed25519 public key, as paramiko reads it from a server or a known_hosts line."""
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    kind, data = line.decode().split()
    return paramiko.PKey.from_type_string(kind, base64.b64decode(data))


def line(names: str, key) -> str:
    return f"{names} {key.get_name()} {key.get_base64()}"


def target(known_hosts: Path, host="api1", port=2201) -> SshTarget:
    return SshTarget(host, "127.0.0.1", port, "deploy", None, known_hosts, True, 1)


def hashed(name: str) -> str:
    return paramiko.HostKeys.hash_host(name)


# --- connecting: refused before any connection, one line each ---------------------------------


def test_connecting_refuses_that_line_too_instead_of_a_traceback(tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text(f"@revoked {NAME} ssh-ed25519 {new_key().get_base64()}\n")
    with pytest.raises(
        ConnectError, match=r"^api1: line 1 of .* \(markers such as @revoked are not supported\)$"
    ):
        connection.Remote(target(kh, port=1)).open()  # refused before any connection


def test_no_key_file_means_agent_and_default_keys_not_a_traceback(tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    with pytest.raises(
        ConnectError, match=r"^api1: cannot reach deploy@127.0.0.1:1: connection refused"
    ):
        connection.Remote(target(kh, port=1)).open()


def test_a_changed_key_at_connect_time_names_the_right_fix(tmp_path):
    error = paramiko.BadHostKeyException("127.0.0.1", new_key(), new_key())
    message = connection.describe_connect_error(target(tmp_path / "kh"), error)
    assert message.startswith(f"api1: HOST KEY CHANGED for {NAME}: offered ssh-ed25519 SHA256:")
    assert message.endswith(
        "if the host was rebuilt, check the new fingerprint out of band, then run "
        "`inv hosts.trust --host api1 --replace`"
    )
