"""Bulk client issuance: mtls-deploy's PKI against the openssl command sequence, same machine, same run.

    .venv/bin/python bench/pki_bulk.py            # 1000 clients, 1000 with PKCS#12, 20 via openssl
    .venv/bin/python bench/pki_bulk.py --quick    # 50 clients, 50 with PKCS#12, 3 via openssl

Per client, mtls-deploy does: key (ECDSA P-256) + certificate + index row + PEM bundle in dist/
(key, certificate, api-ca.crt, README), then the same with a PKCS#12 file (AES-256, PBKDF2).
The openssl sequence is the tutorial's ``genrsa``, ``req -new``, ``x509 -req -CA`` per client
(RSA 2048, openssl's default), plus the same sequence with an EC P-256 key for a like-for-like
figure. Results: a table on stdout and ``bench/results/pki-bulk.json``.
"""

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cryptography  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402

from mtls_deploy import __version__  # noqa: E402
from mtls_deploy.pki import keys  # noqa: E402
from mtls_deploy.pki import profile as pki  # noqa: E402
from mtls_deploy.pki.bundle import issue_bundles  # noqa: E402
from mtls_deploy.pki.store import PkiStore  # noqa: E402

RESULTS = REPO / "bench" / "results" / "pki-bulk.json"
GOAL_RATE, GOAL_RATIO = 1000, 30


