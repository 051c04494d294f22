"""What every benchmark shares: the machine and versions, spreads, tables, result files, and
whole-process runs measured with their CPU time and peak memory (``os.wait4``'s rusage, the
figures ``/usr/bin/time -v`` prints)."""

import datetime as dt
import json
import os
import platform
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
QUICK_RESULTS_DIR = RESULTS_DIR / "quick.tmp"  # *.tmp is git-ignored: quick figures stay local
PACKAGES = ("cryptography", "paramiko", "fabric", "invoke", "jinja2")


# --- figures -----------------------------------------------------------------------------------


def spread(values) -> dict:
    """``[0.5, 0.4, 0.6]`` -> ``{"median": 0.5, "min": 0.4, "max": 0.6, "n": 3}``."""
    values = list(values)
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "n": len(values),
    }


def percentile(values, fraction: float) -> float:
    """Nearest-rank percentile: ``percentile(latencies, 0.99)``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, round(fraction * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def goal(name: str, measured, target, better: str = "lower", stretch=None) -> dict:
    """One goal beside its figure: ``goal("median s", 0.52, 1.0, stretch=0.5)``."""
    met = measured is not None and (measured <= target if better == "lower" else measured >= target)
    row = {"goal": name, "measured": measured, "target": target, "better": better, "met": met}
    if stretch is not None:
        row["stretch"] = stretch
        row["stretch_met"] = measured is not None and (
            measured <= stretch if better == "lower" else measured >= stretch
        )
    return row


# --- the machine and versions --------------------------------------------------------------------


def machine() -> dict:
    """Cores, memory, CPU model, kernel, OS and the load average when the figures were taken."""
    mem_kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "nproc": os.cpu_count(),
        "memory_mb": mem_kb // 1024,
        "cpu": cpu,
        "kernel": platform.release(),
        "os": _os_name(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _os_name() -> str:
    try:
        lines = Path("/etc/os-release").read_text().splitlines()
    except OSError:
        return platform.system()
    pretty = [line.split("=", 1)[1].strip('"') for line in lines if line.startswith("PRETTY_NAME=")]
    return pretty[0] if pretty else platform.system()


def versions(**extra) -> dict:
    """Python, OpenSSL (library and command) and the packages that do the work on this side."""
    cli = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    found = {"python": platform.python_version(), "python_ssl": ssl.OPENSSL_VERSION, "openssl": cli}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return {**found, **extra}


# --- results -------------------------------------------------------------------------------------


def write_result(results_dir: Path, name: str, report: dict) -> Path:
    """Write ``<results_dir>/<name>.json`` atomically, with the date, machine and versions."""
    document = {
        "benchmark": name,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **report,
    }
    document.setdefault("machine", machine())
    document.setdefault("versions", versions())
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    fd, temporary = tempfile.mkstemp(dir=results_dir, prefix=f".{name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(document, indent=2, default=str) + "\n")
    os.chmod(temporary, 0o644)  # mkstemp made it 0600; the figures are public
    os.replace(temporary, path)
    return path


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    cells = [[_cell(v) for v in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        line = "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        )
        print(line.rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def print_goals(goals: list[dict]) -> None:
    """``goal: median s <= 1.0: 0.52 met (stretch 0.5: missed)``."""
    for g in goals:
        sign = "<=" if g["better"] == "lower" else ">="
        line = f"goal: {g['goal']} {sign} {g['target']}: {_cell(g['measured'])} "
        line += "met" if g["met"] else "NOT met"
        if "stretch" in g:
            line += f" (stretch {g['stretch']}: {'met' if g['stretch_met'] else 'missed'})"
        print(line)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return "-" if value is None else str(value)


# --- whole-process runs ---------------------------------------------------------------------------


@dataclass
class ProcessRun:
    """One finished process: wall clock, CPU (user + system) and peak RSS, like ``time -v``."""

    argv: list
    wall_s: float
    cpu_s: float
    max_rss_mb: float
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> "ProcessRun":
        if self.returncode != 0:
            tail = (self.stderr or self.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"{' '.join(map(str, self.argv))}: exit {self.returncode}: {tail}")
        return self


def run_process(
    argv, env: dict | None = None, cwd: Path = REPO, timeout: float = 600
) -> ProcessRun:
    """Run ``argv`` to its end; its own rusage comes from ``os.wait4``, not from the children
    of this process as a whole."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(
            [str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            env=env, cwd=cwd,
        )  # fmt: skip
        status, usage = _wait(process, timeout)
        wall = time.perf_counter() - start
        out.seek(0), err.seek(0)
        return ProcessRun(
            list(argv), wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
            os.waitstatus_to_exitcode(status), out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )  # fmt: skip


def _wait(process: subprocess.Popen, timeout: float):
    """Block in ``wait4``; a timer kills the process if it outlives ``timeout``."""
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        timer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    return status, usage
