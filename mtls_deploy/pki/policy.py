"""When a stored certificate must be issued again: the server-certificate staleness policy, and
the message a client's unchanged certificate gets."""

import datetime as dt

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from . import profile
from .index import row_status
from .settings import third_left


def server_staleness(cert, key_pem: bytes, dns, ips, now, ca_cert) -> str:
    """Why a stored server certificate must be reissued, or ``ok: ...`` if it is fine.

    Reissued when its names differ from (``dns``, ``ips``), another CA signed it, the key does
    not match, or less than a third of its life is left (renewed at two thirds, as ACME clients
    do: a 365-day certificate after about 243 days, a 3-minute one after 2 minutes).
    """
    have_dns, have_ips = profile.san_names(cert)
    want_ips = {str(ip) for ip in ips}
    if (have_dns, have_ips) != (set(dns), want_ips):
        added = sorted((set(dns) | want_ips) - (have_dns | have_ips))
        removed = sorted((have_dns | have_ips) - (set(dns) | want_ips))
        return f"names changed (added {added or 'none'}, removed {removed or 'none'})"
    if cert.issuer != ca_cert.subject or not signed_by(cert, ca_cert):
        return "signed by another server CA"
    if serialization.load_pem_private_key(key_pem, None).public_key() != cert.public_key():
        return "key and certificate do not match"
    left = cert.not_valid_after_utc - now
    if left <= dt.timedelta(0):
        return f"expired {profile.human_duration(-left)} ago"
    if third_left(cert.not_valid_before_utc, cert.not_valid_after_utc, now):
        return f"{profile.human_duration(left)} left (under a third of its life)"
    return f"ok: valid until {cert.not_valid_after_utc:%Y-%m-%d}, names match"


def signed_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """Whether ``ca_cert``'s key signed ``cert``."""
    try:
        cert.verify_directly_issued_by(ca_cert)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def unchanged_reason(row, now, warn_before: dt.timedelta | None = None) -> str:
    """Why a client keeps its certificate, with a hint to renew it when it is expiring (under
    ``warn_before`` left)."""
    not_after = dt.datetime.fromisoformat(row["not_after"])
    reason = f"unchanged: valid certificate (serial {row['serial']}) until {not_after:%Y-%m-%d}"
    if row_status(row, now, warn_before) == "expiring":
        left = profile.human_duration(max(not_after - now, dt.timedelta(0)))
        reason += f"; expires in {left}: run `inv renew-client --name {row['name']}`"
    return reason + " (--reissue to replace it)"
