"""The test certificates of cases 3-5: the PKI's own revoked and expired ones, and a foreign
one made here, in memory, by a CA made for it."""

import datetime as dt

from cryptography.hazmat.primitives import serialization

from ..pki import profile as pki
from ..pki.keys import private_key_pem


def certificate_files(store, now: dt.datetime) -> tuple[dict[str, bytes], bool]:
    """Files for cases 3-5 (``{"revoked.crt": pem, "revoked.key": pem, ...}``), and whether the
    PKI's own revoked certificate was made just now (the hosts' CRL then lags behind).

    Nothing here signs with this PKI's CAs: the store keeps, records and (once) signs its own.
    """
    own, crl_changed = store.smoke_certificates(now=now)
    files = foreign_certificate(now)
    for label, stored in own.items():
        files[f"{label}.crt"], files[f"{label}.key"] = stored.cert_pem, stored.key_pem
    return files, crl_changed


def foreign_certificate(now: dt.datetime) -> dict[str, bytes]:
    """Case 4: a client certificate from a CA made just now, in memory, for it. Pure."""
    foreign_key, key = pki.generate_key("ec"), pki.generate_key("ec")
    foreign_ca = pki.make_ca(foreign_key, "mtls-deploy smoke test foreign CA", now, 1)
    cert = pki.issue_client_cert(
        foreign_ca, foreign_key, key.public_key(), "smoke-foreign", pki.new_serial(), now, 1
    )
    return {
        "foreign.crt": cert.public_bytes(serialization.Encoding.PEM),
        "foreign.key": private_key_pem(key),
    }
