"""The lab's ACME world: Debian's Pebble (Let's Encrypt's ACME test server) and
pebble-challtestsrv as its DNS, run on this machine on loopback, as long-lived processes the lab
owns (started in sessions of their own, pids in ``.lab/acme/``, stopped by ``inv lab.down``)::

    acme = AcmeLab(Path(".lab"))
    acme.up()                                  # "started (pebble pid 4242, DNS pid 4241)"
    acme.register("api9.lab.test", "127.0.0.9")  # Pebble checks HTTP-01 on 127.0.0.9:80
    acme.trust("bob")                          # Pebble's root in bob's system trust store
    acme.trust("api9", roots=False, directory=True)  # certbot on api9 trusts the directory
    acme.down()

Trust is the lab's business alone: a lab host trusts Pebble's root the way a real machine
trusts a public root (``/usr/local/share/ca-certificates`` and ``update-ca-certificates``), and
an ACME host trusts the CA of Pebble's HTTPS listener the same way, so that Debian's certbot
(its python3-requests reads the system store) reaches the directory from the first order to
``certbot.timer``'s renewals with no setting of the product's. Pebble makes new roots each time
it starts: the lab installs them again on the hosts it gave the old ones.

Ports, addresses and the pure parts: ``acme_config``.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from cryptography import x509

from ..errors import BadInput, UserError
from ..files import atomic_write
from .acme_config import (
    ACME_PORT,
    DIRECTORY_URL,
    DNS_MANAGEMENT_PORT,
    DNS_MANAGEMENT_URL,
    DNS_PORT,
    LOOPBACK,
    MANAGEMENT_PORT,
    MANAGEMENT_URL,
    PEBBLE_ENV,
    AcmePaths,
    a_answers,
    a_query,
    acme_records,
    cert_pem,
    checked_dns_name,
    checked_loopback,
    dns_argv,
    key_pem,
    make_listener_ca,
    make_listener_cert,
    needs_new_listener_cert,
    pebble_argv,
    pebble_config,
    utc_now,
)
from .procfs import container_init, parse_pid, start_time
from .services import (
    Service,
    ensure_running,
    program_path,
    read_or_empty,
    require_programs,
    running_service_pid,
    stop_service,
)
from .spec import NAME_PATTERN, paths_for

CA_DIR = "/usr/local/share/ca-certificates"
ROOT_FILE = "mtls-lab-acme-root.crt"  # Pebble's root, as a public root on a real machine
DIRECTORY_FILE = "mtls-lab-acme-listener-ca.crt"  # the CA of Pebble's HTTPS listener


class AcmeLab:
    """The lab's ACME world, its files in ``state_dir/acme`` (``.lab/acme/``).

    ``directory_url``: Pebble's ACME directory; ``listener_ca``: the PEM to trust it with;
    ``pebble_log``: Pebble's log (one line per order and challenge).
    """

    directory_url = DIRECTORY_URL

    def __init__(self, state_dir: Path):
        self.paths = AcmePaths(Path(state_dir).absolute() / "acme")

    @property
    def listener_ca(self) -> Path:
        """The CA certificate (PEM) of Pebble's HTTPS listener, on the control machine."""
        return self.paths.listener_ca

    @property
    def pebble_log(self) -> Path:
        """Pebble's output since it last started."""
        return self.paths.pebble_log

    # --- processes ----------------------------------------------------------------------------

    def up(self, by_tests: bool = False) -> str:
        """Start the DNS and Pebble, or keep them when they run with the same settings;
        idempotent. Says what happened, e.g. ``"started (pebble pid 4242, DNS pid 4241)"``.
        ``by_tests``: a test session starts it, so the last session to end stops it."""
        require_programs(("pebble", "pebble-challtestsrv"), "pebble")
        self.paths.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        ensure_listener_cert(self.paths)
        atomic_write(self.paths.config, pebble_config(self.paths).encode(), 0o644)
        dns_started = ensure_running(self.dns_service(), self._dns_ready)
        if dns_started:
            self._add_records_again()
        pebble_started = ensure_running(self.pebble_service(), self._pebble_ready)
        if pebble_started:
            self._trust_again()
        verb = "started" if dns_started or pebble_started else "already running"
        pids = self.status()
        if by_tests and pebble_started:
            atomic_write(self.paths.tests_started, f"{pids['pebble']}\n".encode(), 0o644)
        return f"{verb} (pebble pid {pids['pebble']}, DNS pid {pids['dns']})"

    def down(self) -> str:
        """Stop Pebble and its DNS and forget their records; ``"stopped"`` or ``"not running"``."""
        stopped = [stop_service(s) for s in (self.pebble_service(), self.dns_service())]
        for path in (self.paths.records, self.paths.trusted, self.paths.tests_started):
            path.unlink(missing_ok=True)
        return "stopped" if any(stopped) else "not running"

    def status(self) -> dict[str, int | None]:
        """``{"pebble": pid, "dns": pid}``, None for a process that is not running."""
        return {
            "pebble": running_service_pid(self.pebble_service()),
            "dns": running_service_pid(self.dns_service()),
        }

    def pebble_service(self) -> Service:
        """Pebble, reading the lab's config and listener certificate."""
        inputs = [self.paths.config, self.paths.listener_cert, self.paths.listener_key]
        return Service(
            "pebble",
            pebble_argv(program_path("pebble"), self.paths),
            {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **PEBBLE_ENV},
            {p.name: read_or_empty(p) for p in inputs},
            self.paths.pebble_pid,
            self.paths.pebble_log,
            self.paths.pebble_settings,
            ((socket.SOCK_STREAM, ACME_PORT), (socket.SOCK_STREAM, MANAGEMENT_PORT)),
        )

    def dns_service(self) -> Service:
        """pebble-challtestsrv: DNS on 127.0.0.1:8053 (UDP, TCP), its management on 8055."""
        return Service(
            "pebble-challtestsrv",
            dns_argv(program_path("pebble-challtestsrv")),
            {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            {},
            self.paths.dns_pid,
            self.paths.dns_log,
            self.paths.dns_settings,
            ((socket.SOCK_STREAM, DNS_PORT), (socket.SOCK_DGRAM, DNS_PORT),
             (socket.SOCK_STREAM, DNS_MANAGEMENT_PORT)),
        )  # fmt: skip

    def _dns_ready(self) -> bool:
        with suppress(OSError):
            self.lookup("ready.invalid")
            socket.create_connection((LOOPBACK, DNS_MANAGEMENT_PORT), timeout=1).close()
            return True
        return False

    def _pebble_ready(self) -> bool:
        with (
            suppress(OSError),
            urllib.request.urlopen(DIRECTORY_URL, timeout=1, context=self._tls()) as answer,
        ):
            return "newOrder" in json.load(answer)
        return False

    # --- test sessions ------------------------------------------------------------------------

    @contextmanager
    def test_session(self) -> Iterator[AcmeLab]:
        """Pebble up for one test session, held while it lasts (a lease in ``sessions/``). At
        its end Pebble stops if a test session started it and no other live session holds it;
        one found running beforehand (``inv lab.up --with-acme``) keeps running."""
        self.up(by_tests=True)
        lease = self.paths.sessions / f"{os.getpid()}-{start_time(os.getpid())}"
        lease.parent.mkdir(mode=0o700, exist_ok=True)
        lease.touch()
        try:
            yield self
        finally:
            lease.unlink(missing_ok=True)
            started = parse_pid(read_or_empty(self.paths.tests_started).decode())
            if started and started == self.status()["pebble"] and not self.other_sessions():
                self.down()

    def other_sessions(self) -> list[int]:
        """Pids of the other live test sessions holding Pebble; stale leases are removed."""
        live = []
        for lease in sorted(self.paths.sessions.glob("*-*")):
            pid, _, started = lease.name.partition("-")
            if str(start_time(int(pid))) != started:
                lease.unlink(missing_ok=True)  # that session is gone
            elif int(pid) != os.getpid():
                live.append(int(pid))
        return live

    def wait_for_sole_use(self, timeout: float = 1200.0) -> None:
        """Wait until no other test session holds Pebble: before a test that restarts or stops
        it, as another session's orders and roots would go with it."""
        deadline = time.monotonic() + timeout
        while others := self.other_sessions():
            if time.monotonic() > deadline:
                raise UserError(f"test sessions {others} still use Pebble after {timeout:.0f} s")
            time.sleep(2.0)

    # --- DNS ----------------------------------------------------------------------------------

    def register(self, name: str, address: str) -> None:
        """An A record ``name`` -> ``address`` in Pebble's DNS (kept if the DNS restarts)."""
        name = checked_dns_name(name)
        address = checked_loopback(address)
        self._dns_post("/add-a", {"host": name, "addresses": [address]})
        records = self._records()
        records[name] = address
        atomic_write(self.paths.records, json.dumps(records, indent=2).encode(), 0o644)

    def unregister(self, name: str) -> None:
        """Remove ``name``'s A record: Pebble's DNS no longer knows it."""
        name = checked_dns_name(name)
        self._dns_post("/clear-a", {"host": name})
        records = self._records()
        records.pop(name, None)
        atomic_write(self.paths.records, json.dumps(records, indent=2).encode(), 0o644)

    def lookup(self, name: str) -> list[str]:
        """The A records Pebble's DNS answers for ``name`` (a real DNS query over UDP)."""
        query = a_query(name)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(2.0)
            udp.sendto(query, (LOOPBACK, DNS_PORT))
            response = udp.recv(4096)
        return a_answers(response, int.from_bytes(query[:2], "big"))

    def _records(self) -> dict[str, str]:
        try:
            return json.loads(self.paths.records.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _add_records_again(self) -> None:
        for name, address in self._records().items():
            self._dns_post("/add-a", {"host": name, "addresses": [address]})

    def _dns_post(self, path: str, body: dict) -> None:
        request = urllib.request.Request(
            f"{DNS_MANAGEMENT_URL}{path}", data=json.dumps(body).encode(), method="POST"
        )
        try:
            urllib.request.urlopen(request, timeout=5).close()
        except OSError as error:
            raise UserError(
                f"Pebble's DNS did not take {path} ({error}): run `inv lab.up --with-acme`"
            ) from None

    # --- Pebble's certificates ---------------------------------------------------------------

    def roots_pem(self) -> bytes:
        """Pebble's current root certificate (PEM), from its management interface."""
        return self._management_pem("/roots/0")

    def intermediates_pem(self) -> bytes:
        """Pebble's current intermediate certificate (PEM)."""
        return self._management_pem("/intermediates/0")

    def _management_pem(self, path: str) -> bytes:
        try:
            with urllib.request.urlopen(
                f"{MANAGEMENT_URL}{path}", timeout=5, context=self._tls()
            ) as answer:
                pem = answer.read()
        except OSError as error:
            raise UserError(f"Pebble's management did not answer {path} ({error})") from None
        x509.load_pem_x509_certificates(pem)  # certificates, nothing else, reach a trust store
        return pem

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.paths.listener_ca))

    # --- trust on lab hosts ------------------------------------------------------------------

    def trust(self, host: str, roots: bool = True, directory: bool = False) -> None:
        """Lab host ``host`` (running) trusts, in its system store: Pebble's root (``roots``),
        the CA of Pebble's HTTPS listener (``directory``: for certbot there). Remembered, so
        that a restarted Pebble's new root is installed again."""
        files = {}
        if roots:
            files[ROOT_FILE] = self.roots_pem()
        if directory:
            files[DIRECTORY_FILE] = self.paths.listener_ca.read_bytes()
        install_ca_files(host, files)
        trusted = self._trusted()
        old = trusted.get(host, {})
        trusted[host] = {"roots": roots or old.get("roots", False),
                         "directory": directory or old.get("directory", False)}  # fmt: skip
        atomic_write(self.paths.trusted, json.dumps(trusted, indent=2).encode(), 0o644)

    def untrust(self, host: str) -> None:
        """Take Pebble's root and the listener CA out of lab host ``host``'s system store."""
        install_ca_files(host, {ROOT_FILE: None, DIRECTORY_FILE: None})
        trusted = self._trusted()
        if trusted.pop(host, None) is not None:
            atomic_write(self.paths.trusted, json.dumps(trusted, indent=2).encode(), 0o644)

    def _trusted(self) -> dict[str, dict[str, bool]]:
        try:
            return json.loads(self.paths.trusted.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _trust_again(self) -> None:
        for host, kinds in self._trusted().items():
            if container_init(paths_for(host)) is not None:  # a stopped host is skipped
                self.trust(host, kinds.get("roots", False), kinds.get("directory", False))

    # --- the inventory ------------------------------------------------------------------------

    def up_for_inventory(self, hosts) -> list[str]:
        """``inv lab.up --with-acme``: Pebble up; each ``server_cert: acme`` host's names in its
        DNS and the listener CA in its store; Pebble's root in every host's store. One line each."""
        records = acme_records(hosts)
        lines = [f"acme: {self.up()}; directory {DIRECTORY_URL}, CA {self.listener_ca}"]
        for name, address in records.items():
            self.register(name, address)
            lines.append(f"acme: {name} -> {address}")
        for host in hosts:
            uses_acme = host.vars.get("server_cert") == "acme"
            self.trust(host.name, roots=True, directory=uses_acme)
            trusted = "Pebble's root and directory" if uses_acme else "Pebble's root"
            lines.append(f"acme: {host.name} trusts {trusted}")
        return lines


# --- the listener certificate on disk -------------------------------------------------------


def ensure_listener_cert(paths: AcmePaths) -> None:
    """The listener CA (made once) and Pebble's listener certificate (made again near its end);
    private keys 0600 from the moment they exist."""
    now = utc_now()
    if not (paths.listener_ca.exists() and paths.listener_ca_key.exists()):
        ca_key, ca_cert = make_listener_ca(now)
        atomic_write(paths.listener_ca_key, key_pem(ca_key), 0o600)
        atomic_write(paths.listener_ca, cert_pem(ca_cert), 0o644)
    ca_cert = x509.load_pem_x509_certificate(paths.listener_ca.read_bytes())
    if paths.listener_cert.exists() and paths.listener_key.exists():
        cert = x509.load_pem_x509_certificate(paths.listener_cert.read_bytes())
        if not needs_new_listener_cert(cert, ca_cert, now):
            return
    ca_key = _load_key(paths.listener_ca_key)
    key, cert = make_listener_cert(ca_key, ca_cert, now)
    atomic_write(paths.listener_key, key_pem(key), 0o600)
    atomic_write(paths.listener_cert, cert_pem(cert), 0o644)


def _load_key(path: Path):
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return load_pem_private_key(path.read_bytes(), password=None)


# --- a lab host's trust store ---------------------------------------------------------------


def install_ca_files(host: str, files: dict[str, bytes | None]) -> None:
    """Write (bytes) or remove (None) CA files in the running lab host's
    /usr/local/share/ca-certificates, then ``update-ca-certificates --fresh``, inside it."""
    if not NAME_PATTERN.fullmatch(host):
        raise BadInput(f"lab host name {host!r}: use lowercase letters, digits and '-'")
    pid = container_init(paths_for(host))
    if pid is None:
        raise UserError(f"{host}: not running: run `inv lab.up --host {host}` first")
    enter = ["nsenter", f"--target={pid}", "--mount", "--uts", "--ipc", "--net", "--pid"]
    done = subprocess.run([*enter, "sh", "-c", trust_script(files)], capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"{host}: update-ca-certificates failed: {reason}")


def trust_script(files: dict[str, bytes | None]) -> str:
    """A shell script writing/removing the CA files (names are the lab's constants, contents
    base64) and rebuilding the system store from scratch, so no old root stays in it."""
    lines = ["set -e", "umask 022", f"mkdir -p {CA_DIR}"]
    for name, content in files.items():
        target = f"{CA_DIR}/{name}"
        if content is None:
            lines.append(f"rm -f {target}")
        else:
            encoded = base64.b64encode(content).decode()
            lines.append(f"echo '{encoded}' | base64 -d > {target}.tmp && mv {target}.tmp {target}")
    lines.append("update-ca-certificates --fresh >/dev/null")
    return "\n".join(lines) + "\n"
