"""Judging the smoke test's rows: a curl result against its expectation, the host's CRL against
the PKI's, a host that could not be reached. Pure."""

import json
from collections import Counter

from cryptography import x509

from ..pki import profile as pki
from ..runner import HostResult
from .cases import CRL_CASE, CRL_MIN_DAYS, OLD_TLS_REFUSED, Case, CurlResult, Expect


def body_json(body: str) -> dict:
    try:
        found = json.loads(body)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def describe(result: CurlResult) -> str:
    """What a request got, in a few words: ``200 CN=bob``, ``400 certificate revoked``,
    ``TLS failed: ... alert protocol version``."""
    if result.missing:
        return "missing"
    if result.status == 0:
        return f"curl {result.exit_code}: {short_error(result.error) or 'no response'}"
    body = body_json(result.body)
    cn = (body.get("subject") or {}).get("CN") if isinstance(body.get("subject"), dict) else None
    detail = f"CN={cn}" if cn else body.get("reason") or body.get("error") or ""
    return f"{result.status} {detail}".strip()


def short_error(error: str) -> str:
    """curl's first error line, without OpenSSL's error-code prefix."""
    line = next((x for x in error.strip().splitlines() if x.strip()), "")
    line = line.removeprefix("curl: ")
    if "routines::" in line:  # "(35) OpenSSL/3.0.20: error:0A00042E:SSL routines::tlsv1 alert ..."
        line = line.split(" ", 1)[0] + " " + line.rsplit("routines::", 1)[1]
    return line if len(line) <= 90 else line[:87] + "..."


def judge(expect: Expect, result: CurlResult) -> tuple[bool, str]:
    """(passed, got) for one request. Pure."""
    got = describe(result)
    body = body_json(result.body)
    if expect.kind == "identity":
        return _judge_identity(expect, result, body, got)
    if expect.kind == "rejected":
        reason = f"{body.get('reason', '')} {result.error}".lower()
        rejected = result.status == 400 or (result.status == 0 and result.exit_code in (35, 56))
        return rejected and any(w in reason for w in expect.words), got
    if expect.kind == "status":
        return result.status == expect.status, got
    if expect.kind == "unauthenticated":
        if body.get("verified") == "SUCCESS":
            return False, f"AUTHENTICATED by headers: {got}"
        return result.status == expect.status, got
    if expect.kind == "refused":
        refused = result.exit_code == 35 and any(w in result.error for w in OLD_TLS_REFUSED)
        return refused, (f"refused: {short_error(result.error)}" if refused else got)
    if expect.kind == "verified":
        return result.exit_code == 0 and result.status > 0, (
            f"verified (HTTP {result.status})" if result.exit_code == 0 else got
        )
    raise ValueError(f"unknown expectation {expect.kind!r}")


def _judge_identity(expect: Expect, result: CurlResult, body: dict, got: str) -> tuple[bool, str]:
    subject = body.get("subject") if isinstance(body.get("subject"), dict) else {}
    if result.status != 200 or subject.get("CN") != expect.cn:
        return False, got
    if expect.serial and not same_serial(body.get("serial", ""), expect.serial):
        return (
            False,
            f"{got}, serial {body.get('serial')} but the index has {expect.serial}: redeliver",
        )
    return True, got


def same_serial(a: str, b: str) -> bool:
    """nginx's ``$ssl_client_serial`` and the index's hex serial, leading zeros aside."""
    try:
        return int(a, 16) == int(b, 16)
    except ValueError:
        return False


def judge_missing(case: Case) -> Case:
    """A bundle that is not on the consumer: a failure while the index says valid."""
    if case.expect and case.expect.kind == "identity":
        name = case.name.removeprefix("bundle ")
        return case.settle(
            False, f"no bundle on {case.source}: run `inv issue-client --name {name}`"
        )
    return case.skip(f"no bundle on {case.source}")


def judge_crl(
    host_pem: bytes | None, pki_pem: bytes, client_ca: x509.Certificate, now
) -> tuple[bool, str]:
    """Case 9: the host's CRL is the PKI's, signed by the client CA, valid ≥ 7 more days. Pure."""
    if not host_pem:
        return False, "no CRL on the host: run `inv provision`"
    try:
        crl = x509.load_pem_x509_crl(host_pem)
    except ValueError:
        return False, "the host's CRL is not a PEM CRL: run `inv pki.crl --push`"
    if not crl.is_signature_valid(client_ca.public_key()):
        return False, "not signed by this PKI's client CA: run `inv pki.crl --push`"
    left = crl.next_update_utc - now
    days = left.days if left.total_seconds() > 0 else -1
    if days < CRL_MIN_DAYS:
        state = "EXPIRED" if days < 0 else f"EXPIRES IN {days} DAYS"
        return (
            False,
            f"{state} ({crl.next_update_utc:%Y-%m-%d %H:%M} UTC): run `inv pki.crl --push` NOW",
        )
    number = pki.crl_number(crl)
    if host_pem.strip() != pki_pem.strip():
        theirs = pki.crl_number(x509.load_pem_x509_crl(pki_pem))
        return False, f"CRL #{number} but the PKI has #{theirs}: run `inv pki.crl --push`"
    return True, f"valid {days} more days, = PKI's (CRL #{number})"


def settle_cases(
    cases: list[Case], outputs: dict[str, HostResult], pki_crl: bytes, client_ca, now
) -> None:
    """Give every planned row its result from the hosts' outputs."""
    for case in cases:
        if case.result:
            continue
        if case.number == CRL_CASE:
            _settle_crl(case, outputs.get(case.target), pki_crl, client_ca, now)
        else:
            _settle_request(case, outputs.get(case.request.source))


def collapse_unreachable(cases: list[Case], outputs: dict[str, HostResult]) -> list[Case]:
    """The rows a host could not answer (its SSH session failed) as one failed row for that host,
    where the first of them was: the error said once, not once per case (nor the host twice).
    Pure."""
    failed = {host: output.error for host, output in outputs.items() if output.error}
    lost = Counter(_answered_by(case) for case in cases)
    collapsed, said = [], set()
    for case in cases:
        host = _answered_by(case)
        if host not in failed:
            collapsed.append(case)
        elif host not in said:
            said.add(host)
            row = Case(None, "unreachable", host, "", f"an SSH session ({lost[host]} cases)")
            collapsed.append(row.settle(False, failed[host].removeprefix(f"{host}: ")))
    return collapsed


def _answered_by(case: Case) -> str | None:
    """The host whose SSH session answers ``case``: curl's source, or the CRL's host."""
    if case.number == CRL_CASE:
        return case.target
    return case.request.source if case.request else None


def _settle_request(case: Case, output: HostResult | None) -> None:
    if output is None or output.error:
        case.settle(False, output.error if output else "not run")
        return
    if not output.data.get("curl", True):
        case.settle(False, f"curl is not installed on {case.source}: apt-get install curl")
        return
    result = output.data.get("results", {}).get(case.request.id)
    if result is None:
        case.settle(False, output.data.get("script_error") or "no result")
    elif result.missing:
        judge_missing(case)
    else:
        case.via = result.via
        case.settle(*judge(case.expect, result))


def _settle_crl(case: Case, output: HostResult | None, pki_crl: bytes, client_ca, now) -> None:
    if output is None or output.error:
        case.settle(False, output.error if output else "not run")
    elif output.data.get("crl") is None:
        case.settle(False, f"cannot read the CRL: {output.data.get('crl_error') or 'not readable'}")
    else:
        case.settle(*judge_crl(output.data["crl"], pki_crl, client_ca, now))
