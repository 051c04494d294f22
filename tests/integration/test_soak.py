"""The soak: never locked out, over compressed time, with traffic. A lab world of its own (API
host sk-api, SSH 2289 / HTTPS 8489; consumer sk-bob, SSH 2290), lifetimes in minutes
(group_vars/all), ``inv maintain`` every 15 s as cron would run it, a client CA rollover and a
server CA rollover in the middle, while sk-bob (as its login user) calls /whoami with whatever
bundle it holds, a new TLS connection every 0.2 s, for more than 6 minutes.

Required: 0 failed requests, at least 3 renewals of each kind on the wire (the server serial
sk-bob sees, the client serials in nginx's access log, the CRL re-signed), ``inv status`` 0 at
the end. The figures go to bench/results/soak.json (``inv bench --only soak`` runs this test).
On a failure the failing requests are printed beside what maintain did around them."""

import datetime as dt
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mtls_deploy import inventory, lab
from mtls_deploy.pki.settings import PkiSettings
from mtls_deploy.pki.store import PkiStore

from .conftest import (
    ROOT,
    ApiHost,
    inv,
    needs_lab,
    pki_environment,
    provision_cleanly,
    run_on,
    write_api_consumer_inventory,
)

pytestmark = [*needs_lab, pytest.mark.slow]

API = ApiHost("sk-api", 2289, 8489)
CONSUMER, CONSUMER_PORT = "sk-bob", 2290
PASSPHRASE = "soak-test"
# renewals: the CRL at a third of its life left (every ~60 s), the server certificate at two
# thirds of its life (every ~80 s), sk-bob's 60 s before its end (every ~60 s); warn_before
# below every renewal point, so that status is 0 right after a maintain run
LIFETIMES = {"crl_lifetime": "90s", "server_lifetime": "2m", "client_lifetime": "2m",
             "client_renew_before": "60s", "warn_before": "20s"}  # fmt: skip
TRAFFIC_SECONDS = 370  # sk-bob's client runs this long (at least 6 minutes)
PERIOD = 0.2  # seconds between two requests
MAINTAIN_EVERY = 15
ROLLOVER_PLAN = [  # seconds into the soak: the step after that tick's maintain run
    (75, ("pki.rollover", "--ca", "client", "--start")),
    (140, ("pki.rollover", "--ca", "client", "--finish")),
    (190, ("pki.rollover", "--ca", "server", "--start")),
    (255, ("pki.rollover", "--ca", "server", "--finish")),
]
RESULT = Path(os.environ.get("MTLS_DEPLOY_SOAK_RESULT", ROOT / "bench" / "results" / "soak.json"))
USER_AGENT = "soak-client"

# sk-bob's client: resolves current/ once per request, loads <name>.pem (certificate and key in
# one file) and api-ca.crt from that version, a new connection each time; one line a request:
# time, HTTP code (or ERR and why), the server serial it saw, its own serial, the version.
CLIENT = r"""
import os, socket, ssl, sys, time
host, port, server_name, name = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
seconds, period = float(sys.argv[5]), float(sys.argv[6])
folder = os.path.expanduser("~/.mtls/api")
end = time.time() + seconds
for _ in range(int(seconds / period) + 1):
    started = time.time()
    if started > end:
        break
    line = ""
    try:
        version = os.path.realpath(os.path.join(folder, "current"))
        context = ssl.create_default_context(cafile=os.path.join(version, "api-ca.crt"))
        pem = os.path.join(version, name + ".pem")
        context.load_cert_chain(pem)
        mine = ssl._ssl._test_decode_cert(pem)["serialNumber"]
        with socket.create_connection((host, port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=server_name) as tls:
                theirs = tls.getpeercert()["serialNumber"]
                tls.sendall(("GET /whoami HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\n"
                             "Connection: close\r\n\r\n" % (server_name, "USER_AGENT")).encode())
                answer = b""
                while True:
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
        code = answer.split(b" ", 2)[1].decode()
        line = "%.3f %s %s %s %s" % (started, code, theirs, mine, os.path.basename(version))
    except Exception as error:
        line = "%.3f ERR %s" % (started, repr(error).replace("\n", " "))
    print(line, flush=True)
    time.sleep(max(0.0, started + period - time.time()))
""".replace("USER_AGENT", USER_AGENT)


