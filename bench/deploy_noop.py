"""deploy-noop: ``inv deploy`` when nothing changed, as the user runs it (issue 12).

After the world's provisioning deployed each example, 10 whole ``inv deploy --host <app host>
--json`` processes per host (3 with ``--quick``, php only): median, min and max wall clock, CPU
and peak memory, and the SSH channels each used. Each run must report the release unchanged
(``ok``). Goal: median at most 1.0 s for every host.
"""

from .common import goal, print_goals, print_table, spread
from .world import APPS, provision_report

NAME = "deploy-noop"
GOAL_S = 1.0


def hosts_needed(quick: bool) -> list[str]:
    return list(APPS)[:1] if quick else list(APPS)


def run(world, quick: bool) -> dict:
    """Measure; print the table; return the report for bench/results/deploy-noop.json."""
    figures = {}
    for host in hosts_needed(quick):
        runs = [noop_deploy(world, host) for _ in range(3 if quick else 10)]
        figures[host] = {
            "backend": APPS[host][2],
            "wall_s": spread(r["wall_s"] for r in runs),
            "cpu_s": spread(r["cpu_s"] for r in runs),
            "max_rss_mb": spread(r["max_rss_mb"] for r in runs),
            "ssh_channels": sorted({r["ssh_channels"] for r in runs}),
        }
    worst = max(f["wall_s"]["median"] for f in figures.values())
    goals = [goal("median wall clock of `inv deploy` with nothing changed, s", worst, GOAL_S)]
    show(figures, goals)
    return {"quick": quick, "figures": figures, "goals": goals}


def noop_deploy(world, host: str) -> dict:
    """One ``inv deploy`` process; it must change nothing."""
    process = world.inv("deploy", "--host", host, "--json")
    report = provision_report(process)
    data = report["hosts"].get(host, {})
    changed = (data.get("recap") or {}).get("changed")
    if process.returncode != 0 or report.get("failed") or changed:
        tail = (process.stdout + process.stderr).strip()[-400:]
        raise RuntimeError(f"{host}: `inv deploy` was not a clean no-op: {tail}")
    return {"wall_s": round(process.wall_s, 4), "cpu_s": round(process.cpu_s, 4),
            "max_rss_mb": round(process.max_rss_mb, 1),
            "ssh_channels": data.get("ssh_channels")}  # fmt: skip


def show(figures: dict, goals: list) -> None:
    rows = [
        [f"{host} ({f['backend']})", f["wall_s"]["median"], f["wall_s"]["min"],
         f["wall_s"]["max"], f["cpu_s"]["median"], f["max_rss_mb"]["median"],
         ",".join(map(str, f["ssh_channels"]))]
        for host, f in figures.items()
    ]  # fmt: skip
    print_table(f"{NAME}: `inv deploy` with nothing changed, whole process",
                ["", "median s", "min s", "max s", "CPU s", "peak RSS MB", "channels"], rows)  # fmt: skip
    print_goals(goals)
