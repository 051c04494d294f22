"""mtls-handshakes: TLS handshakes per second with a client certificate against the provisioned
nginx on fleet1, for three key sets in turn on the same nginx, in the same run:

- ``ecdsa-p256``: the project's default (``inv pki.init``): P-256 CAs, server and client keys;
- ``rsa-tutorial``: like the tutorial: RSA 4096 CAs, RSA 2048 server and client keys (our PKI
  makes RSA 3072 only, so this run sets ``pki.RSA_KEY_SIZE`` in its own process while it
  creates that PKI and issues the server and client certificates);
- ``rsa-3072``: ``inv pki.init --key-type rsa``, RSA 3072 throughout.

For each, ``inv provision`` puts that PKI's server certificate and client CA on fleet1, then
``openssl s_time`` connects as the bench client (``-cert/-key``, server verified with
``-CAfile``) and fetches ``/ceiling`` (nginx's own 200, no backend) per connection:

- ``-new``: every connection a full handshake (client certificate sent and checked: chain,
  dates, CRL);
- ``-reuse``: the session resumed (nginx's shared session cache; tickets are off before nginx
  1.23.2, so TLS 1.3 resumes with stateful tickets from that cache), on TLS 1.3 and on
  TLS 1.2 (session ids: no key exchange at all). s_time's progress marks count the resumed
  share: on TLS 1.3 s_time's own reuse of one SSL object does not always offer a fresh ticket
  (with RSA keys we saw 1 connection in 3 resumed in some runs, all in others, while Python's
  ``ssl`` offering each latest session resumed every one), so the TLS 1.3 resumed row is a mix
  of full and resumed handshakes whenever its share is below 1.

``nproc`` s_time processes run at once for ``-time`` seconds each (10; 2 with ``--quick``), so
client and server share this machine's cores: the rate is what the machine sustains with both
on it. Beside it, the CPU nginx used per handshake (its workers' CPU time delta) prices the
server's side alone: 1000 / ms per handshake is what one core of a VPS could serve. Finally
fleet1 is provisioned back to the default PKI.
"""

import os
import re
import subprocess
import time

from cryptography import x509

from mtls_deploy.pki import profile as pki
from mtls_deploy.pki.store import PkiStore

from .common import print_table, run_process, spread
from .world import Bundle, https_port, lab_cpu_seconds, server_name, whoami_ok

NAME = "mtls-handshakes"
HOST = "fleet1"
HOSTS = [HOST]
PATH = "/ceiling"
CONFIGS = ("ecdsa-p256", "rsa-tutorial", "rsa-3072")
MODES = {"new": "full, TLS 1.3", "reuse": "resumed, TLS 1.3", "reuse_tls12": "resumed, TLS 1.2"}


def run(world, quick: bool) -> dict:
    """Measure; print the table; return the report for bench/results/mtls-handshakes.json."""
    seconds, clients = (2 if quick else 10), os.cpu_count() or 1
    figures = {}
    try:
        for config in CONFIGS:
            bundle = use_config(world, config)
            figures[config] = {
                "keys": key_sizes(bundle),
                "session": session_facts(bundle),
                "new": measure(bundle, ["-new"], seconds, clients),
                "reuse": measure(bundle, ["-reuse"], seconds, clients),
                "reuse_tls12": measure(bundle, ["-reuse", "-tls1_2"], seconds, clients),
            }
    finally:
        world.provision(HOSTS)  # back to the default PKI for the benchmarks that follow
    show(figures, seconds, clients)
    return {"quick": quick, "host": HOST, "path": PATH, "seconds": seconds, "clients": clients,
            "figures": figures, "goals": []}  # fmt: skip


def use_config(world, config: str) -> Bundle:
    """Create the config's PKI (the default one exists), provision fleet1 with it, check it."""
    if config == "ecdsa-p256":
        folder, bundle = "pki", world.bundle
    elif config == "rsa-3072":
        folder, bundle = "pki-rsa-3072", world.new_pki("pki-rsa-3072", "rsa")
    else:
        folder, bundle = "pki-rsa-tutorial", tutorial_pki(world, "pki-rsa-tutorial")
    world.provision(HOSTS, env={"MTLS_DEPLOY_PKI_DIR": str(world.dir / folder)})
    status, body = world.curl(HOST, bundle=bundle)
    if not whoami_ok(status, body):
        raise RuntimeError(f"{config}: /whoami answered {status}: {body[:200]}")
    return bundle


def tutorial_pki(world, folder: str) -> Bundle:
    """RSA 4096 CAs, then an RSA 2048 server certificate for fleet1 and client key."""
    saved = pki.RSA_KEY_SIZE
    try:
        pki.RSA_KEY_SIZE = 4096
        PkiStore(world.dir / folder).init(name="Bench API", key_type="rsa")
        pki.RSA_KEY_SIZE = 2048
        PkiStore.open(world.dir / folder).server_cert(HOST, [server_name(HOST)], [])
        return world.client_bundle(folder)
    finally:
        pki.RSA_KEY_SIZE = saved