def main() -> None:
    """Run every measurement, print the table, write the JSON."""
    options = parse_args()
    work = Path(tempfile.mkdtemp(prefix="pki-bulk-", suffix=".tmp", dir=options.dir))
    os.environ["MTLS_DEPLOY_CA_PASSPHRASE"] = os.urandom(16).hex()
    try:
        figures = measure(work, options)
    finally:
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "options": vars(options),
        "figures": figures,
        "goals": goals(figures),
        "versions": versions(),
        "machine": machine(work),
    }
    print_table(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwritten {RESULTS.relative_to(REPO)}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 clients, 3 via openssl")
    parser.add_argument("--clients", type=int, help="clients per mtls-deploy run (default 1000)")
    parser.add_argument("--openssl", type=int, help="clients via the openssl sequence (default 20)")
    parser.add_argument(
        "--dir", default=str(REPO / "bench" / "results"), help="where the PKI is written"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch PKI and bundles")
    parser.add_argument("--repeat", type=int, help="runs of the PEM bulk issue (default 3)")
    options = parser.parse_args()
    options.repeat = options.repeat or (1 if options.quick else 3)
    options.clients = options.clients or (50 if options.quick else 1000)
    options.openssl = options.openssl or (3 if options.quick else 20)
    return options


def measure(work: Path, options) -> dict:
    store = PkiStore(work / "pki")
    store.init(name="Bench API")
    store = PkiStore.open(work / "pki")
    dist = work / "dist"
    store.issue_client(
        "warm-up"
    )  # opens the CA key once (600 000 PBKDF2 rounds), as a bulk run does
    figures = {"crypto_only": crypto_only(store, options.clients)}
    runs = [bulk(store, dist, f"c{r}-", options.clients, p12=False) for r in range(options.repeat)]
    figures["pem_bundle"] = best_of(runs)
    figures["pem_and_p12"] = bulk(store, dist, "p", options.clients, p12=True)
    check(store, work, options.clients, options.repeat)
    figures["openssl_rsa"] = openssl_sequence(work / "openssl-rsa", options.openssl, "rsa")
    figures["openssl_ec"] = openssl_sequence(work / "openssl-ec", options.openssl, "ec")
    return figures


def crypto_only(store: PkiStore, count: int) -> dict:
    """Key + certificate in memory, no disk: the ceiling the file system pulls the bulk rate from."""
    ca_cert, ca_key = store._signer("client-ca", dt.datetime.now(dt.UTC))
    now = dt.datetime.now(dt.UTC)
    start = time.perf_counter()
    for i in range(count):
        key = pki.generate_key("ec")
        cert = pki.issue_client_cert(
            ca_cert, ca_key, key.public_key(), f"m{i}", pki.new_serial(), now
        )
        keys.private_key_pem(key), cert.public_bytes(serialization.Encoding.PEM)
    return rate(count, time.perf_counter() - start)


def bulk(store: PkiStore, dist: Path, prefix: str, count: int, p12: bool) -> dict:
    names = [f"{prefix}{i:05d}" for i in range(count)]
    start = time.perf_counter()
    results = issue_bundles(store, names, dist_dir=dist, p12=p12)
    elapsed = time.perf_counter() - start
    assert sum(r.issue.changed for r in results) == count
    return rate(count, elapsed)


def best_of(runs: list[dict]) -> dict:
    """The fastest run, with every run's rate and the median beside it (the machine is shared)."""
    rates = sorted(run["clients_per_s"] for run in runs)
    best = max(runs, key=lambda run: run["clients_per_s"])
    return {**best, "median_clients_per_s": rates[len(rates) // 2], "runs_clients_per_s": rates}


def check(store: PkiStore, work: Path, count: int, repeat: int) -> None:
    """The run did the work: one index row per client, and openssl accepts a sample bundle."""
    clients = [r for r in store.list() if r.kind == "client"]
    assert len(clients) == (repeat + 1) * count + 1, len(clients)
    sample = work / "dist" / "c0-00000"
    done = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            work / "pki" / "client-ca.crt",
            "-purpose",
            "sslclient",
            sample / "c0-00000.crt",
        ],
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr


def openssl_sequence(folder: Path, count: int, key_type: str) -> dict:
    folder.mkdir()
    run(
        folder,
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=Bench openssl CA",
        "-days",
        "3650",
    )
    start = time.perf_counter()
    for i in range(count):
        if key_type == "rsa":
            run(folder, "genrsa", "-out", f"c{i}.key", "2048")
        else:
            run(
                folder,
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                f"c{i}.key",
            )
        run(folder, "req", "-new", "-key", f"c{i}.key", "-out", f"c{i}.csr", "-subj", f"/CN=c{i}")
        run(
            folder,
            "x509",
            "-req",
            "-in",
            f"c{i}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"c{i}.crt",
            "-days",
            "365",
            "-sha256",
        )
    return rate(count, time.perf_counter() - start)


def run(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)


def rate(count: int, seconds: float) -> dict:
    return {
        "clients": count,
        "seconds": round(seconds, 3),
        "clients_per_s": round(count / seconds, 1),
    }


def goals(figures: dict) -> dict:
    ours = figures["pem_bundle"]["clients_per_s"]
    ratio_rsa = ours / figures["openssl_rsa"]["clients_per_s"]
    ratio_ec = ours / figures["openssl_ec"]["clients_per_s"]
    return {
        "rate_goal": GOAL_RATE,
        "rate_met": ours >= GOAL_RATE,
        "ratio_goal": GOAL_RATIO,
        "ratio_vs_openssl_rsa": round(ratio_rsa, 1),
        "ratio_vs_openssl_ec": round(ratio_ec, 1),
        "ratio_met": ratio_rsa >= GOAL_RATIO,
    }


def versions() -> dict:
    cli = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    return {
        "mtls_deploy": __version__,
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "python_ssl": ssl.OPENSSL_VERSION,
        "openssl_cli": cli,
    }


def machine(work: Path) -> dict:
    meminfo = Path("/proc/meminfo").read_text().split("\n")[0].split()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    fs = subprocess.run(
        ["df", "--output=fstype", str(work.parent)], capture_output=True, text=True
    ).stdout
    return {
        "nproc": os.cpu_count(),
        "memory_mb": int(meminfo[1]) // 1024,
        "cpu": cpu,
        "kernel": platform.release(),
        "filesystem": fs.split()[-1] if fs else "?",
        "load_average": os.getloadavg(),
    }


def print_table(report: dict) -> None:
    f, g, m = report["figures"], report["goals"], report["machine"]
    rows = [
        ("mtls-deploy: key + cert in memory (no disk)", f["crypto_only"]),
        ("mtls-deploy: key + cert + index row + PEM bundle (best)", f["pem_bundle"]),
        ("mtls-deploy: the same + PKCS#12 (AES-256, PBKDF2)", f["pem_and_p12"]),
        ("openssl genrsa + req + x509 (tutorial, RSA 2048)", f["openssl_rsa"]),
        ("openssl genpkey EC + req + x509 (P-256)", f["openssl_ec"]),
    ]
    print(f"{'what':<56} {'clients':>7} {'seconds':>8} {'clients/s':>10}")
    for label, row in rows:
        print(
            f"{label:<56} {row['clients']:>7} {row['seconds']:>8.2f} {row['clients_per_s']:>10.1f}"
        )
    print(
        f"\nratio vs openssl (RSA, tutorial): {g['ratio_vs_openssl_rsa']}x (goal {GOAL_RATIO}x: "
        f"{'met' if g['ratio_met'] else 'NOT met'}); vs openssl EC: {g['ratio_vs_openssl_ec']}x"
    )
    runs = ", ".join(f"{r:.0f}" for r in f["pem_bundle"]["runs_clients_per_s"])
    print(
        f"PEM bulk runs (clients/s): {runs}; best {f['pem_bundle']['clients_per_s']:.0f}, "
        f"median {f['pem_bundle']['median_clients_per_s']:.0f}"
    )
    print(f"rate goal {GOAL_RATE}/s (best run): {'met' if g['rate_met'] else 'NOT met'}")
    print(
        f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_mb']} MB, {m['filesystem']}, "
        f"load {', '.join(f'{x:.2f}' for x in m['load_average'])}"
    )


if __name__ == "__main__":
    main()
