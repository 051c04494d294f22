"""``inv smoke-test``: curl on the remote machines (the consumers and each API host) says who
gets in, and the API hosts' CRLs are checked. Never ``-k``: every request verifies the server
against the server CA for server_name.

Cases (a table row each; ``--json`` prints the same rows):

1. each consumer's delivered bundle: 200 with its CN while the index says valid, rejected once
   revoked or expired (the servers agree with the index);
2. no client certificate: 400 (``client_verify: on``), or 200 on /health and 401 on /whoami
   (``optional``);
3. a revoked certificate, 4. one from a foreign CA, 5. an expired one: rejected. The revoked
   and the expired one are the PKI's own smoke test certificates (``PkiStore.smoke_certificates``:
   signed by the client CA once, recorded in the index, the revoked one in the CRL); the foreign
   one is made here, in memory, by a CA made for it. They travel inside the script to a 0700
   temporary directory on the API host and are deleted when the script exits;
6. identity headers (``Verified: SUCCESS``...) without a certificate: not authenticated;
7. TLS 1.1 and lower refused; 8. the server certificate verifies for server_name;
9. the CRL on the host is the PKI's, signed by the client CA, valid 7 more days at least.

One SSH round trip per consumer (all its requests in one script), two per API host (its
requests; reading the CRL as root), every host in parallel. A host that cannot be reached is one
failed row, not one per case it would have answered.
"""

import base64
import datetime as dt
import json
import shlex
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from . import pki
from .connection import Remote, SshTarget
from .deliver import CONSUMERS, bundle_dir, client_names, session_path
from .errors import UserError
from .runner import HostResult, run_on_hosts

CRL_MIN_DAYS = 7
CURL_TIMEOUT = 10
FOREIGN_WORDS = ("issuer", "self-signed", "self signed", "first certificate")
# The server's answer to TLS <= 1.1; "no protocols available" would be our own curl's refusal.
OLD_TLS_REFUSED = ("protocol version", "unsupported protocol")
IDENTITY_HEADERS = ("Verified: SUCCESS", "X-SSL-Client-Verify: SUCCESS", "DN: CN=admin")
WILDCARD_LISTEN = ("*", "0.0.0.0", "::", "")
CRL_CASE = 9
CRL_PUSH_NOTE = (
    "made the smoke test's own revoked and expired certificates (in the index, kind smoke); the "
    "API hosts' CRL does not list the revoked one yet: run `inv pki.crl --push`, then the smoke "
    "test again"
)


# --- what is tested: plain data ----------------------------------------------------------------


@dataclass(frozen=True)
class ApiTarget:
    """An API host as the smoke test sees it."""

    host: str
    server_name: str
    port: int
    listen: str
    ssh_address: str
    client_verify: str
    crl_path: str

    def address(self, from_itself: bool) -> str:
        """Where to connect when DNS does not know server_name: the listen address, else
        loopback from the host itself, else its SSH address."""
        if self.listen not in WILDCARD_LISTEN:
            return self.listen
        if from_itself:
            return "::1" if self.listen == "::" else "127.0.0.1"
        return self.ssh_address


@dataclass(frozen=True)
class Client:
    """A client whose bundle should be on a consumer, and what the index says of it."""

    name: str
    status: str | None  # valid, revoked, expired, or None (never issued)
    serial: str | None = None


@dataclass(frozen=True)
class ConsumerHost:
    """A consumer host: where its bundles are (relative to the login home) and its clients."""

    host: str
    folder: str
    clients: tuple[Client, ...] = ()


@dataclass(frozen=True)
class Expect:
    """What a request must get.

    kind: ``identity`` (200, CN and serial), ``rejected`` (400 with a reason containing one of
    ``words``), ``status`` (exactly ``status``), ``unauthenticated`` (``status`` and no verified
    identity), ``refused`` (the TLS handshake fails on the protocol version), ``verified`` (TLS
    succeeds with the server CA).
    """

    kind: str
    status: int | None = None
    cn: str | None = None
    serial: str | None = None
    words: tuple[str, ...] = ()


@dataclass(frozen=True)
class Request:
    """One curl run on ``source`` against ``target``."""

    id: str
    source: str
    target: ApiTarget
    path: str = "/health"
    cert: str | None = None  # a shell word: a quoted path, or "$d/<file>" in the temporary dir
    key: str | None = None
    headers: tuple[str, ...] = ()
    old_tls: bool = False
    needs: tuple[str, ...] = ()  # shell words of files that must be readable first


