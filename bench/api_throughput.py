"""api-throughput: requests per second and p50/p99 latency on keep-alive mTLS connections.

Three targets on the same TLS setup (same nginx site, same client-certificate check, same
access log): ``/whoami`` through PHP-FPM (fleet1), ``/whoami`` through uWSGI (fleet2), and
``/ceiling``, nginx answering 200 by itself (the ceiling, on fleet1). The load tool is
ApacheBench (``ab`` from Debian's apache2-utils): it sends a client certificate (``-E``),
keeps connections alive (``-k``), and stops at a request count or a time limit, whichever
comes first. h2load and wrk have no client-certificate option.

Each target runs at 1 connection (latency) and at 8 (throughput) for ``-t`` seconds (15; 2
with ``--quick``), after a short warm-up. Beside each figure: the CPU the host's nginx and
backend used per request, and ab's own CPU share (ab is one thread: near 1.0 means the client
is the limit, which is what caps the ceiling row on a 2-core machine that runs both sides).
After the runs, the resident memory of nginx plus the backend on each host (the sum of their
processes' RSS, and PSS, which counts shared pages once) must fit the tutorial's 256 MB VPS
with room to spare: the goal is at most half of it, 128 MB.

The example apps (issue 12) follow, ``GET /orders`` of each at 8 connections on its own host
(bench/world.py: apps-php, apps-py, apps-proxy; only php-orders with ``--quick``), with their
server CPU and memory: nginx + backend RSS at most 96 MB with each example (the issue's goal),
and beside it the same 96 MB for their PSS (ours): RSS counts every page a process shares with
the others once per process (PHP-FPM's workers share their code and opcache, uWSGI's its
interpreter), so the sum of RSS overstates what the VPS gives up; PSS splits each shared page
among its sharers and sums to the memory really used. And the built-in
``/whoami`` front controllers must reach at least 20 % of the ceiling's req/s measured in the
same run, at 8 connections (the ratios are in the report).

The rows at 8 connections are measured in turns (``ROUNDS`` of them, a third of ``-t`` each):
ceiling, PHP, PHP's floor, Python, and again. A machine whose speed drifts (a VM beside noisy
neighbours) then moves every target alike, and each ratio is the median of the turns' ratios
rather than one run of each, a minute apart. PHP's floor is the same nginx location and the
same pool running a script that only answers ``{}`` (``/floor``, fleet1): how fast PHP-FPM
itself goes through this nginx on this machine, so that the front controller's own cost is
its distance from the floor (ours: /whoami at least 85 % of the floor's req/s).
"""

import os
import re
import statistics
import tempfile
from pathlib import Path

from .common import goal, print_goals, print_table, run_process
from .world import (
    Bundle,
    host_processes,
    https_port,
    lab_cpu_seconds,
    memory_kb,
    server_name,
)

NAME = "api-throughput"
TARGETS = {  # name: (host, path, the host's server processes)
    "php /whoami": ("fleet1", "/whoami", ("nginx", "php-fpm")),
    "python /whoami": ("fleet2", "/whoami", ("nginx", "uwsgi")),
    "nginx return 200 (ceiling)": ("fleet1", "/ceiling", ("nginx",)),
}
CEILING = "nginx return 200 (ceiling)"
FLOOR = {"php bare script (floor)": ("fleet1", "/floor", ("nginx", "php-fpm"))}  # c=8 only
FLOOR_SCRIPT = "/srv/api-php/floor.php"  # beside fleet1's front controller (the site's /floor)
FLOOR_PHP = b"<?php\nheader('Content-Type: application/json');\nheader('Content-Length: 3');\necho \"{}\\n\";\n"
EXAMPLES = {  # name: (host, path, the host's server processes); at 8 connections
    "php-orders GET /orders": ("apps-php", "/orders", ("nginx", "php-fpm")),
    "flask-orders GET /orders": ("apps-py", "/orders", ("nginx", "uwsgi")),
    "fastapi-orders GET /orders": ("apps-proxy", "/orders", ("nginx", "uvicorn")),
}
HOSTS = ["fleet1", "fleet2"]
BACKENDS = {"fleet1": ("nginx", "php-fpm"), "fleet2": ("nginx", "uwsgi"),
            **{host: comms for host, _, comms in EXAMPLES.values()}}  # fmt: skip
CONCURRENCY = (1, 8)
MAX_REQUESTS = 200_000
VPS_MB, GOAL_MB, EXAMPLE_GOAL_MB = 256, 128, 96
CEILING_SHARE = 0.20  # /whoami req/s over nginx's own `return 200`, at 8 connections
FLOOR_SHARE = 0.85  # ours: PHP's /whoami req/s over the bare script's, at 8 connections
ROUNDS = 3  # turns of the rows at 8 connections


