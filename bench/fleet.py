"""fleet: a no-op ``inv provision`` of N = 1, 2, 4, 8 lab hosts in one process, hosts in parallel.

``--host fleet1,...,fleetN`` picks the first N hosts of the fleet; N values are interleaved
round by round (5 rounds; 1 with ``--quick``, which also stops at N = 2) so that the noise of a
shared machine falls on every N alike. time(N) / time(1) is the ratio of the medians. The same
8 hosts with ``--serial 2`` (4 batches of 2) are measured in the same rounds. The CPU time of
each process beside its wall clock tells whether a run waits (on the hosts, on the network) or
computes: at most one core of Python holds the GIL. Goal: time(8) / time(1) at most 1.5.
"""

from .common import goal, print_goals, print_table, spread
from .world import FLEET, lab_cpu_seconds, provision_report

NAME = "fleet"
GOAL_RATIO = 1.5


def sizes(quick: bool) -> list[int]:
    return [1, 2] if quick else [1, 2, 4, 8]


def hosts_needed(quick: bool) -> list[str]:
    return FLEET[: max(sizes(quick))]


def run(world, quick: bool) -> dict:
    """Measure; print the table; return the report for bench/results/fleet.json."""
    ns, rounds = sizes(quick), 1 if quick else 5
    serial = 2 if max(ns) >= 4 else 1
    world.provision(FLEET[: max(ns)])  # converge: every measured run must be a no-op
    cases = [(n, None) for n in ns] + [(max(ns), serial)]
    runs = {case: [] for case in cases}
    for _ in range(rounds):
        for n, batch in cases:
            runs[(n, batch)].append(one_run(world, n, batch))
    figures = summarise(runs, ns, serial)
    n_max = str(max(ns))
    goals = [goal(f"time({n_max}) / time(1)", figures["parallel"][n_max]["ratio"], GOAL_RATIO)]
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


def summarise(runs: dict, ns: list[int], serial: int) -> dict:
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

    return {
        "parallel": {str(n): row((n, None)) for n in ns},
        "serial": {"hosts": max(ns), "batch": serial, **row((max(ns), serial))},
    }


def show(f: dict, goals: list[dict]) -> None:
    rows = [
        [f"N={n} parallel", r["wall_s"]["median"], r["wall_s"]["min"], r["wall_s"]["max"],
         r["ratio"], r["cpu_s"]["median"], r["hosts_cpu_s"]["median"], r["cores_busy"]]
        for n, r in f["parallel"].items()
    ]  # fmt: skip
    s = f["serial"]
    rows.append([f"N={s['hosts']} --serial {s['batch']}", s["wall_s"]["median"], s["wall_s"]["min"],
                 s["wall_s"]["max"], s["ratio"], s["cpu_s"]["median"], s["hosts_cpu_s"]["median"],
                 s["cores_busy"]])  # fmt: skip
    print_table(f"{NAME}: no-op `inv provision` of N hosts in one process",
                ["", "median s", "min s", "max s", "/ time(1)", "inv CPU s", "hosts CPU s", "cores busy"], rows)  # fmt: skip
    print_goals(goals)
