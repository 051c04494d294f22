"""deploy-under-load: what clients of an example app see while its release is switched (issue 12).

On each app host (apps-php, apps-py, apps-proxy; php only with ``--quick``), three clients
call ``GET /orders`` with the bench client's certificate, one connection each
(``bench/load.py``): ApacheBench with a connection per request, ``ab -k``, and a keep-alive
client that sends a request again once when its reused connection was closed before any byte
of the answer (as curl does). First ``BEFORE_S`` seconds with no switch; then again while
``inv deploy`` switches releases 3 times (1 with ``--quick``) and ``inv rollback`` once.
Reported per client and phase: requests, failed, non-2xx, p50/p99; whether nginx was reloaded
(its workers changed); how long the switches took. Goal: no failed and no non-2xx request
during the switches for ab and the keep-alive client (``ab -k`` too when nginx was not
reloaded: a reload closes idle keep-alive connections, and ab never sends a request again).
"""

import tempfile
import time
from pathlib import Path

from .common import goal, print_goals, print_table
from .load import Load, Target
from .world import APPS, https_port, server_name

NAME = "deploy-under-load"
BEFORE_S = 8
CLIENTS = ("ab", "ab -k", "keep-alive")
NGINX_WORKERS = "pgrep -P \"$(cat /run/nginx.pid)\" | sort | tr '\\n' ' '"


def hosts_needed(quick: bool) -> list[str]:
    return list(APPS)[:1] if quick else list(APPS)


def run(world, quick: bool) -> dict:
    """Measure; print the table; return the report for bench/results/deploy-under-load.json."""
    figures = {}
    with tempfile.TemporaryDirectory() as scratch:
        for host in hosts_needed(quick):
            figures[host] = measure(world, host, Path(scratch) / host, 1 if quick else 3, quick)
    goals = [
        goal(f"{host} {client}: failed + non-2xx during the switches", bad(f, client), 0)
        for host, f in figures.items()
        for client in CLIENTS
        if client != "ab -k" or not f["nginx_reloaded"]
    ]
    show(figures, goals)
    return {"quick": quick, "before_s": 2 if quick else BEFORE_S, "figures": figures,
            "goals": goals}  # fmt: skip


def measure(world, host: str, folder: Path, switches: int, quick: bool) -> dict:
    """The three clients on ``host``: before, then during ``switches`` deploys and a rollback."""
    target = Target("127.0.0.1", https_port(host), server_name(host), "/orders",
                    world.bundle.cert, world.bundle.key, world.bundle.server_ca)  # fmt: skip
    with Load(target, folder / "before") as before:
        time.sleep(2 if quick else BEFORE_S)
    workers = on_host(world, host, NGINX_WORKERS)
    with Load(target, folder / "during") as during:
        for number in range(switches):
            new_release(world, host, number)
            world.inv("deploy", "--host", host).check()
        world.inv("rollback", "--host", host).check()
    return {
        "backend": APPS[host][2],
        "switches": switches,
        "switch_seconds": round(during.ended - during.started, 2),
        "nginx_reloaded": on_host(world, host, NGINX_WORKERS) != workers,
        "before": before.figures,
        "during": during.figures,
    }


def new_release(world, host: str, number: int) -> None:
    """Change the app's tree, so that the next deploy uploads and switches to a new release."""
    stamp = f"{time.time_ns()}-{number}"
    (world.app_dir(host) / "RELEASE.txt").write_text(f"deploy-under-load {stamp}\n")


def on_host(world, host: str, command: str) -> str:
    with world.remote(host) as remote:
        return remote.run(command, sudo=True, check=True).stdout.strip()


def bad(figures: dict, client: str) -> int:
    during = figures["during"][client]
    return during["failed"] + during["non_2xx"]


def show(figures: dict, goals: list) -> None:
    rows = []
    for host, f in figures.items():
        for client in CLIENTS:
            b, d = f["before"][client], f["during"][client]
            rows.append([f"{host} {client}", b["complete"], b["failed"] + b["non_2xx"],
                         b["p99_ms"], d["complete"], d["failed"], d["non_2xx"], d["p99_ms"]])  # fmt: skip
    print_table(f"{NAME}: GET /orders, one connection per client; before vs during "
                f"{next(iter(figures.values()))['switches']} deploys + 1 rollback",
                ["", "before: requests", "bad", "p99 ms", "during: requests", "failed",
                 "non-2xx", "p99 ms"], rows)  # fmt: skip
    for host, f in figures.items():
        reloaded = "reloaded" if f["nginx_reloaded"] else "not reloaded"
        print(f"{host}: switches took {f['switch_seconds']} s; nginx {reloaded}; keep-alive "
              f"client sent {f['during']['keep-alive']['retried']} requests again")  # fmt: skip
    print_goals(goals)