def key_sizes(bundle: Bundle) -> dict:
    """What the handshake signs and checks with: the client key and its CA's key."""
    client = x509.load_pem_x509_certificate(bundle.cert.read_bytes())
    ca = x509.load_pem_x509_certificates(bundle.server_ca.read_bytes())[0]
    return {"client": _describe(client.public_key()), "server_ca": _describe(ca.public_key())}


def _describe(key) -> str:
    size = getattr(key, "key_size", None)
    curve = getattr(getattr(key, "curve", None), "name", None)
    return f"EC {curve}" if curve else f"RSA {size}"


def session_facts(bundle: Bundle) -> dict:
    """Protocol, cipher, server key size and signature, and the verify result of one handshake."""
    done = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{https_port(HOST)}",
         "-cert", bundle.cert, "-key", bundle.key, "-CAfile", bundle.server_ca],
        input=b"", capture_output=True, timeout=20,
    )  # fmt: skip
    text = done.stdout.decode(errors="replace")
    patterns = {
        "protocol": r"^New, (\S+), Cipher is", "cipher": r"^New, \S+, Cipher is (\S+)",
        "server_key_bits": r"^Server public key is (\d+) bit",
        "server_signature": r"^Peer signature type: (.+)$",
        "key_exchange": r"^Server Temp Key: (.+)$", "verify": r"Verify return code: (.+)$",
    }  # fmt: skip
    found = {}
    for key, pattern in patterns.items():
        match = re.search(pattern, text, re.M)
        found[key] = match.group(1).strip() if match else None
    return found


def measure(bundle: Bundle, mode: list[str], seconds: int, clients: int) -> dict:
    """``clients`` s_time processes at once for ``seconds``; connections per second, and CPU
    per connection of nginx and of the clients."""
    argv = ["openssl", "s_time", "-connect", f"127.0.0.1:{https_port(HOST)}",
            "-cert", bundle.cert, "-key", bundle.key, "-CAfile", bundle.server_ca,
            *mode, "-time", str(seconds), "-www", PATH]  # fmt: skip
    nginx_before = lab_cpu_seconds(HOSTS, ("nginx",))
    start = time.perf_counter()
    runs = _parallel(argv, clients, seconds)
    wall = time.perf_counter() - start
    nginx_cpu = lab_cpu_seconds(HOSTS, ("nginx",)) - nginx_before
    connections = sum(_connections(r.stdout) for r in runs)
    reused = sum(_progress(r.stdout).count("r") for r in runs)
    client_cpu = sum(r.cpu_s for r in runs)
    if connections == 0:
        raise RuntimeError(f"s_time {mode}: no connection: {runs[0].stdout[-300:]}")
    return {
        "connections": connections,
        "seconds": round(wall, 3),
        "per_s": round(connections / wall, 1),
        "per_s_each_client": spread(_connections(r.stdout) / r.wall_s for r in runs),
        "resumed_share": round(reused / connections, 3),
        "nginx_cpu_ms_each": round(1000 * nginx_cpu / connections, 3),
        "client_cpu_ms_each": round(1000 * client_cpu / connections, 3),
        "one_core_per_s": round(connections / nginx_cpu, 0) if nginx_cpu else None,
    }


def _parallel(argv: list, clients: int, seconds: int) -> list:
    """Run ``clients`` copies of ``argv`` at once; each stops itself after ``seconds``."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(clients) as pool:
        futures = [
            pool.submit(run_process, argv, None, timeout=seconds + 30) for _ in range(clients)
        ]
        return [f.result().check() for f in futures]


def _progress(stdout: str) -> str:
    """s_time's progress marks, one a connection: ``*`` full handshake, ``r`` resumed."""
    return "".join(re.findall(r"^[*r]+$", stdout, re.M))


def _connections(stdout: str) -> int:
    """s_time's ``123 connections in 10 real seconds`` line."""
    match = re.search(r"^(\d+) connections in \d+ real seconds", stdout, re.M)
    return int(match.group(1)) if match else 0


def show(figures: dict, seconds: int, clients: int) -> None:
    rows = []
    for config, f in figures.items():
        for mode, what in MODES.items():
            m = f[mode]
            rows.append([f"{config} {what}", m["per_s"], m["nginx_cpu_ms_each"], m["one_core_per_s"],
                         m["client_cpu_ms_each"], m["resumed_share"]])  # fmt: skip
    print_table(
        f"{NAME}: {clients} s_time clients x {seconds} s against nginx on {HOST} (GET {PATH})",
        ["", "handshakes/s", "nginx CPU ms", "1 core /s", "client CPU ms", "resumed"],
        rows,
    )
    for config, f in figures.items():
        if f["reuse"]["resumed_share"] < 0.95:
            print(f"note: {config}: s_time resumed {f['reuse']['resumed_share']:.0%} of its TLS 1.3 "
                  "connections: that row mixes full and resumed handshakes")  # fmt: skip
        s = f["session"]
        print(f"{config}: client {f['keys']['client']}, CA {f['keys']['server_ca']}; "
              f"{s['protocol']} {s['cipher']}, server signs {s['server_signature']}")  # fmt: skip