def examples(quick: bool) -> dict:
    return dict(list(EXAMPLES.items())[:1]) if quick else EXAMPLES


def hosts_needed(quick: bool) -> list[str]:
    return [*HOSTS, *(host for host, _, _ in examples(quick).values())]


def run(world, quick: bool) -> dict:
    """Measure; print the table; return the report for bench/results/api-throughput.json."""
    seconds, rounds = (2, 1) if quick else (15, ROUNDS)
    put_floor_script(world)
    in_turns = TARGETS | FLOOR
    with tempfile.TemporaryDirectory() as scratch:
        pem = client_pem(world.bundle, Path(scratch))
        for host, path, _ in [*in_turns.values(), *examples(quick).values()]:
            load(host, path, pem, 1, 1, Path(scratch))  # warm-up: workers spawned, caches filled
        figures = {
            f"{name} c=1": load(host, path, pem, 1, seconds, Path(scratch), comms)
            for name, (host, path, comms) in TARGETS.items()
        }
        turns = [
            {name: load(host, path, pem, 8, seconds // rounds, Path(scratch), comms)
             for name, (host, path, comms) in in_turns.items()}
            for _ in range(rounds)
        ]  # fmt: skip
        figures |= {f"{name} c=8": merged([turn[name] for turn in turns]) for name in in_turns}
        figures |= {
            f"{name} c=8": load(host, path, pem, 8, seconds, Path(scratch), comms)
            for name, (host, path, comms) in examples(quick).items()
        }
    memory = {host: resident(host, BACKENDS[host]) for host in hosts_needed(quick)}
    ratios = ceiling_ratios(turns)
    over_floor = median_ratio(turns, "php /whoami", *FLOOR)
    goals = memory_goals(memory) + [
        goal(f"{name} c=8 req/s over the ceiling's, same run", ratios[name], CEILING_SHARE, "higher")
        for name in ("php /whoami", "python /whoami")
    ] + [goal("php /whoami c=8 req/s over the bare PHP script's (ours)", over_floor, FLOOR_SHARE,
              "higher")]  # fmt: skip
    show(figures, memory, goals, seconds)
    return {"quick": quick, "seconds": seconds, "rounds": rounds, "tool": ab_version(),
            "figures": figures, "memory": memory, "ceiling_ratios": ratios,
            "php_whoami_over_floor": over_floor, "goals": goals}  # fmt: skip


def put_floor_script(world) -> None:
    """fleet1's ``/floor``: a PHP script that only answers ``{}``, beside the front controller."""
    with world.remote("fleet1") as remote:
        remote.run(f"cat > {FLOOR_SCRIPT}", sudo=True, stdin=FLOOR_PHP, check=True)


def merged(turns: list[dict]) -> dict:
    """One row from the turns of one target: counts and time summed, the rate over the whole
    time, p50 the turns' median, p99 their worst, CPU per request weighted by requests."""
    complete = sum(t["complete"] for t in turns)
    seconds = sum(t["seconds"] for t in turns)
    cpu = sum(t["server_cpu_ms_each"] * t["complete"] for t in turns)
    counts = {k: sum(t[k] for t in turns) for k in ("complete", "failed", "non_2xx", "keep_alive")}
    return {
        **turns[0], **counts, "turns": len(turns), "seconds": round(seconds, 3),
        "requests_per_s": round(complete / seconds, 2) if seconds else 0.0,
        "p50_ms": statistics.median(t["p50_ms"] for t in turns),
        "p99_ms": max(t["p99_ms"] for t in turns),
        "server_cpu_ms_each": round(cpu / complete, 4) if complete else 0.0,
        "ab_cpu_share": round(statistics.mean(t["ab_cpu_share"] for t in turns), 3),
    }  # fmt: skip


def ceiling_ratios(turns: list[dict]) -> dict:
    """``{"php /whoami": 0.17, ...}``: each PHP and Python target's req/s at 8 connections over
    nginx's own ``return 200`` in the same turn, the median over the turns."""
    return {
        name: median_ratio(turns, name, CEILING) for name in [*TARGETS, *FLOOR] if name != CEILING
    }


def median_ratio(turns: list[dict], name: str, base: str) -> float:
    """The median over the turns of ``name``'s req/s over ``base``'s."""
    return round(statistics.median(t[name]["requests_per_s"] / t[base]["requests_per_s"]
                                   for t in turns), 3)  # fmt: skip


def memory_goals(memory: dict) -> list:
    """128 MB for the built-in front controllers' hosts, 96 MB for each example's."""
    built_in = max(memory[h]["rss_mb"] for h in HOSTS)
    rows = [goal("nginx + backend RSS after the run, MB (256 MB VPS)", built_in, GOAL_MB)]
    for name, (host, _, _) in EXAMPLES.items():
        if host in memory:
            rows += [
                goal(f"nginx + backend RSS with {name.split()[0]}, MB (the issue's)",
                     memory[host]["rss_mb"], EXAMPLE_GOAL_MB),
                goal(f"nginx + backend PSS with {name.split()[0]}, MB (ours)",
                     memory[host]["pss_mb"], EXAMPLE_GOAL_MB),
            ]  # fmt: skip
    return rows


def client_pem(bundle: Bundle, folder: Path) -> Path:
    """ab's ``-E`` wants the certificate and its key in one PEM file."""
    path = folder / "client.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(bundle.cert.read_bytes() + bundle.key.read_bytes())
    return path


def load(host, path, pem, concurrency, seconds, scratch: Path, comms=("nginx",)) -> dict:
    """One ab run against ``host``; its figures and what it cost the host's servers."""
    csv = scratch / "percentiles.csv"
    argv = ["ab", "-q", "-k", "-l", "-t", seconds, "-n", MAX_REQUESTS if seconds > 1 else 200,
            "-c", concurrency, "-s", 10, "-E", pem, "-e", csv, "-H", f"Host: {server_name(host)}",
            f"https://127.0.0.1:{https_port(host)}{path}"]  # fmt: skip
    before = lab_cpu_seconds([host], comms)
    done = run_process(argv, timeout=seconds + 60).check()
    server_cpu = lab_cpu_seconds([host], comms) - before
    figures = parse_ab(done.stdout)
    if figures["complete"] == 0 or figures["failed"] or figures["non_2xx"]:
        raise RuntimeError(f"ab {host}{path}: {figures}: {done.stdout[-400:]}")
    latency = parse_percentiles(csv.read_text())
    return {
        "host": host, "path": path, "concurrency": concurrency, **figures, **latency,
        "server_cpu_ms_each": round(1000 * server_cpu / figures["complete"], 4),
        "ab_cpu_share": round(done.cpu_s / done.wall_s, 3),
    }  # fmt: skip


def parse_ab(text: str) -> dict:
    """The counts and the rate from ab's report."""

    def number(label: str, default=0.0) -> float:
        match = re.search(rf"^{label}:\s+([\d.]+)", text, re.M)
        return float(match.group(1)) if match else default

    protocol = re.search(r"^SSL/TLS Protocol:\s+(\S+)", text, re.M)
    return {
        "complete": int(number("Complete requests")),
        "failed": int(number("Failed requests")),
        "non_2xx": int(number("Non-2xx responses")),
        "keep_alive": int(number("Keep-Alive requests")),
        "seconds": number("Time taken for tests"),
        "requests_per_s": number("Requests per second"),
        "tls": protocol.group(1) if protocol else None,
    }


def parse_percentiles(csv: str) -> dict:
    """p50 and p99 (ms) from ab's ``-e`` file: ``Percentage served,Time in ms``."""
    rows = dict(line.split(",") for line in csv.strip().splitlines()[1:])
    return {"p50_ms": float(rows["50"]), "p99_ms": float(rows["99"])}


def resident(host: str, comms: tuple[str, ...]) -> dict:
    """RSS and PSS of nginx and the backend on ``host``, summed over their processes."""
    procs = [p for p in host_processes([host]) if p.comm.startswith(comms)]
    sizes = [memory_kb(p.pid) for p in procs]
    per_service = {}
    for proc, (rss, _) in zip(procs, sizes, strict=True):
        name = next(c for c in comms if proc.comm.startswith(c))
        per_service[name] = per_service.get(name, 0) + rss
    return {
        "processes": len(procs),
        "rss_mb": round(sum(r for r, _ in sizes) / 1024, 1),
        "pss_mb": round(sum(p for _, p in sizes) / 1024, 1),
        "rss_mb_by_service": {k: round(v / 1024, 1) for k, v in per_service.items()},
    }


def ab_version() -> str:
    done = run_process(["ab", "-V"])
    return done.stdout.splitlines()[0] if done.stdout else "ab"


def show(figures: dict, memory: dict, goals: list, seconds: int) -> None:
    rows = [
        [name, f["requests_per_s"], f["p50_ms"], f["p99_ms"], f["server_cpu_ms_each"],
         f["ab_cpu_share"], f["complete"]]
        for name, f in figures.items()
    ]  # fmt: skip
    print_table(f"{NAME}: ab -k, keep-alive mTLS, {seconds} s a row",
                ["", "req/s", "p50 ms", "p99 ms", "server CPU ms", "ab CPU", "requests"], rows)  # fmt: skip
    for host, m in memory.items():
        parts = ", ".join(f"{k} {v} MB" for k, v in m["rss_mb_by_service"].items())
        print(f"{host}: RSS {m['rss_mb']} MB ({parts}; {m['processes']} processes), "
              f"PSS {m['pss_mb']} MB, of a {VPS_MB} MB VPS")  # fmt: skip
    print_goals(goals)
