"""Load that a release switch must not fail, and what it saw: ApacheBench in the background (a
connection per request, or keep-alive with ``-k``) and a keep-alive client of our own that
sends a request again once when its reused connection turns out closed before any byte of the
answer, as curl and browsers do (a server may close an idle keep-alive connection at any time:
RFC 9112, section 9.3.1; nginx does on a reload).

    target = Target("127.0.0.1", 8570, "zd-api.lab.test", "/orders", cert, key, server_ca)
    with Load(target, scratch) as load:     # ab, ab -k and the keep-alive client, 1 connection each
        switch()                             # inv deploy, inv rollback ...
    load.figures   # {"ab": {...}, "ab -k": {...}, "keep-alive": {...}}: requests, failed, non_2xx, p99_ms

Every request goes to 127.0.0.1 with the client certificate; each tool stops by itself after
``seconds`` at the latest.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import percentile

# What a reused connection that the server had closed looks like before any byte of the answer:
# EOF instead of a status line (RemoteDisconnected), a reset, or a send into a closed socket.
CLOSED_BEFORE_ANSWER = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                        ssl.SSLEOFError, ssl.SSLZeroReturnError)  # fmt: skip
AB_MAX_REQUESTS = 10_000_000


@dataclass(frozen=True)
class Target:
    """Where the load goes: nginx on ``address:port``, named ``server_name`` (SNI, Host)."""

    address: str
    port: int
    server_name: str
    path: str
    cert: Path
    key: Path
    server_ca: Path

    @property
    def url(self) -> str:
        return f"https://{self.address}:{self.port}{self.path}"

    def client_pem(self, folder: Path) -> Path:
        """ab's ``-E`` wants the certificate and its key in one file (0600)."""
        path = folder / "client.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(self.cert.read_bytes() + self.key.read_bytes())
        return path


# --- ApacheBench -------------------------------------------------------------------------------


class AbRun:
    """``ab`` in the background until ``stop()``: ab prints its report on SIGINT too."""

    def __init__(self, target: Target, folder: Path, keep_alive: bool, concurrency: int = 1,
                 seconds: int = 600):  # fmt: skip
        name = "ab-k" if keep_alive else "ab"
        self.csv = folder / f"{name}.csv"
        self.started = time.perf_counter()
        argv = ["ab", "-q", "-l", "-r", *(["-k"] if keep_alive else []),
                "-t", str(seconds), "-n", str(AB_MAX_REQUESTS), "-c", str(concurrency),
                "-s", "10", "-E", str(target.client_pem(folder)), "-e", str(self.csv),
                "-H", f"Host: {target.server_name}", target.url]  # fmt: skip
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        stdin=subprocess.DEVNULL, text=True)  # fmt: skip

    def stop(self) -> dict:
        """Interrupt ab; its counts, rate and p50/p99 (ms)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        out, err = self.process.communicate(timeout=30)
        figures = parse_ab(out)
        figures["seconds_run"] = round(time.perf_counter() - self.started, 2)
        if figures["complete"] == 0:
            figures["error"] = (err or out).strip()[-300:]
        figures.update(parse_percentiles(self.csv))
        return figures


def parse_ab(text: str) -> dict:
    """The counts and the rate from ab's report."""

    def number(label: str) -> float:
        match = re.search(rf"^{label}:\s+([\d.]+)", text, re.M)
        return float(match.group(1)) if match else 0.0

    failed_kinds = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: (\d+), Exceptions: (\d+)\)",
                             text)  # fmt: skip
    kinds = dict(zip(("connect", "receive", "length", "exceptions"),
                     map(int, failed_kinds.groups()) if failed_kinds else (0, 0, 0, 0),
                     strict=True))  # fmt: skip
    return {
        "complete": int(number("Complete requests")),
        "failed": int(number("Failed requests")),
        "failed_by_kind": kinds,
        "non_2xx": int(number("Non-2xx responses")),
        "keep_alive": int(number("Keep-Alive requests")),
        "requests_per_s": number("Requests per second"),
    }


def parse_percentiles(csv: Path) -> dict:
    """p50 and p99 (ms) from ab's ``-e`` file; None when ab wrote none."""
    try:
        rows = dict(line.split(",") for line in csv.read_text().strip().splitlines()[1:])
    except (OSError, ValueError):
        return {"p50_ms": None, "p99_ms": None}
    return {"p50_ms": float(rows["50"]), "p99_ms": float(rows["99"])}


# --- the keep-alive client ---------------------------------------------------------------------