def write_world_inventory(folder: Path) -> Path:
    """sk-api in group api, sk-bob in group consumers, the compressed lifetimes."""
    return write_api_consumer_inventory(folder, API, CONSUMER, CONSUMER_PORT, LIFETIMES)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The world provisioned, sk-bob's bundle delivered; a 0600 passphrase file; the hosts
    stopped afterwards. Yields the base directory."""
    base = tmp_path_factory.mktemp("soak-world")
    folder = write_world_inventory(base / "inventory")
    secret = base / "ca-passphrase"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    with pki_environment(base, PASSPHRASE), pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTLS_DEPLOY_INVENTORY", str(folder))
        PkiStore(settings=PkiSettings.from_values(LIFETIMES)).init(name="Soak API")
        hosts = lab.hosts_from_inventory(inventory.load(folder).select())
        lab.reset(hosts)
        try:
            provision_cleanly(folder, API.name)
            inv("issue-client", "--name", CONSUMER)
            yield base
        finally:
            lab.down(hosts)


# --- the control machine's side: maintain every 15 s, the rollovers between -----------------


def run_inv(world: Path, *args: str) -> dict:
    """One ``inv`` run as cron runs it (passphrase from the 0600 file only): its times, exit
    status and output, kept for the report."""
    env = {k: v for k, v in os.environ.items() if k != "MTLS_DEPLOY_CA_PASSPHRASE"}
    env["MTLS_DEPLOY_CA_PASSPHRASE_FILE"] = str(world / "ca-passphrase")
    env["MTLS_DEPLOY_INVENTORY"] = str(world / "inventory")
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    return {"command": " ".join(args), "started": started, "ended": time.time(),
            "exit": done.returncode, "output": done.stdout + done.stderr}  # fmt: skip


def drive(world: Path, seconds: float, plan: list) -> list[dict]:
    """``inv maintain`` every MAINTAIN_EVERY seconds for ``seconds``; each rollover step of
    ``plan`` right after the first maintain run at or past its time."""
    start, runs, pending = time.monotonic(), [], list(plan)
    for tick in range(int(seconds // MAINTAIN_EVERY) + 1):
        runs.append(run_inv(world, "maintain"))
        while pending and time.monotonic() - start >= pending[0][0]:
            runs.append(run_inv(world, *pending.pop(0)[1]))
        time.sleep(max(0.0, start + (tick + 1) * MAINTAIN_EVERY - time.monotonic()))
        if time.monotonic() - start >= seconds:
            break
    runs += [run_inv(world, *step) for _, step in pending]  # late: run them anyway
    return runs


# --- sk-bob's side ----------------------------------------------------------------------------


def client_on_consumer(world: Path, seconds: float, into: list) -> threading.Thread:
    """sk-bob's client running over SSH, as sk-bob's login user; its log lines land in ``into``
    when it stops by itself."""
    command = (f"python3 - 127.0.0.1 {API.https_port} {API.server_name} {CONSUMER} "
               f"{seconds} {PERIOD} <<'EOF'\n{CLIENT}\nEOF")  # fmt: skip

    def run():
        try:
            into.extend(run_on(world / "inventory", CONSUMER, command).splitlines())
        except Exception as error:  # the assertion on the figures shows it
            into.append(f"{time.time():.3f} ERR the client did not run: {error!r}")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def parse(lines: list[str]) -> list[dict]:
    """The client's lines as requests: time, code, server serial, client serial."""
    requests = []
    for line in lines:
        at, code, *fields = line.split()
        fields = fields if code != "ERR" else []
        requests.append({"at": float(at), "code": code, "line": line,
                         "server": fields[0] if fields else None,
                         "client": fields[1] if len(fields) > 1 else None})  # fmt: skip
    return requests


def changes(values: list) -> int:
    """How many times a sequence changes value: [a, a, b, b, c] -> 2."""
    seen = [v for v in values if v]
    return sum(1 for before, after in itertools.pairwise(seen) if before != after)


def client_serials_in_access_log(world: Path) -> list[str]:
    """The client serials nginx logged for the soak client's requests, in order."""
    log = run_on(world / "inventory", API.name, "cat /var/log/nginx/api.access.log", sudo=True)
    return [m.group(1) for line in log.splitlines() if f'ua="{USER_AGENT}"' in line
            for m in [re.search(r" serial=(\S+) ", line)] if m]  # fmt: skip


