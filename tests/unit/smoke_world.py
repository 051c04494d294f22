"""One API host, one consumer and curl's answers, for the smoke test's unit tests (no host)."""

import datetime as dt
import json

from cryptography.hazmat.primitives import serialization

from mtls_deploy.pki import profile as pki
from mtls_deploy.smoke import ApiTarget, Client, ConsumerHost

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
API = ApiTarget(
    "api1", "api1.lab.test", 8441, "127.0.0.1", "127.0.0.1", "on", "/etc/nginx/mtls/crl.pem"
)
BOB = ConsumerHost("bob", ".mtls/api", (Client("bob", "valid", "0A1B"),))

WHOAMI = json.dumps({"verified": "SUCCESS", "subject": {"CN": "bob"}, "serial": "0a1b"})
REVOKED = json.dumps({"error": "client certificate rejected", "reason": "certificate revoked"})
NO_CERT = json.dumps(
    {"error": "client certificate required", "reason": "no client certificate was sent"}
)
TLS_ALERT = "curl: (35) OpenSSL/3.0.20: error:0A00042E:SSL routines::tlsv1 alert protocol version"


def by_row(cases):
    """The cases as (number, from, to, expected) rows."""
    return [(c.number, c.source, c.target, c.expected) for c in cases]


def make_client_ca():
    """(certificate, key) of a throwaway client CA, valid from 30 days before NOW."""
    key = pki.generate_key("ec")
    return pki.make_ca(key, "Test client CA", NOW - dt.timedelta(days=30)), key


def crl_pem(ca, days=180, now=NOW, revoked=()) -> bytes:
    """The CA's CRL (number 1) as PEM."""
    crl = pki.sign_crl(*ca, revoked, 1, now, days)
    return crl.public_bytes(serialization.Encoding.PEM)