@dataclass
class Case:
    """A row of the table (``number`` ``None``: a host that could not be reached)."""

    number: int | None
    name: str
    source: str
    target: str
    expected: str
    expect: Expect | None = None
    request: Request | None = None
    result: str = ""  # pass, fail, skip
    got: str = ""
    via: str = ""

    def settle(self, passed: bool, got: str) -> "Case":
        self.result, self.got = ("pass" if passed else "fail"), got
        return self

    def skip(self, why: str) -> "Case":
        self.result, self.got = "skip", why
        return self


@dataclass(frozen=True)
class CurlResult:
    """What one curl run printed: exit code, HTTP status (0 if none), body, error, and whether
    it ran at all (``missing``: a file it needed was not there)."""

    id: str
    exit_code: int = 0
    status: int = 0
    body: str = ""
    error: str = ""
    via: str = ""
    missing: bool = False


# --- the cases ---------------------------------------------------------------------------------


def tmp_file(name: str) -> str:
    """A file in the script's temporary directory, as a shell word."""
    return f'"$d/{name}"'


def home_file(path: str) -> str:
    """A file relative to the login user's home (where the script starts), as a shell word."""
    return shlex.quote(path)


def consumer_cases(consumer: ConsumerHost, api: ApiTarget) -> list[Case]:
    """Cases 1, 2, 6, 7 and 8 from ``consumer`` against ``api``."""
    cases = [_bundle_case(consumer, api, client) for client in consumer.clients]
    cases += _no_certificate_cases(consumer.host, api)
    cases += [_headers_case(consumer.host, api), *_tls_cases(consumer.host, api)]
    return cases


def _request(case_id: str, source: str, api: ApiTarget, **options) -> Request:
    return Request(f"{case_id}@{source}>{api.host}", source, api, **options)


def _bundle_case(consumer: ConsumerHost, api: ApiTarget, client: Client) -> Case:
    case = Case(1, f"bundle {client.name}", consumer.host, api.host, "")
    if client.status is None:
        case.expected = "not issued"
        return case.skip(f"{client.name} has no certificate in the index")
    cert, key = (home_file(f"{consumer.folder}/{client.name}.{ext}") for ext in ("crt", "key"))
    case.request = _request(f"1-{client.name}", consumer.host, api, path="/whoami", cert=cert,
                            key=key, needs=(cert, key))  # fmt: skip
    if client.status == "valid":
        case.expected = f"valid → 200 CN={client.name}"
        case.expect = Expect("identity", 200, cn=client.name, serial=client.serial)
    else:
        case.expected = f"{client.status} → rejected"
        case.expect = Expect("rejected", 400, words=(client.status,))
    return case


def _no_certificate_cases(source: str, api: ApiTarget) -> list[Case]:
    if api.client_verify == "optional":
        wanted = [("/health", 200, "200 on /health"), ("/whoami", 401, "401 on /whoami")]
    else:
        wanted = [("/whoami", 400, "400 certificate required")]
    return [
        Case(
            2,
            "no certificate",
            source,
            api.host,
            label,
            Expect("status", status),
            _request(f"2{path}", source, api, path=path),
        )  # fmt: skip
        for path, status, label in wanted
    ]


def _headers_case(source: str, api: ApiTarget) -> Case:
    status = 401 if api.client_verify == "optional" else 400
    request = _request("6", source, api, path="/whoami", headers=IDENTITY_HEADERS)
    return Case(6, "identity headers", source, api.host, f"not authenticated ({status})",
                Expect("unauthenticated", status), request)  # fmt: skip


def _tls_cases(source: str, api: ApiTarget) -> list[Case]:
    old = _request("7-old-tls", source, api, old_tls=True)
    verify = _request("8-verify", source, api)
    return [
        Case(7, "TLS 1.0/1.1", source, api.host, "refused", Expect("refused"), old),
        Case(
            8,
            "server certificate",
            source,
            api.host,
            f"verifies for {api.server_name}",
            Expect("verified"),
            verify,
        ),  # fmt: skip
    ]


