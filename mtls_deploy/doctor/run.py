"""``inv doctor``: why was a client refused? From the API hosts' logs (``--name``) or from a
certificate file (``--cert``), the cause in one sentence and the one command that fixes it.
Prints its lines as it goes; returns the exit code (0 nothing wrong found, 1 a refusal
explained). Bad input (unknown client, unreadable file) is ``BadInput``: one line, exit 2."""

import datetime as dt

from cryptography import x509

from ..errors import BadInput
from ..pki.profile import serial_hex
from ..runner import HostResult, run_on_hosts
from .causes import cause_for, error_log_cause
from .certfile import check_file, common_name, read_certificate, read_key
from .logs import of_client, read_logs

SHOWN = 3  # the client's last requests shown per host
# Without a request in the logs, the PKI's word on the client's certificate.
PKI_CAUSES = {"revoked": "FAILED:certificate revoked", "expired": "FAILED:certificate has expired"}


def explain(cause, name: str, host: str, say) -> None:
    """The two lines every diagnosis ends with: cause, fix."""
    say(f"  cause: {cause.cause}")
    say(f"  fix:   {cause.fix_for(name, host)}")


def known_client(store, name: str) -> dict[str, str]:
    """{serial: status} of every certificate ``name`` had; ``BadInput`` for an unknown name."""
    serials = {r.serial_hex: r.status for r in store.list(include_replaced=True)
               if r.kind == "client" and r.name == name}  # fmt: skip
    if not serials:
        known = sorted({r.name for r in store.list() if r.kind == "client"})
        raise BadInput(f"unknown client {name!r}: the PKI has {', '.join(known) or 'none'} "
                       f"(issue one with `inv issue-client --name {name}`)")  # fmt: skip
    return serials


def read_all_logs(hosts: list) -> list[HostResult]:
    """Every API host's logs, in parallel."""

    def work(host) -> HostResult:
        requests, errors = read_logs(host)
        return HostResult(host.name, data={"requests": requests, "errors": errors})

    return run_on_hosts(hosts, work).results


def diagnose_name(name: str, hosts: list, store, say) -> int:
    """``--name``: the client's recent requests on each host, and what the last one means;
    without any, what the PKI says of its certificate (revoked, expired)."""
    serials = known_client(store, name)
    status = store.client_status(name)
    say(f"{name}: latest certificate {list(serials)[-1]} is {status} in the PKI")
    problems = sum(host_diagnosis(r, name, set(serials), say) for r in read_all_logs(hosts))
    if not problems and status in PKI_CAUSES:
        explain(cause_for(PKI_CAUSES[status]), name, hosts[0].name if hosts else "api1", say)
        return 1
    return 1 if problems else 0


def host_diagnosis(result: HostResult, name: str, serials: set[str], say) -> int:
    """One host's part: 1 when the client's last request there was refused (or unreachable)."""
    if result.error:
        say(f"{result.host}: cannot read the logs: {result.error}")
        return 1
    mine = of_client(result.data["requests"], name, serials)
    if not mine:
        say(f"{result.host}: no request with {name}'s certificate in the access log's last lines")
        return error_log_hint(result, name, say) or no_certificate_hint(result, name, say)
    for request in mine[-SHOWN:]:
        say(f"{result.host}: {request.time} \"{request.request}\" {request.status} "
            f"verify={request.verify} serial={request.serial}")  # fmt: skip
    cause = cause_for(mine[-1].verify)
    if cause is None:
        say(f"{result.host}: {name}'s last request was accepted")
        return 0
    explain(cause, name, result.host, say)
    return 1


def no_certificate_hint(result: HostResult, name: str, say) -> int:
    """Requests that sent no certificate (``verify=NONE``, refused with 400) cannot be told
    apart by client: say how many, and what it means if they were ``name``'s."""
    bare = [r for r in result.data["requests"] if r.verify == "NONE" and r.status == 400]
    if not bare:
        return 0
    say(f"{result.host}: {len(bare)} recent request(s) sent no client certificate, the last at "
        f"{bare[-1].time}; if they were {name}'s:")  # fmt: skip
    explain(cause_for("NONE"), name, result.host, say)
    return 1


def error_log_hint(result: HostResult, name: str, say) -> int:
    """Without an access-log line: the error log's last verify error (info level), if any."""
    causes = [(line, error_log_cause(line)) for line in result.data["errors"]]
    causes = [(line, c) for line, c in causes if c]
    if not causes:
        return 0
    line, cause = causes[-1]
    say(f"{result.host}: the error log's last verify error: {line.strip()[:160]}")
    explain(cause, name, result.host, say)
    return 1


def pki_view(store) -> dict:
    """What a certificate file is checked against: the client CA(s), server CA, CRL."""
    return {
        "client_cas": x509.load_pem_x509_certificates(store.client_ca_pem()),
        "server_ca": x509.load_pem_x509_certificate(store.server_ca_pem()),
        "crl": store.crl(),
    }


def diagnose_file(cert_path: str, key_path: str | None, store, say, now=None,
                  host: str = "api1") -> tuple[int, str]:  # fmt: skip
    """``--cert``: every finding on the file; (exit code, the client name for the fixes)."""
    cert = read_certificate(cert_path)
    key = read_key(key_path) if key_path else None
    name = common_name(cert)
    say(
        f"{cert_path}: CN={name}, serial {serial_hex(cert.serial_number)}, issuer {cert.issuer.rfc4514_string()}"
    )
    findings = check_file(cert, key, pki_view(store), now or dt.datetime.now(dt.UTC))
    for finding in findings:
        say(f"  {'ok  ' if finding.ok else 'FAIL'} {finding.text}")
    failed = [f for f in findings if not f.ok]
    if failed:
        explain(failed[0].cause, name, host, say)
    return (1 if failed else 0), name
