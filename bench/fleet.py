"""fleet: a no-op ``inv provision`` of N = 1, 2, 4, 8, 16, 32 lab hosts in one process, hosts in
parallel, each N beside its CPU floor.

``--host fleet1,...,fleetN`` picks the first N hosts of the fleet; N values are interleaved
round by round (5 rounds; 1 with ``--quick``, which also stops at N = 2) so that the noise of a
shared machine falls on every N alike. time(N) / time(1) is the ratio of the medians. The same
8 hosts with ``--serial 2`` (4 batches of 2) are measured in the same rounds.

The floor: every extra host costs CPU on its side (sshd, sudo, the shell and what it runs) and
on ours (a handshake, the facts parsed, a plan), and this machine has ``cores`` of it, so no
scheduler can do better than floor(N) = wall(1) + (N - 1) x (host CPU + control CPU of one
host) / cores. Both are measured on one host: host CPU as the delta of utime + stime + cutime +
cstime (/proc/<pid>/stat) of every process under the host's systemd-nspawn across the run
(sshd reaps its sessions, so their CPU lands in its cutime); control CPU as the delta of
``getrusage(RUSAGE_SELF)`` across that host's ``provision_host`` in this process, warm (imports,
start-up and the inventory are paid once per run: they are in wall(1), not per host). Beside it, control CPU per extra host as the child
processes' own rusage: (CPU(N) - CPU(1)) / (N - 1). Goals: at most 15 % above the floor at the
largest N, control CPU per extra host at most 0.03 s, time(8) / time(1) at most 1.5.
"""

import os
import resource

from .common import goal, print_goals, print_table, spread
from .world import FLEET, lab_cpu_seconds, provision_report

NAME = "fleet"
GOAL_RATIO = 1.5
GOAL_ABOVE_FLOOR_PCT = 15.0
GOAL_CONTROL_CPU_PER_HOST = 0.03
SERIAL_HOSTS = 8


def sizes(quick: bool) -> list[int]:
    return [1, 2] if quick else [1, 2, 4, 8, 16, 32]


def hosts_needed(quick: bool) -> list[str]:
    return FLEET[: max(sizes(quick))]


def run(world, quick: bool) -> dict:
    """Measure; print the table; return the report for bench/results/fleet.json."""
    ns, rounds = sizes(quick), 1 if quick else 5
    serial_hosts = min(SERIAL_HOSTS, max(ns))
    serial = 2 if serial_hosts >= 4 else 1
    world.provision(FLEET[: max(ns)])  # converge: every measured run must be a no-op
    cases = [(n, None) for n in ns] + [(serial_hosts, serial)]
    runs = {case: [] for case in cases}
    control = []
    for _ in range(rounds):
        for n, batch in cases:
            runs[(n, batch)].append(one_run(world, n, batch))
        control.append(control_cpu_one_host())
    figures = summarise(runs, ns, (serial_hosts, serial))
    figures["floor"] = floor_figures(figures, runs, ns, control)
    goals = goals_of(figures, ns)
    show(figures, goals)
    return {"quick": quick, "rounds": rounds, "figures": figures, "goals": goals,
            "runs": {f"{n}" + (f"-serial{b}" if b else ""): r for (n, b), r in runs.items()}}  # fmt: skip


def one_run(world, n: int, serial: int | None) -> dict:
    hosts = FLEET[:n]
    extra = ["--serial", str(serial)] if serial else []
    before = lab_cpu_seconds(hosts)
    process = world.provision(hosts, *extra)
    host_cpu = lab_cpu_seconds(hosts) - before
    report = provision_report(process)
    changed = sum(report["hosts"][h]["recap"]["changed"] for h in hosts)
    if changed:
        raise RuntimeError(f"fleet no-op run changed {changed} steps on {hosts}")
    return {"wall_s": round(process.wall_s, 4), "cpu_s": round(process.cpu_s, 4),
            "hosts_cpu_s": round(host_cpu, 3), "max_rss_mb": round(process.max_rss_mb, 1)}  # fmt: skip


def control_cpu_one_host() -> float:
    """CPU seconds this process spends on one host's no-op provision (``provision_host``: its
    prepare step, connection, facts, plan; the world's inventory is in the environment), warm:
    a first run pays the imports and the inventory, the second is measured. What a run pays
    once whatever the number of hosts (start-up, the inventory) is in wall(1), not here."""
    from mtls_deploy import inventory
    from mtls_deploy.provision import RunOptions, provision_host

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread: paramiko's too
        return usage.ru_utime + usage.ru_stime

    host = inventory.load().host(FLEET[0])
    provision_host(host, RunOptions())
    before = cpu()
    result = provision_host(host, RunOptions())
    spent = cpu() - before
    if result.failed or result.count("changed"):
        raise RuntimeError(f"the in-process no-op run of {FLEET[0]} failed or changed something")
    return round(spent, 4)


def cores() -> int:
    return len(os.sched_getaffinity(0))