def api_cases(api: ApiTarget) -> list[Case]:
    """Cases 3, 4, 5 (test certificates, curl on the API host itself) and 9 (its CRL)."""
    cases = []
    for number, kind, words in ((3, "revoked", ("revoked",)), (4, "foreign", FOREIGN_WORDS),
                                (5, "expired", ("expired",))):  # fmt: skip
        cert, key = tmp_file(f"{kind}.crt"), tmp_file(f"{kind}.key")
        request = _request(f"{number}-{kind}", api.host, api, path="/whoami", cert=cert, key=key)
        label = "unknown issuer" if kind == "foreign" else kind
        cases.append(Case(number, f"{kind} certificate", api.host, api.host, f"rejected ({label})",
                          Expect("rejected", 400, words=words), request))  # fmt: skip
    crl_label = f"valid ≥ {CRL_MIN_DAYS} days, = PKI's"
    cases.append(Case(CRL_CASE, "CRL on host", "control", api.host, crl_label))
    return cases


def plan_cases(apis: list[ApiTarget], consumers: list[ConsumerHost]) -> list[Case]:
    """Every row, in order: per API host, the consumers' cases, then its own. Pure.

    With no consumer host, cases 2, 6, 7 and 8 run on the API host itself.
    """
    cases = []
    for api in apis:
        sources = consumers or [ConsumerHost(api.host, "")]
        for consumer in sources:
            cases += consumer_cases(consumer, api)
        cases += api_cases(api)
    return sorted(cases, key=lambda c: (apis.index(_api(apis, c.target)), c.number))


def _api(apis: list[ApiTarget], name: str) -> ApiTarget:
    return next(api for api in apis if api.host == name)


# --- judging: pure -----------------------------------------------------------------------------


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
        return f"curl {result.exit_code}: {_short(result.error) or 'no response'}"
    body = body_json(result.body)
    cn = (body.get("subject") or {}).get("CN") if isinstance(body.get("subject"), dict) else None
    detail = f"CN={cn}" if cn else body.get("reason") or body.get("error") or ""
    return f"{result.status} {detail}".strip()


def _short(error: str) -> str:
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
        return refused, (f"refused: {_short(result.error)}" if refused else got)
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


# --- the scripts --------------------------------------------------------------------------------

CURL_FUNCTION = f"""mtls_curl() {{
  mtls_id=$1; mtls_via=$2; shift 2
  mtls_code=$(curl -sS --connect-timeout 5 --max-time {CURL_TIMEOUT} -o "$d/body" -w '%{{http_code}}' "$@" 2>"$d/err")
  mtls_rc=$?
  printf '@@result %s %s %s %s\\n' "$mtls_id" "$mtls_rc" "${{mtls_code:-000}}" "$mtls_via"
  printf '@@body %s\\n' "$(head -c 4096 "$d/body" 2>/dev/null | base64 -w0)"
  printf '@@err %s\\n' "$(head -c 1024 "$d/err" 2>/dev/null | base64 -w0)"
  rm -f "$d/body" "$d/err"
}}"""


def script_for(requests: list[Request], files: dict[str, bytes]) -> str:
    """One shell script running every request of one source host (one round trip).

    ``files`` (server CA, test certificates and keys) are written to a 0700 temporary
    directory that is removed when the script exits, whatever happens.
    """
    lines = [
        "set -f",  # no globbing: [::1] in a --resolve stays a word
        "umask 077",
        'd=$(mktemp -d "${TMPDIR:-/tmp}/mtls-smoke.XXXXXX") || exit 1',
        "trap 'rm -rf \"$d\"' EXIT",
        "command -v curl >/dev/null 2>&1 || { echo '@@nocurl'; exit 0; }",
        *(_file_lines(name, content) for name, content in files.items()),
        CURL_FUNCTION,
    ]
    targets = list(dict.fromkeys(r.target for r in requests))
    for index, api in enumerate(targets):
        lines.append(_resolve_lines(index, api, from_itself=requests[0].source == api.host))
    for request in requests:
        lines.append(_curl_line(request, targets.index(request.target)))
    return "\n".join(lines) + "\n"


def _file_lines(name: str, content: bytes) -> str:
    encoded = base64.encodebytes(content).decode().rstrip("\n")
    return f"base64 -d > \"$d/{name}\" <<'MTLS_EOF'\n{encoded}\nMTLS_EOF"


def _resolve_lines(index: int, api: ApiTarget, from_itself: bool) -> str:
    """From the API host itself: always to its own address. Elsewhere: DNS when it knows
    server_name, else ``--resolve`` (as in the lab)."""
    address = api.address(from_itself)
    shown = f"[{address}]" if ":" in address else address
    resolve = shlex.quote(f"--resolve {api.server_name}:{api.port}:{shown}")
    if from_itself:
        return f"via{index}=resolve; res{index}={resolve}"
    name = shlex.quote(api.server_name)
    return (
        f"if getent hosts {name} >/dev/null 2>&1; then via{index}=dns; res{index}=; "
        f"else via{index}=resolve; res{index}={resolve}; fi"
    )


