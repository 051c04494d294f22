"""The smoke test's case table: what is tested, from where, and what each request must get.
Plain data and pure functions: no host, no PKI."""

import shlex
from dataclasses import dataclass

CRL_MIN_DAYS = 7

CURL_TIMEOUT = 10

FOREIGN_WORDS = ("issuer", "self-signed", "self signed", "first certificate")
# The server's answer to TLS <= 1.1; "no protocols available" would be our own curl's refusal.
OLD_TLS_REFUSED = ("protocol version", "unsupported protocol")

IDENTITY_HEADERS = ("Verified: SUCCESS", "X-SSL-Client-Verify: SUCCESS", "DN: CN=admin")

WILDCARD_LISTEN = ("*", "0.0.0.0", "::", "")

CRL_CASE = 9


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
    # The file (in the script's temporary directory) curl verifies the server with; None:
    # a public CA, verified against the source host's system trust store.
    ca_file: str | None = "server-ca.crt"

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
