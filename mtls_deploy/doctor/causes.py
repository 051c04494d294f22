"""OpenSSL's verify results, as nginx reports them, mapped to a cause and the ONE command that
fixes it. Pure.

nginx puts ``$ssl_client_verify`` in the access log: ``SUCCESS``, ``NONE`` (no certificate) or
``FAILED:<OpenSSL's text>``; at ``info`` level its error log says ``client SSL certificate verify
error: (23:certificate revoked)`` and ``client sent no required SSL certificate``.
"""

import re
from dataclasses import dataclass

SMOKE_PREFIX = "smoke:"  # smoke:revoked, smoke:expired (mtls_deploy.pki.profile)
NONE_CODE = -1  # not OpenSSL's: no certificate was sent
ACCEPTED = 0


@dataclass(frozen=True)
class Cause:
    """One verify result: OpenSSL's code and words, what it means here, and the fix."""

    code: int
    words: tuple[str, ...]  # OpenSSL's texts (lower case) for the code, across versions
    cause: str
    fix: str  # a command; {name} is the client's name, {host} the API host

    def fix_for(self, name: str, host: str = "api1") -> str:
        """The fix with the client and host filled in; none for the smoke test's own
        certificates, which exist to be refused (and whose names no command takes)."""
        if name.startswith(SMOKE_PREFIX):
            return "none: the smoke test's own certificate is meant to be refused"
        return self.fix.format(name=name, host=host)


REISSUE = "inv issue-client --name {name} --reissue"
CRL_PUSH = "inv pki.crl --push"
WRONG_CA = ("the certificate was not signed by this API's client CA (a bundle from another PKI, "
            "or an old CA): give the client a certificate of this PKI")  # fmt: skip

CAUSES = (
    Cause(2, ("unable to get issuer certificate",), WRONG_CA, REISSUE),
    Cause(
        3,
        ("unable to get certificate crl",),
        "the API host has no CRL for the client's issuer (nginx needs a CRL for every CA it "
        "trusts)",
        CRL_PUSH,
    ),
    Cause(
        7,
        ("certificate signature failure",),
        "the certificate's signature does not verify: it was altered or forged",
        REISSUE,
    ),
    Cause(
        8,
        ("crl signature failure",),
        "the CRL on the API host does not verify against the client CA",
        CRL_PUSH,
    ),
    Cause(
        9,
        ("certificate is not yet valid",),
        "the certificate is not valid yet: the API host's clock is behind the issuing "
        "machine's (or it was issued for the future)",
        "inv hosts.run --host {host} --sudo --command 'timedatectl set-ntp true'",
    ),
    Cause(
        10,
        ("certificate has expired",),
        "the client's certificate has expired",
        "inv renew-client --name {name}",
    ),
    Cause(
        11,
        ("crl is not yet valid",),
        "the API host's CRL is not valid yet: its clock is behind the control machine's",
        CRL_PUSH,
    ),
    Cause(
        12,
        ("crl has expired",),
        "the CRL on the API host has expired: nginx refuses every client until a fresh one "
        "is pushed",
        CRL_PUSH,
    ),
    Cause(
        18,
        ("self-signed certificate", "self signed certificate"),
        "the client sent a self-signed certificate, not one of this PKI",
        REISSUE,
    ),
    Cause(
        19,
        (
            "self-signed certificate in certificate chain",
            "self signed certificate in certificate chain",
        ),
        "the client's chain ends in a CA this API does not trust",
        REISSUE,
    ),
    Cause(20, ("unable to get local issuer certificate",), WRONG_CA, REISSUE),
    Cause(21, ("unable to verify the first certificate",), WRONG_CA, REISSUE),
    Cause(23, ("certificate revoked",), "the client's certificate was revoked", REISSUE),
    Cause(
        26,
        ("unsupported certificate purpose",),
        "the certificate is not for client authentication (no extendedKeyUsage clientAuth: "
        "a server certificate?)",
        REISSUE,
    ),
    Cause(
        NONE_CODE,
        ("no required ssl certificate was sent", "no required ssl certificate"),
        "no client certificate was sent: the client called without --cert/--key (or its "
        "bundle is missing)",
        "inv issue-client --name {name}",
    ),
)
BY_CODE = {c.code: c for c in CAUSES}
UNKNOWN = Cause(99, (), "the certificate was refused for a reason not in this list", REISSUE)
ERROR_LOG_CODE = re.compile(r"verify error:\s*\((\d+):([^)]*)\)")


def cause_for(verify: str) -> Cause | None:
    """The cause of an access-log ``verify=`` value; None for ``SUCCESS``.

    Example: ``cause_for("FAILED:certificate revoked").code == 23``
    """
    text = verify.strip().strip('"').lower()
    if text == "success":
        return None
    if text == "none":
        return BY_CODE[NONE_CODE]
    text = text.removeprefix("failed:").strip()
    # the longest matching words win: "self-signed certificate in certificate chain" is 19, not 18
    matches = [(len(w), c) for c in CAUSES for w in c.words if text == w or w in text]
    return max(matches, key=lambda m: m[0])[1] if matches else UNKNOWN


def cause_for_code(code: int) -> Cause:
    """The cause of an OpenSSL verify code (as the error log and ``openssl verify`` give it)."""
    return BY_CODE.get(code, UNKNOWN)


def error_log_cause(line: str) -> Cause | None:
    """The cause in an nginx error-log line at info level, or None for other lines."""
    found = ERROR_LOG_CODE.search(line)
    if found:
        return cause_for_code(int(found[1]))
    if "no required ssl certificate" in line.lower():
        return BY_CODE[NONE_CODE]
    return None
