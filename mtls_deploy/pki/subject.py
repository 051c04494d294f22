"""Certificate subjects, pure: the CN, and optionally O and OU, as an ``x509.Name``.

An OU (``inv issue-client --ou ops``) lets ``mtls_routes`` allow a group of clients
(``allow: {ou: [ops]}``): nginx reads it from the RFC 2253 subject. Its characters are a client
name's, capitals allowed, so it needs no escape there and cannot hide DN syntax.
"""

import re

from cryptography import x509
from cryptography.x509.oid import NameOID

from ..errors import BadInput

OU = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
OU_RULE = "1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit"
SHOWN = 40  # characters of a bad value quoted in an error


def validate_ou(ou) -> str | None:
    """Return ``ou`` if it is ``None`` or a safe organisational unit, else raise ``BadInput``.

    Example: ``validate_ou("ops") == "ops"``; ``validate_ou("ops,CN=x")`` raises.
    """
    if ou is not None and (not isinstance(ou, str) or not OU.fullmatch(ou)):
        text = repr(ou) if len(repr(ou)) <= SHOWN else repr(ou)[: SHOWN - 3] + "..."
        raise BadInput(f"invalid organisational unit {text}: use {OU_RULE}")
    return ou


def x509_name(common_name: str, org: str | None = None, ou: str | None = None) -> x509.Name:
    """``CN=<common_name>``, then ``O=<org>`` and ``OU=<ou>`` when given (in that order, so a
    subject without an OU is what it always was)."""
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if org:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    if ou:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, validate_ou(ou)))
    return x509.Name(attributes)


def ou_of(subject: x509.Name) -> str | None:
    """The (first) OU of ``subject``, or ``None``."""
    values = subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    return str(values[0].value) if values else None


def ou_in(rfc4514: str) -> str | None:
    """The OU of a subject as the index keeps it (RFC 4514 text), or ``None``; a subject that
    does not parse has none."""
    try:
        return ou_of(x509.Name.from_rfc4514_string(rfc4514))
    except ValueError:
        return None