class _Connection(http.client.HTTPSConnection):
    """HTTPS to ``address`` for a server name that resolves nowhere (SNI and Host: the name)."""

    def __init__(self, target: Target, context: ssl.SSLContext, timeout: float):
        super().__init__(target.server_name, target.port, context=context, timeout=timeout)
        self.address = target.address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


@dataclass
class Outcome:
    """One request: when it started (perf_counter), how long it took, its status (0: failed),
    and what went wrong: the error, or the start of a non-2xx answer's body."""

    start: float
    seconds: float
    status: int
    error: str = ""


@dataclass
class KeepAliveClient:
    """GET ``target.path`` again and again on one keep-alive connection, in a thread; or POST
    ``body`` (JSON), which is never sent twice: a POST whose connection closed fails."""

    target: Target
    timeout: float = 10.0
    body: bytes | None = None  # set: POST it
    outcomes: list[Outcome] = field(default_factory=list)
    retries: int = 0  # requests sent again on a new connection (the reused one was closed)
    connections: int = 0

    def __post_init__(self):
        self.context = ssl.create_default_context(cafile=str(self.target.server_ca))
        self.context.load_cert_chain(str(self.target.cert), str(self.target.key))
        self._connection: _Connection | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> KeepAliveClient:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout + 5)
        self._close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            start = time.perf_counter()
            try:
                status, error = self.request()
            except (OSError, http.client.HTTPException) as problem:
                status, error = 0, f"{type(problem).__name__}: {problem}"
                self._close()
            self.outcomes.append(Outcome(start, time.perf_counter() - start, status, error))

    def request(self) -> tuple[int, str]:
        """One request; its status, and for a non-2xx answer the answer's start. A GET is sent
        again once on a new connection when the reused one turns out closed before any byte of
        the answer; any other error is raised."""
        reused = self._connection is not None
        try:
            response = self._send()
        except CLOSED_BEFORE_ANSWER:
            self._close()
            if not reused or self.body is not None:
                raise
            self.retries += 1
            response = self._send()
        body = response.read()
        if response.will_close:
            self._close()
        if 200 <= response.status < 300:
            return response.status, ""
        return response.status, f"{response.status}: {body[:200].decode('utf-8', 'replace')}"

    def _send(self) -> http.client.HTTPResponse:
        if self._connection is None:
            self._connection = _Connection(self.target, self.context, self.timeout)
            self.connections += 1
        if self.body is None:
            self._connection.request("GET", self.target.path)
        else:
            headers = {"Content-Type": "application/json"}
            self._connection.request("POST", self.target.path, self.body, headers)
        return self._connection.getresponse()

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def figures(self, since: float | None = None, until: float | None = None) -> dict:
        """Counts and latency of the requests that started in [since, until)."""
        chosen = [o for o in self.outcomes
                  if (since is None or o.start >= since) and (until is None or o.start < until)]  # fmt: skip
        times = [1000 * o.seconds for o in chosen if o.status]
        return {
            "complete": len(chosen),
            "failed": sum(1 for o in chosen if not o.status),
            "non_2xx": sum(1 for o in chosen if o.status and not 200 <= o.status < 300),
            "retried": self.retries,
            "connections": self.connections,
            "p50_ms": round(percentile(times, 0.50), 2) if times else None,
            "p99_ms": round(percentile(times, 0.99), 2) if times else None,
            "errors": sorted({o.error for o in chosen if o.error})[:5],
        }


# --- all three at once -------------------------------------------------------------------------


class Load:
    """ab, ab -k and the keep-alive client against ``target``, one connection each, while the
    ``with`` block runs; ``figures`` afterwards."""

    def __init__(self, target: Target, folder: Path, concurrency: int = 1, warm_up: float = 1.0):
        self.target, self.folder, self.concurrency, self.warm_up = (
            target, folder, concurrency, warm_up)  # fmt: skip
        self.figures: dict = {}

    def __enter__(self) -> Load:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ab = AbRun(self.target, self.folder, keep_alive=False, concurrency=self.concurrency)
        self.ab_k = AbRun(self.target, self.folder, keep_alive=True, concurrency=self.concurrency)
        self.client = KeepAliveClient(self.target).start()
        time.sleep(self.warm_up)
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.ended = time.perf_counter()
        time.sleep(0.5)  # requests that raced the last switch finish
        self.client.stop()
        self.figures = {
            "ab": self.ab.stop(),
            "ab -k": self.ab_k.stop(),
            "keep-alive": self.client.figures(),
        }
