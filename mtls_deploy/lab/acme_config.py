"""The lab's ACME world, pure parts: where Pebble and its DNS listen, their command lines and
Pebble's config, the certificate of Pebble's own HTTPS listener, the DNS records the lab's
ACME hosts need, and a DNS query in the wire format (to ask the lab's DNS what it answers).

Everything listens on 127.0.0.1, on ports no lab host uses (SSH 22xx, HTTPS 84xx):

=========================  ==================  ==========================================
Pebble's ACME directory    127.0.0.1:14000     ``https://127.0.0.1:14000/dir``
Pebble's management        127.0.0.1:15000     ``/roots/0``, ``/intermediates/0`` (HTTPS)
pebble-challtestsrv DNS    127.0.0.1:8053      UDP and TCP: Pebble's only resolver
challtestsrv management    127.0.0.1:8055      ``/add-a``, ``/clear-a`` (plain HTTP)
=========================  ==================  ==========================================

Pebble validates HTTP-01 on port 80 of the address a name resolves to, so each lab host that
uses ACME listens on a loopback address of its own (127.0.0.2 and up).
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import BadInput
from ..pki.profile import key_usage

LOOPBACK = "127.0.0.1"
ACME_PORT = 14000
MANAGEMENT_PORT = 15000
DNS_PORT = 8053
DNS_MANAGEMENT_PORT = 8055
HTTP01_PORT = 80  # where Pebble checks HTTP-01 challenges: an ACME host's own address, port 80
TLS_ALPN_PORT = 5001  # Pebble needs one in its config; the lab offers no TLS-ALPN-01
DIRECTORY_URL = f"https://{LOOPBACK}:{ACME_PORT}/dir"
MANAGEMENT_URL = f"https://{LOOPBACK}:{MANAGEMENT_PORT}"
DNS_MANAGEMENT_URL = f"http://{LOOPBACK}:{DNS_MANAGEMENT_PORT}"
TCP_PORTS = (ACME_PORT, MANAGEMENT_PORT, DNS_PORT, DNS_MANAGEMENT_PORT)
PEBBLE_ENV = {
    "PEBBLE_VA_NOSLEEP": "1",  # validate at once, not after up to 15 s of random sleep
    "PEBBLE_WFE_NONCEREJECT": "0",  # never reject a good nonce (certbot would retry, slowly)
    # Every order validates its challenges: with Pebble's default 50 % reuse of valid
    # authorizations, an order whose challenge port is closed could pass at random.
    "PEBBLE_AUTHZREUSE": "0",
}
DNS_LABEL = "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
LISTENER_CA_DAYS = 3650
LISTENER_DAYS = 365
LISTENER_RENEW_DAYS = 30  # a listener certificate with less left is made again


@dataclass(frozen=True)
class AcmePaths:
    """Where the lab's ACME world keeps its files: ``.lab/acme/`` of the project."""

    dir: Path

    def __getattr__(self, name: str) -> Path:
        try:
            return self.dir / FILES[name]
        except KeyError:
            raise AttributeError(name) from None


FILES = {
    "listener_ca": "listener-ca.pem",  # the CA that signed Pebble's listener: trust this
    "listener_ca_key": "listener-ca.key",
    "listener_cert": "listener.pem",
    "listener_key": "listener.key",
    "config": "pebble.json",
    "pebble_pid": "pebble.pid",
    "pebble_log": "pebble.log",
    "pebble_settings": "pebble.settings.json",
    "dns_pid": "challtestsrv.pid",
    "dns_log": "challtestsrv.log",
    "dns_settings": "challtestsrv.settings.json",
    "records": "records.json",  # name -> address, added again when the DNS restarts
    "trusted": "trusted.json",  # lab hosts whose trust store has Pebble's root
    "tests_started": "tests-started.pid",  # the Pebble a test session started
    "sessions": "sessions",  # a lease per test session using Pebble: <pid>-<start time>
}