def in_recaps(runs: list[dict], pattern: str) -> int:
    """How many lines of maintain's recaps match ``pattern``."""
    return sum(len(re.findall(pattern, r["output"], re.M))
               for r in runs if r["command"] == "maintain")  # fmt: skip


def around(failure: dict, runs: list[dict], margin: float = 20) -> str:
    """What the control machine ran within ``margin`` seconds of a failed request."""
    near = [r for r in runs if r["started"] - margin <= failure["at"] <= r["ended"] + margin]
    return "\n".join(f"--- {r['command']} {stamp(r['started'])}..{stamp(r['ended'])} "
                     f"exit {r['exit']}\n{r['output']}" for r in near)  # fmt: skip


def not_ok(runs: list[dict]) -> list[str]:
    """The maintain runs that did not exit 0: when, and the start of their recap."""
    return [f"{stamp(r['started'])} exit {r['exit']}: {r['output'][:300]}"
            for r in runs if r["command"] == "maintain" and r["exit"]]  # fmt: skip


def stamp(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%H:%M:%S.%f")[:-3]


def machine() -> dict:
    return {"nproc": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}


def write_figures(figures: dict) -> None:
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(figures, indent=2) + "\n")


def test_nobody_is_locked_out_over_compressed_time(world):
    first: list[str] = []
    client_on_consumer(world, 1, first).join()  # fails fast when the client cannot even start
    assert first and all(" 200 " in line for line in first), first
    lines: list[str] = []
    started = time.time()
    client = client_on_consumer(world, TRAFFIC_SECONDS, lines)
    time.sleep(1)  # the client's first requests come before the first maintain run
    runs = drive(world, TRAFFIC_SECONDS, ROLLOVER_PLAN)
    client.join(timeout=TRAFFIC_SECONDS + 60)
    final = run_inv(world, "maintain")
    status = run_inv(world, "status")
    runs += [final, status]
    (world / "soak-runs.json").write_text(json.dumps(runs, indent=1))  # all of it, to debug
    (world / "soak-client.log").write_text("\n".join(lines) + "\n")
    requests = parse(lines)
    failed = [r for r in requests if r["code"] != "200"]
    access_serials = client_serials_in_access_log(world)
    figures = {
        "requests": len(requests),
        "failed": len(failed),
        "duration_s": round(requests[-1]["at"] - requests[0]["at"], 1) if requests else 0,
        "server_certificate_changes_seen_by_client": changes([r["server"] for r in requests]),
        "client_certificate_changes_in_access_log": changes(access_serials),
        "crl_resignings_by_maintain": in_recaps(runs, r"^changed +crl\.pem: re-signed"),
        "server_renewals_by_maintain": in_recaps(
            runs, rf"^changed +host {API.name}: server certificate (renewed|issued)"
        ),
        "client_renewals_by_maintain": in_recaps(runs, rf"^changed +client {CONSUMER}: renewed"),
        "maintain_runs": sum(1 for r in runs if r["command"] == "maintain"),
        "maintain_not_ok": not_ok(runs),
        "rollover_steps": {r["command"]: r["exit"] for r in runs if "rollover" in r["command"]},
        "status_exit": status["exit"],
        "lifetimes": LIFETIMES,
        "maintain_every_s": MAINTAIN_EVERY,
        "request_period_s": PERIOD,
        "test_wall_s": round(time.time() - started, 1),
        "machine": machine(),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_figures(figures)
    print(json.dumps(figures, indent=2))
    report = "\n".join(f"{f['line']}\n{around(f, runs)}" for f in failed[:5])
    assert requests and not failed, f"{len(failed)} failed requests, the first ones:\n{report}"
    assert figures["duration_s"] >= 360, figures
    assert figures["server_certificate_changes_seen_by_client"] >= 3, figures
    assert figures["client_certificate_changes_in_access_log"] >= 3, figures
    assert figures["crl_resignings_by_maintain"] >= 3, figures
    assert all(code == 0 for code in figures["rollover_steps"].values()), around_all(runs)
    assert not figures["maintain_not_ok"], figures["maintain_not_ok"]  # the timer's job stays OK
    assert status["exit"] == 0, status["output"] + "\n" + final["output"]


def around_all(runs: list[dict]) -> str:
    return "\n".join(f"--- {r['command']} exit {r['exit']}\n{r['output']}" for r in runs
                     if "rollover" in r["command"])  # fmt: skip
