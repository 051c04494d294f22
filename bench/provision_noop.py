"""provision-noop: how long a re-run that changes nothing takes, as the user runs it.

After one converging run, 10 whole ``inv provision --host fleet1 --json`` processes (3 with
``--quick``): median, min and max wall clock, CPU time and peak memory of the process, and the
SSH channels each run opened (``ssh_channels`` in the JSON). Then a few in-process runs of
``provision_host`` under ``SshTrace`` split a run into Python start-up and imports, the SSH
connection and each round trip, and count the network turns (the times the client waited
for the host). Goal: median at most 1.0 s; stretch 0.5 s; and the architecture issue's target of
at most 0.45 s, reported beside them (start-up must stay cheap while the code grows).
"""

import time

from mtls_deploy.provision import RunOptions, provision_host

from .common import goal, print_goals, print_table, spread
from .sshtrace import SshTrace
from .world import lab_cpu_seconds, provision_report

NAME = "provision-noop"
HOST = "fleet1"
HOSTS = [HOST]
GOAL_S, STRETCH_S = 1.0, 0.5
ARCHITECTURE_TARGET_S = 0.45  # issue "Architecture": imports only what a task uses


def run(world, quick: bool) -> dict:
    """Measure; print the table; return the report for bench/results/provision-noop.json."""
    world.provision(HOSTS)  # converge first: every measured run must be a no-op
    runs = [whole_run(world) for _ in range(3 if quick else 10)]
    traces = [traced_run(world) for _ in range(2 if quick else 5)]
    figures = summarise(runs, traces)
    median = figures["wall_s"]["median"]
    goals = [
        goal("median wall clock, s", median, GOAL_S, stretch=STRETCH_S),
        goal("median wall clock, s (architecture target)", median, ARCHITECTURE_TARGET_S),
    ]
    show(figures, goals)
    return {"quick": quick, "host": HOST, "figures": figures, "goals": goals,
            "runs": runs, "traces": traces}  # fmt: skip


def whole_run(world) -> dict:
    """One ``inv provision`` process; it must change nothing."""
    before = lab_cpu_seconds(HOSTS)
    process = world.provision(HOSTS)
    host_cpu = lab_cpu_seconds(HOSTS) - before
    data = provision_report(process)["hosts"][HOST]
    if data["recap"]["changed"]:
        raise RuntimeError(f"{HOST}: a no-op run changed {data['recap']['changed']} steps")
    return {"wall_s": round(process.wall_s, 4), "cpu_s": round(process.cpu_s, 4),
            "host_cpu_s": round(host_cpu, 3), "max_rss_mb": round(process.max_rss_mb, 1),
            "ssh_channels": data["ssh_channels"],
            "steps": sum(data["recap"].values())}  # fmt: skip


def traced_run(world) -> dict:
    """``provision_host`` in this process, traced: where the time of a no-op goes on SSH."""
    host = world.host(HOST)
    start = time.perf_counter()
    with SshTrace() as trace:
        result = provision_host(host, RunOptions())
    total = time.perf_counter() - start
    if result.failed or result.count("changed"):
        raise RuntimeError(f"{HOST}: traced run was not a clean no-op: {result.recap()}")
    return {"in_process_s": round(total, 4), **trace.summary()}


def summarise(runs: list[dict], traces: list[dict]) -> dict:
    wall = spread(r["wall_s"] for r in runs)
    in_process = spread(t["in_process_s"] for t in traces)
    connect = spread(t["connect_s"] for t in traces)
    channel_s = [
        spread(t["channels"][i]["seconds"] for t in traces)["median"]
        for i in range(len(traces[0]["channels"]))
    ]
    return {
        "wall_s": wall,
        "cpu_s": spread(r["cpu_s"] for r in runs),
        "host_cpu_s": spread(r["host_cpu_s"] for r in runs),
        "max_rss_mb": spread(r["max_rss_mb"] for r in runs),
        "ssh_channels": sorted({r["ssh_channels"] for r in runs}),
        "ssh_connections": max(t["connections"] for t in traces),
        "command_round_trips": len(traces[0]["channels"]),
        "network_turns": spread(t["turns"] for t in traces),
        "in_process_s": in_process,
        "connect_s": connect,
        "channel_s": channel_s,
        "channel_what": [c["what"] for c in traces[0]["channels"]],
        # what the whole process adds to provision_host(): interpreter, imports, inventory, exit
        "process_overhead_s": round(wall["median"] - in_process["median"], 4),
    }


def show(f: dict, goals: list[dict]) -> None:
    rows = [
        ["whole process, wall clock (s)", f["wall_s"]["median"], f["wall_s"]["min"], f["wall_s"]["max"]],
        ["whole process, CPU user+sys (s)", f["cpu_s"]["median"], f["cpu_s"]["min"], f["cpu_s"]["max"]],
        ["host side, CPU (sshd, sudo, sh) (s)", f["host_cpu_s"]["median"], f["host_cpu_s"]["min"], f["host_cpu_s"]["max"]],
        ["whole process, peak RSS (MB)", f["max_rss_mb"]["median"], f["max_rss_mb"]["min"], f["max_rss_mb"]["max"]],
        ["in process: provision_host() (s)", f["in_process_s"]["median"], f["in_process_s"]["min"], f["in_process_s"]["max"]],
        ["  SSH connect + auth (s)", f["connect_s"]["median"], f["connect_s"]["min"], f["connect_s"]["max"]],
        *[[f"  round trip {i + 1}: {what[:34]} (s)", s, None, None]
          for i, (what, s) in enumerate(zip(f["channel_what"], f["channel_s"], strict=True))],
        ["network turns (client waited for host)", f["network_turns"]["median"], f["network_turns"]["min"], f["network_turns"]["max"]],
    ]  # fmt: skip
    print_table(f"{NAME}: {f['wall_s']['n']} no-op runs of `inv provision --host {HOST}`",
                ["", "median", "min", "max"], rows)  # fmt: skip
    print(f"SSH per run: {f['ssh_connections']} connection, channels {f['ssh_channels']}, "
          f"{f['command_round_trips']} command round trips; process overhead "
          f"{f['process_overhead_s']:.3f} s (start-up, imports, inventory)")  # fmt: skip
    print_goals(goals)