def _curl_line(request: Request, index: int) -> str:
    api = request.target
    words = [f'"$via{index}"', f"$res{index}", "--cacert", tmp_file("server-ca.crt")]
    if request.cert:
        words += ["--cert", request.cert, "--key", request.key]
    for header in request.headers:
        words += ["-H", shlex.quote(header)]
    if request.old_tls:
        words += ["--tlsv1.0", "--tls-max", "1.1", "--ciphers", "DEFAULT@SECLEVEL=0"]
    words.append(shlex.quote(f"https://{api.server_name}:{api.port}{request.path}"))
    call = f"mtls_curl {shlex.quote(request.id)} {' '.join(words)}"
    if not request.needs:
        return call
    test = " && ".join(f"[ -r {word} ]" for word in request.needs)
    return f"if {test}; then {call}; else printf '@@missing %s\\n' {shlex.quote(request.id)}; fi"


def parse_results(output: str) -> tuple[dict[str, CurlResult], bool]:
    """The script's ``@@`` lines as ``{request id: CurlResult}``, and whether curl is there."""
    results, current = {}, None
    for line in output.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "@@nocurl":
            return {}, False
        if tag == "@@missing":
            results[rest] = CurlResult(rest, missing=True)
        elif tag == "@@result":
            request_id, code, status, via = (rest.split(" ") + ["", "", ""])[:4]
            current = {"id": request_id, "exit_code": int(code), "status": _int(status), "via": via}
        elif tag in ("@@body", "@@err") and current is not None:
            current["body" if tag == "@@body" else "error"] = _decode(rest)
            if tag == "@@err":
                results[current["id"]] = CurlResult(**current)
                current = None
    return results, True


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


def _decode(text: str) -> str:
    try:
        return base64.b64decode(text).decode(errors="replace")
    except ValueError:
        return ""


# --- test certificates: the PKI's own, and a foreign one made here -----------------------------


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
        "foreign.key": pki.private_key_pem(key),
    }


# --- running it --------------------------------------------------------------------------------


@dataclass
class SmokeReport:
    """Every row, and how long it took."""

    cases: list[Case]
    seconds: float = 0.0
    totals: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what to run, one line each

    @property
    def failed(self) -> bool:
        return any(case.result == "fail" for case in self.cases)

    def count(self, result: str) -> int:
        return sum(1 for case in self.cases if case.result == result)


def api_target(host) -> ApiTarget:
    """An inventory host of group api as an ``ApiTarget``."""
    from roles.tls.role import tls_paths

    v = host.vars
    for name in ("server_name", "https_port"):
        if not v.get(name):
            raise UserError(f"{host.name}: {name} is not set: the smoke test needs it")
    verify = "on" if v.get("client_verify", "on") in (True, "on") else v["client_verify"]
    return ApiTarget(host.name, v["server_name"], int(v["https_port"]), str(v.get("https_listen") or "*"),
                     str(v.get("ansible_host") or host.name), verify,
                     tls_paths(v)["crl"])  # fmt: skip


def consumer_host(host, store) -> ConsumerHost:
    """An inventory consumer with the index's word on each of its clients."""
    clients = []
    for name in client_names(host):
        status = store.client_status(name)
        material = store.client_material(name) if status == "valid" else None
        clients.append(Client(name, status, material.serial if material else None))
    return ConsumerHost(host.name, session_path(bundle_dir(host.vars)), tuple(clients))


def run_smoke(
    api_names: list[str], from_names: list[str], loaded=None, store=None, now=None
) -> SmokeReport:
    """``inv smoke-test``: plan the cases, run every host's script in parallel, judge the rows.

    Example: ``run_smoke(["api1"], ["bob"]).failed``
    """
    from . import inventory
    from .pki_store import PkiStore

    started = time.monotonic()
    loaded = loaded or inventory.load()
    store = store or PkiStore.open()
    now = now or dt.datetime.now(dt.UTC)
    api_hosts = loaded.select(api_names, None if api_names else "api")
    consumer_list = (
        loaded.select(from_names)
        if from_names
        else [loaded.host(n) for n in loaded.groups.get(CONSUMERS, [])]
    )
    apis = [api_target(h) for h in api_hosts]
    cases = plan_cases(apis, [consumer_host(h, store) for h in consumer_list])
    files, crl_changed = certificate_files(store, now)
    outputs = _run_scripts(
        loaded, cases, files, {api.host: api.crl_path for api in apis}, store.server_ca_pem()
    )
    cases = collapse_unreachable(cases, outputs)
    client_ca = x509.load_pem_x509_certificate(store.client_ca_pem())
    settle_cases(cases, outputs, store.crl_pem(), client_ca, now)
    notes = [CRL_PUSH_NOTE] if crl_changed else []
    return SmokeReport(cases, time.monotonic() - started, notes=notes)


