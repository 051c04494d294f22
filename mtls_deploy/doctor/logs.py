"""nginx's logs on the API hosts: reading them (one round trip per host, as root) and parsing
the access log's lines (``log_format`` in templates/nginx/site.conf.j2). Parsing is pure."""

import re
import shlex
from dataclasses import dataclass

from ..connection import Remote, SshTarget

TAIL_LINES = 5000
ACCESS = re.compile(
    r'^(?P<address>\S+) \[(?P<time>[^\]]+)\] "(?P<request>[^"]*)" (?P<status>\d{3}) \S+ '
    r'.*?verify="(?P<verify>[^"]*)" client="(?P<dn>[^"]*)" serial=(?P<serial>\S*)'
)


@dataclass(frozen=True)
class Request:
    """One access-log line: when, what, the answer, and nginx's word on the certificate."""

    host: str
    time: str
    request: str
    status: int
    verify: str
    dn: str
    serial: str


def parse_access(host: str, line: str) -> Request | None:
    """An access-log line as a ``Request``; None for a line of another format."""
    found = ACCESS.match(line)
    if found is None:
        return None
    return Request(host, found["time"], found["request"], int(found["status"]),
                   found["verify"], found["dn"], found["serial"])  # fmt: skip


def normal_serial(serial: str) -> str:
    """``0a1B`` -> ``A1B``: serials compared whatever their case and leading zeros."""
    return serial.strip().upper().lstrip("0") or "0"


def common_name(dn: str) -> str | None:
    """The CN of a DN as nginx logs it (RFC 2253: ``CN=bob,O=Example``)."""
    found = re.search(r"(?:^|,)\s*CN=((?:[^,\\]|\\.)*)", dn)
    return found[1] if found else None


def of_client(requests: list[Request], name: str, serials: set[str]) -> list[Request]:
    """The requests made with one of ``serials`` or a certificate whose CN is ``name``."""
    wanted = {normal_serial(s) for s in serials}
    return [r for r in requests
            if (r.serial not in ("", "-") and normal_serial(r.serial) in wanted)
            or common_name(r.dn) == name]  # fmt: skip


def log_paths(v: dict) -> tuple[str, str]:
    """(access log, error log) of the host's site, as the nginx role names them."""
    folder, api = v.get("nginx_log_dir") or "/var/log/nginx", v.get("api_name") or "api"
    return f"{folder}/{api}.access.log", f"{folder}/{api}.error.log"


def logs_script(access: str, error: str) -> str:
    """The last lines of the access log, then ``@@error`` and the error log's verify lines."""
    return (f"tail -n {TAIL_LINES} {shlex.quote(access)} 2>/dev/null\necho @@error\n"
            f"grep -a -i -e 'verify error' -e 'no required SSL certificate' {shlex.quote(error)} "
            "2>/dev/null | tail -n 200\nexit 0\n")  # fmt: skip


def split_output(host: str, output: str) -> tuple[list[Request], list[str]]:
    """(parsed access-log requests, error-log lines) from ``logs_script``'s output."""
    access, _, error = output.partition("@@error\n")
    requests = [r for r in (parse_access(host, line) for line in access.splitlines()) if r]
    return requests, error.splitlines()


def read_logs(host) -> tuple[list[Request], list[str]]:
    """One API host's recent requests and verify errors (as root: the logs are nginx's)."""
    access, error = log_paths(host.vars)
    with Remote(SshTarget.from_vars(host.name, host.vars)) as remote:
        output = remote.run_script(logs_script(access, error), sudo=True, timeout=60)
    return split_output(host.name, output.stdout)