# --- command lines and config -----------------------------------------------------------------


def pebble_config(paths: AcmePaths) -> str:
    """Pebble's JSON config: loopback listeners, the lab's listener certificate, HTTP-01 on 80."""
    config = {
        "pebble": {
            "listenAddress": f"{LOOPBACK}:{ACME_PORT}",
            "managementListenAddress": f"{LOOPBACK}:{MANAGEMENT_PORT}",
            "certificate": str(paths.listener_cert),
            "privateKey": str(paths.listener_key),
            "httpPort": HTTP01_PORT,
            "tlsPort": TLS_ALPN_PORT,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    return json.dumps(config, indent=2) + "\n"


def pebble_argv(program: str, paths: AcmePaths) -> list[str]:
    """``pebble -config .lab/acme/pebble.json -dnsserver 127.0.0.1:8053``."""
    return [program, "-config", str(paths.config), "-dnsserver", f"{LOOPBACK}:{DNS_PORT}"]


def dns_argv(program: str) -> list[str]:
    """pebble-challtestsrv as a DNS server only: every challenge listener off, and no default
    answer, so a name nobody registered stays unknown (as on the Internet)."""
    return [
        program,
        "-defaultIPv4", "",
        "-defaultIPv6", "",
        "-dns01", f"{LOOPBACK}:{DNS_PORT}",
        "-http01", "",
        "-https01", "",
        "-tlsalpn01", "",
        "-management", f"{LOOPBACK}:{DNS_MANAGEMENT_PORT}",
    ]  # fmt: skip


# --- the listener certificate -----------------------------------------------------------------


def make_listener_ca(now: datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A small CA of the lab's own, to sign Pebble's HTTPS listener (Debian ships none)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mtls-deploy lab ACME listener CA")])
    builder = _builder(name, name, key.public_key(), now, LISTENER_CA_DAYS)
    builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    builder = builder.add_extension(key_usage(cert_sign=True), critical=True)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
    )
    return key, builder.sign(key, hashes.SHA256())


def make_listener_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, now: datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Pebble's listener certificate, for 127.0.0.1 and localhost, signed by the listener CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)])
    names = [x509.IPAddress(ipaddress.ip_address(LOOPBACK)), x509.DNSName("localhost")]
    builder = _builder(subject, ca_cert.subject, key.public_key(), now, LISTENER_DAYS)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    builder = builder.add_extension(key_usage(cert_sign=False), critical=True)
    builder = builder.add_extension(
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
    )
    builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
    )
    return key, builder.sign(ca_key, hashes.SHA256())


def needs_new_listener_cert(cert: x509.Certificate, ca_cert: x509.Certificate, now) -> bool:
    """True when the listener certificate is near its end, or not signed by this CA."""
    if cert.issuer != ca_cert.subject:
        return True
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (InvalidSignature, ValueError, TypeError):
        return True
    return cert.not_valid_after_utc - now < timedelta(days=LISTENER_RENEW_DAYS)


def _builder(subject, issuer, public_key, now: datetime, days: int) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def key_pem(key) -> bytes:
    """A private key as unencrypted PKCS#8 PEM (Pebble reads it; the file is 0600)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    """A certificate as PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def utc_now() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


# --- the DNS records of the lab's ACME hosts --------------------------------------------------


def acme_records(hosts) -> dict[str, str]:
    """``{name: address}`` for every inventory host with ``server_cert: acme``: its
    ``server_name`` and ``server_aliases``, each to the host's own ``https_listen`` address.

    Example: api9 (server_name api9.lab.test, https_listen 127.0.0.9) -> ``{"api9.lab.test":
    "127.0.0.9"}``. A shared or non-loopback address, or a name on two hosts, is refused.
    """
    records: dict[str, str] = {}
    owners: dict[str, str] = {}
    for host in hosts:
        if host.vars.get("server_cert") != "acme":
            continue
        address = acme_address(host.name, host.vars.get("https_listen"))
        _refuse_shared(owners, address, host.name, "address")
        for name in host_names(host.name, host.vars):
            _refuse_shared(owners, name, host.name, "name")
            records[name] = address
    return records


def acme_address(host: str, listen) -> str:
    """The host's own loopback address (127.0.0.2 and up), where Pebble checks port 80."""
    try:
        address = ipaddress.ip_address(str(listen))
    except ValueError:
        address = None
    if (
        address is None
        or address.version != 4
        or not address.is_loopback
        or str(address) == LOOPBACK
    ):
        raise BadInput(
            f"{host}: https_listen {listen!r}: a lab host with server_cert acme needs a loopback "
            "address of its own (127.0.0.2 and up), since Pebble checks port 80 of each name's address"
        )
    return str(address)


def host_names(host: str, variables: dict) -> list[str]:
    """``server_name`` and then ``server_aliases``, lowercased; a missing server_name is refused."""
    name = variables.get("server_name")
    if not name:
        raise BadInput(f"{host}: server_cert acme needs a server_name: set it in the inventory")
    return [str(n).lower().rstrip(".") for n in [name, *(variables.get("server_aliases") or [])]]


def _refuse_shared(owners: dict[str, str], key: str, host: str, label: str) -> None:
    if owners.setdefault(key, host) != host:
        raise BadInput(
            f"{host} and {owners[key]} share the {label} {key}: give each ACME lab host its own"
        )


# --- checked names and addresses ---------------------------------------------------------------


def checked_dns_name(name: str) -> str:
    """A DNS name in lowercase without the final dot; anything else is refused."""
    clean = str(name).lower().rstrip(".")
    if len(clean) > 253 or not all(re.fullmatch(DNS_LABEL, p) for p in clean.split(".")):
        raise BadInput(f"{name!r} is not a DNS name: use letters, digits, '-' and dots")
    return clean


def checked_loopback(address: str) -> str:
    """An IPv4 loopback address (127.x), as the lab's hosts use; anything else is refused."""
    try:
        parsed = ipaddress.ip_address(str(address))
    except ValueError:
        parsed = None
    if parsed is None or parsed.version != 4 or not parsed.is_loopback:
        raise BadInput(f"{address!r} is not a 127.x address: lab hosts listen on loopback only")
    return str(parsed)


# --- a DNS query, in the wire format (RFC 1035) -----------------------------------------------


def a_query(name: str, query_id: int | None = None) -> bytes:
    """A recursive query for the A records of ``name``."""
    query_id = secrets.randbelow(1 << 16) if query_id is None else query_id
    header = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0)
    labels = b"".join(bytes([len(p)]) + p.encode("ascii") for p in name.rstrip(".").split("."))
    return header + labels + b"\0" + struct.pack(">HH", 1, 1)


def a_answers(response: bytes, query_id: int) -> list[str]:
    """The IPv4 addresses in a DNS response's answer section (none for an unknown name)."""
    ident, _, questions, answers, _, _ = struct.unpack(">HHHHHH", response[:12])
    if ident != query_id:
        raise ValueError(f"DNS answer for query {ident}, not {query_id}")
    offset = 12
    for _ in range(questions):
        offset = _skip_name(response, offset) + 4
    found = []
    for _ in range(answers):
        offset = _skip_name(response, offset)
        kind, _, _, length = struct.unpack(">HHIH", response[offset : offset + 10])
        data = response[offset + 10 : offset + 10 + length]
        if kind == 1 and length == 4:
            found.append(str(ipaddress.IPv4Address(data)))
        offset += 10 + length
    return found


def _skip_name(message: bytes, offset: int) -> int:
    while message[offset] != 0:
        if message[offset] >= 0xC0:  # a compression pointer ends the name
            return offset + 2
        offset += message[offset] + 1
    return offset + 1