def floor_figures(figures: dict, runs: dict, ns: list[int], control: list[float]) -> dict:
    """floor(N) for each N from the one-host run, each N's wall beside it (``above_floor_pct``),
    and the control CPU per extra host from the child processes' own rusage."""
    one = figures["parallel"]["1"]
    wall_1, host_1 = one["wall_s"]["median"], one["hosts_cpu_s"]["median"]
    control_1 = spread(control)["median"]
    per_host = (host_1 + control_1) / cores()
    for n in ns:
        row = figures["parallel"][str(n)]
        row["floor_s"] = round(wall_1 + (n - 1) * per_host, 4)
        row["above_floor_pct"] = round(100 * (row["wall_s"]["median"] / row["floor_s"] - 1), 1)
    n_max = max(ns)
    cpu_1 = spread(r["cpu_s"] for r in runs[(1, None)])["median"]
    top = figures["parallel"][str(n_max)]
    control_extra = round((top["cpu_s"]["median"] - cpu_1) / max(n_max - 1, 1), 4)
    host_extra = round((top["hosts_cpu_s"]["median"] - host_1) / max(n_max - 1, 1), 4)
    # The same floor from what each extra host cost in the largest run (a stricter check: the
    # one-host run's host CPU holds a little that does not grow with N).
    marginal = round(wall_1 + (n_max - 1) * (host_extra + control_extra) / cores(), 4)
    return {
        "formula": "floor(N) = wall(1) + (N - 1) x (host CPU + control CPU of one host) / cores",
        "wall_1_s": wall_1, "host_cpu_1_s": host_1, "control_cpu_1_s": control_1,
        "control_cpu_1_runs": control, "cores": cores(),
        "control_cpu_per_extra_host_s": control_extra, "host_cpu_per_extra_host_s": host_extra,
        f"floor_{n_max}_from_extra_hosts_s": marginal,
        f"above_that_floor_{n_max}_pct": round(100 * (top["wall_s"]["median"] / marginal - 1), 1),
        "how": "host CPU: utime+stime+cutime+cstime deltas (/proc/<pid>/stat) of every process "
        "under the hosts' systemd-nspawn; control CPU of one host: getrusage(RUSAGE_SELF) across "
        "a warm in-process provision_host of fleet1; per extra host: the inv processes' own rusage "
        "(os.wait4), (CPU(N) - CPU(1)) / (N - 1)",
    }  # fmt: skip


def goals_of(figures: dict, ns: list[int]) -> list[dict]:
    n_max = str(max(ns))
    top = figures["parallel"][n_max]
    goals = [
        goal(f"% above the floor at N={n_max}", top["above_floor_pct"], GOAL_ABOVE_FLOOR_PCT),
        goal("control CPU s per extra host", figures["floor"]["control_cpu_per_extra_host_s"],
             GOAL_CONTROL_CPU_PER_HOST),
    ]  # fmt: skip
    n_ratio = str(min(max(ns), SERIAL_HOSTS))
    goals.append(
        goal(f"time({n_ratio}) / time(1)", figures["parallel"][n_ratio]["ratio"], GOAL_RATIO)
    )
    return goals


def summarise(runs: dict, ns: list[int], serial_case: tuple[int, int]) -> dict:
    base = spread(r["wall_s"] for r in runs[(1, None)])["median"]

    def row(case):
        wall = spread(r["wall_s"] for r in runs[case])
        cpu = spread(r["cpu_s"] for r in runs[case])
        hosts_cpu = spread(r["hosts_cpu_s"] for r in runs[case])
        busy = (cpu["median"] + hosts_cpu["median"]) / wall["median"]
        return {"wall_s": wall, "cpu_s": cpu, "hosts_cpu_s": hosts_cpu,
                "ratio": round(wall["median"] / base, 3),
                "cpu_per_wall": round(cpu["median"] / wall["median"], 3),
                # cores kept busy by inv and the hosts together (this machine has os.cpu_count())
                "cores_busy": round(busy, 2),
                "max_rss_mb": spread(r["max_rss_mb"] for r in runs[case])["median"]}  # fmt: skip

    hosts, batch = serial_case
    return {
        "parallel": {str(n): row((n, None)) for n in ns},
        "serial": {"hosts": hosts, "batch": batch, **row(serial_case)},
    }


def show(f: dict, goals: list[dict]) -> None:
    rows = [
        [f"N={n} parallel", r["wall_s"]["median"], r["wall_s"]["min"], r["wall_s"]["max"],
         r["ratio"], r["floor_s"], f"{r['above_floor_pct']:+.1f} %", r["cpu_s"]["median"],
         r["hosts_cpu_s"]["median"], r["cores_busy"]]
        for n, r in f["parallel"].items()
    ]  # fmt: skip
    s = f["serial"]
    rows.append([f"N={s['hosts']} --serial {s['batch']}", s["wall_s"]["median"], s["wall_s"]["min"],
                 s["wall_s"]["max"], s["ratio"], "", "", s["cpu_s"]["median"],
                 s["hosts_cpu_s"]["median"], s["cores_busy"]])  # fmt: skip
    print_table(f"{NAME}: no-op `inv provision` of N hosts in one process",
                ["", "median s", "min s", "max s", "/ time(1)", "floor s", "vs floor",
                 "inv CPU s", "hosts CPU s", "cores busy"], rows)  # fmt: skip
    fl = f["floor"]
    print(f"floor: wall(1) {fl['wall_1_s']} s + (N - 1) x (host {fl['host_cpu_1_s']} + control "
          f"{fl['control_cpu_1_s']} CPU s) / {fl['cores']} cores; control CPU per extra host "
          f"{fl['control_cpu_per_extra_host_s']} s, host CPU per extra host "
          f"{fl['host_cpu_per_extra_host_s']} s")  # fmt: skip
    print_goals(goals)