def _run_scripts(
    loaded, cases: list[Case], files: dict, crl_paths: dict, server_ca: bytes
) -> dict[str, HostResult]:
    by_source: dict[str, list[Request]] = {}
    for case in cases:
        if case.request:
            by_source.setdefault(case.request.source, []).append(case.request)
    sources = list(dict.fromkeys([*by_source, *crl_paths]))

    def work(host) -> HostResult:
        requests = by_source.get(host.name, [])
        own = {"server-ca.crt": server_ca, **(files if host.name in crl_paths else {})}
        return _run_on_host(host, requests, own, crl_paths.get(host.name))

    group = run_on_hosts([loaded.host(name) for name in sources], work)
    return {result.host: result for result in group.results}


def _run_on_host(host, requests: list[Request], files: dict, crl_path: str | None) -> HostResult:
    data = {}
    with Remote(SshTarget.from_vars(host.name, host.vars)) as remote:
        if requests:
            output = remote.run_script(
                script_for(requests, files), timeout=CURL_TIMEOUT * len(requests) + 30
            )
            data["results"], data["curl"] = parse_results(output.stdout)
            data["script_error"] = (
                "" if output.ok else _short(output.stderr) or f"exit {output.exit_status}"
            )
        if crl_path:
            data["crl"], data["crl_error"] = _read_crl(remote, crl_path)
    return HostResult(host.name, data=data)


def _read_crl(remote: Remote, path: str) -> tuple[bytes | None, str]:
    """The host's CRL (root-owned directory: read through sudo), or why it could not be read."""
    try:
        read = remote.run(f"cat {shlex.quote(path)}", sudo=True)
    except UserError as error:  # no sudo for this login
        return None, str(error)
    return (read.stdout.encode() if read.ok else None), _short(read.stderr)


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


# --- output ------------------------------------------------------------------------------------

COLUMNS = ("case", "from", "to", "expected", "got", "result")
GOT_WIDTH = 72  # longer answers are cut in the table; --json has them whole


def rows(report: SmokeReport) -> list[dict]:
    """The table's rows as dicts (the ``--json`` document's ``cases``)."""
    return [
        {"case": c.number, "name": c.name, "from": c.source, "to": c.target, "expected": c.expected,
         "got": c.got, "result": c.result, **({"via": c.via} if c.via else {})}
        for c in report.cases
    ]  # fmt: skip


def totals(report: SmokeReport) -> dict:
    return {
        "passed": report.count("pass"),
        "failed": report.count("fail"),
        "skipped": report.count("skip"),
    }


def total_line(report: SmokeReport) -> str:
    t = totals(report)
    verdict = "FAILED" if report.failed else "all passed"
    return (
        f"{len(report.cases)} cases: {t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped "
        f"in {report.seconds:.1f} s: {verdict}"
    )


def table_lines(report: SmokeReport) -> list[str]:
    """The table, one row per case, and the total line."""
    cells = [
        [_case_cell(c), c.source, c.target, c.expected, c.got, c.result.upper()]
        for c in report.cases
    ]
    for row in cells:
        row[4] = row[4] if len(row[4]) <= GOT_WIDTH else row[4][: GOT_WIDTH - 1] + "…"
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(COLUMNS)]
    line = lambda row: "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()  # noqa: E731
    return [
        line(COLUMNS),
        line(["-" * w for w in widths]),
        *(line(row) for row in cells),
        "",
        total_line(report),
    ]


def _case_cell(case: Case) -> str:
    return f"{case.number} {case.name}" if case.number is not None else f"- {case.name}"


def print_report(report: SmokeReport, as_json: bool = False, stream=None) -> None:
    """The table and its notes (or one JSON document) on stdout."""
    stream = stream or sys.stdout
    if as_json:
        document = {"cases": rows(report), "totals": totals(report), "passed": not report.failed,
                    "seconds": round(report.seconds, 2), "notes": report.notes}  # fmt: skip
        stream.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        return
    stream.write("\n".join([*table_lines(report), *report.notes]) + "\n")
