"""The script each host runs (every curl of one source host in one round trip), its parsing,
and running it on the hosts in parallel."""

import base64
import shlex

from ..connection import Remote, SshTarget
from ..errors import UserError
from ..runner import HostResult, run_on_hosts
from .cases import CURL_TIMEOUT, ApiTarget, Case, CurlResult, Request, tmp_file
from .verdicts import short_error

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
    words = [f'"$via{index}"', f"$res{index}"]
    if api.ca_file:  # else curl's own (the system's) trust store: a public CA
        words += ["--cacert", tmp_file(api.ca_file)]
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


def run_scripts(
    loaded, cases: list[Case], files: dict, crl_paths: dict, server_cas: dict[str, bytes]
) -> dict[str, HostResult]:
    """Every source host's script, hosts in parallel. ``server_cas``: the APIs' CA files by
    name (``ApiTarget.ca_file``), written on every source host; ``files`` (the test
    certificates) only on the API hosts (whose CRL is read)."""
    by_source: dict[str, list[Request]] = {}
    for case in cases:
        if case.request:
            by_source.setdefault(case.request.source, []).append(case.request)
    sources = list(dict.fromkeys([*by_source, *crl_paths]))

    def work(host) -> HostResult:
        requests = by_source.get(host.name, [])
        own = {**server_cas, **(files if host.name in crl_paths else {})}
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
                "" if output.ok else short_error(output.stderr) or f"exit {output.exit_status}"
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
    return (read.stdout.encode() if read.ok else None), short_error(read.stderr)
