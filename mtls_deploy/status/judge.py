"""From what was read (the PKI's snapshot, each host's files) to ``Check`` rows. Pure."""

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from ..pki.profile import serial_hex
from .gather import certificates, crl_facts
from .verdicts import (
    CRITICAL,
    OK,
    Check,
    bundle_check,
    certificate_check,
    crl_check,
    drift_check,
    renewal_point,
    services_check,
    unreachable_check,
)

SERVER_RENEW_AT = 2 / 3  # of its life: when maintain renews a server certificate


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate, lower-case hex (as ``pki.list --json`` has it)."""
    return cert.fingerprint(hashes.SHA256()).hex()


def cert_facts(cert: x509.Certificate) -> dict:
    """What the rows and the timeline show of a certificate."""
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": serial_hex(cert.serial_number),
        "not_before": cert.not_valid_before_utc,
        "not_after": cert.not_valid_after_utc,
        "sha256": fingerprint(cert),
    }


def api_host_checks(host: str, result, pki: dict, now, warn_before) -> list[Check]:
    """An API host's rows: server certificate, client CA bundle, CRL, services, drift."""
    if result.error:
        return [unreachable_check(host, result.error)]
    files = result.data["files"]
    found = [fingerprint(c) for c in certificates(files.get("client-ca"))]
    kind = result.data.get("server_cert", "private")
    return [
        Check("host", "ssh", OK, "reachable", host),
        server_check(host, files.get("server-cert"), pki, now, warn_before, kind),
        bundle_check(host, found if files.get("client-ca") else None, pki["client_ca"]),
        crl_check(host, crl_facts(files.get("crl")), pki["crl"], now, warn_before),
        services_check(host, result.data["units"]),
        drift_check(host, result.data["drift"].get("changed"), result.data["drift"].get("error")),
    ]


def server_check(host: str, pem: bytes | None, pki: dict, now, warn_before,
                 kind: str = "private") -> Check:  # fmt: skip
    """The server certificate the site sends: ours (``private``) against the one the PKI issued
    for ``host``; another CA's (``acme``, ``files``) by its issuer and dates only."""
    chain = certificates(pem)
    if not chain:
        return Check("server-cert", "server.crt", CRITICAL, "missing or unreadable", host)
    facts = cert_facts(chain[0])
    if kind != "private":
        return public_server_check(host, facts, now, warn_before, kind)
    expected = pki["servers"].get(host)
    if expected is None:
        facts["note"] = f"{facts['issuer']} (not from the PKI: server_cert files?)"
    else:
        facts["match"] = expected["serial"] == facts["serial"]
        if not facts["match"]:
            fix = f"run `inv provision --host {host}`"
            facts["mismatch"] = f"the PKI's is serial {expected['serial']}: {fix}"
    renew = renewal_point(facts["not_before"], facts["not_after"], SERVER_RENEW_AT)
    return certificate_check("server-cert", facts["subject"], host, facts, now, warn_before, renew)


RENEWED_BY = {
    "acme": "renewed by certbot on the host",
    "files": "replace server_cert_files and provision to renew",
}


def public_server_check(host: str, facts: dict, now, warn_before, kind: str) -> Check:
    """Another CA's certificate (``acme``, ``files``): its issuer and days left; not ours to
    renew or to compare with our PKI (warning within ``warn_before``, critical once expired)."""
    facts = {**facts, "server_cert": kind}
    facts["note"] = f"issuer {facts['issuer']} (server_cert {kind}: {RENEWED_BY.get(kind, '')})"
    return certificate_check("server-cert", facts["subject"], host, facts, now, warn_before)


def consumer_checks(host: str, result, pki: dict) -> list[Check]:
    """A consumer's rows: reachable, and its ``api-ca.crt`` the roots the APIs' server
    certificates need (``pki['api_trust']``, our server CA by default; None: public CAs, the
    consumer's system store verifies them and no api-ca.crt is needed)."""
    if result.error:
        return [unreachable_check(host, result.error)]
    found = [fingerprint(c) for c in certificates(result.data["api_ca"])]
    status, detail = api_ca_verdict(found, pki.get("api_trust", [pki["server_ca"]]), pki,
                                    result.data["folder"])  # fmt: skip
    return [Check("host", "ssh", OK, "reachable", host),
            Check("api-ca", "api-ca.crt", status, detail, host)]  # fmt: skip


def api_ca_verdict(found: list[str], wanted: list[str] | None, pki: dict, folder: str):
    """(status, detail) of a bundle's ``api-ca.crt`` fingerprints against the wanted roots."""
    if wanted is None:
        return OK, "none needed: the APIs' server certificates are from public CAs"
    ours = wanted == [pki["server_ca"]]
    if not found:
        return CRITICAL, "api-ca.crt missing in " + folder
    if all(w in found for w in wanted):
        return OK, "the PKI's server CA" if ours else "the APIs' CAs"
    if ours:
        return CRITICAL, "not the PKI's server CA: re-deliver the bundle"
    return CRITICAL, "not the APIs' CAs (acme_ca_bundle, server_cert_files.ca): re-deliver"


def client_checks(pki: dict, readings: dict, where: dict, now, warn_before, renew_before) -> list:
    """A row per client of the PKI: days left, where it is delivered, and whether each
    consumer holds the PKI's current certificate."""
    rows = []
    for name, client in sorted(pki["clients"].items()):
        rows.append(client_check(name, client, where.get(name, []), readings, now, warn_before,
                                 renew_before))  # fmt: skip
    return rows


def client_check(name, client, hosts, readings, now, warn_before, renew_before) -> Check:
    """One client: revoked clients are history (ok); a valid one is judged by its dates and by
    the bundles on its consumers."""
    if client["status"] == "revoked":
        return Check("client", name, OK, f"revoked (serial {client['serial']})", None)
    facts = {**client, "delivered": delivery(name, client, hosts, readings)}
    bad = [f"{h}: {w}" for h, w in facts["delivered"].items() if w != "current"]
    if bad:
        facts["match"], facts["mismatch"] = False, "; ".join(bad)
    else:
        facts["note"] = "delivered to " + (", ".join(hosts) or "no consumer (dist/ only)")
    renew_at = client["not_after"] - renew_before
    return certificate_check("client", name, None, facts, now, warn_before, renew_at)


def delivery(name: str, client: dict, hosts: list[str], readings: dict) -> dict[str, str]:
    """{consumer: current | unreachable | missing | other serial N} for client ``name``."""
    found = {}
    for host in hosts:
        result = readings.get(host)
        if result is None or result.error:
            found[host] = "unreachable"
            continue
        chain = certificates(result.data["clients"].get(name))
        if not chain:
            found[host] = "missing: run `inv issue-client --name " + name + "`"
        elif fingerprint(chain[0]) == client["sha256"]:
            found[host] = "current"
        else:
            found[host] = f"holds serial {serial_hex(chain[0].serial_number)}, not the PKI's"
    return found


def rollover_checks(pki: dict) -> list[Check]:
    """A CA rollover in progress (``pki['rollover']``: {ca: what it waits for}): a row each,
    ok (a rollover is on purpose) but saying what it waits for."""
    return [
        Check("rollover", f"{ca} CA", OK, f"in progress: waiting for {waits}")
        for ca, waits in pki.get("rollover", {}).items()
    ]


def ca_checks(pki: dict, now: dt.datetime, warn_before) -> list[Check]:
    """The CAs: days left (a CA that runs out takes every certificate it signed with it)."""
    return [certificate_check("ca", ca["name"], None, ca, now, warn_before) for ca in pki["cas"]]
