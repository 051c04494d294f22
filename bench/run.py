"""The runner behind ``inv bench``: boots the hosts the chosen benchmarks need, runs each,
prints its table, writes ``<results>/<name>.json``, and stops the hosts at the end.

    .venv/bin/python -m bench.run --only provision-noop --quick
"""

import argparse
import shutil
import sys
import time
import traceback
from pathlib import Path

from mtls_deploy import lab

from . import (
    api_throughput,
    deploy_noop,
    deploy_under_load,
    fleet,
    mtls_handshakes,
    provision_fresh,
    provision_noop,
    soak,
)
from .common import (
    QUICK_RESULTS_DIR,
    REPO,
    RESULTS_DIR,
    machine,
    run_process,
    versions,
    write_result,
)
from .world import World, host_versions, lab_hosts, sort_key

WORLD_BENCHMARKS = {  # in the order they run: the no-op ones first, before fresh resets fleet1
    "provision-noop": provision_noop,
    "fleet": fleet,
    "provision-fresh": provision_fresh,
    "mtls-handshakes": mtls_handshakes,
    "api-throughput": api_throughput,
    "deploy-noop": deploy_noop,
    "deploy-under-load": deploy_under_load,
}
BENCHMARKS = [*WORLD_BENCHMARKS, "pki-bulk", "soak"]  # soak: its own lab world, ~7 min
ON_REQUEST = ("soak",)  # ~7 minutes of lab time: run only when named (--only soak)
PKI_BULK = REPO / "bench" / "pki_bulk.py"


def compile_sources() -> None:
    """Byte-compile our modules first, as a user's first run does: with PYTHONDONTWRITEBYTECODE
    set (as on this machine) every ``inv`` would otherwise compile them again, and the start-up
    figures would measure the compiler rather than the tool."""
    import compileall

    root = Path(__file__).resolve().parents[1]
    for folder in ("mtls_deploy", "roles", "bench"):
        compileall.compile_dir(root / folder, quiet=1)
    compileall.compile_file(root / "tasks.py", quiet=1)


def run_benchmarks(only: list[str], quick: bool = False, results: str | None = None) -> list[str]:
    """Run the benchmarks named in ``only`` (all when empty); return the names that failed.

    Example: ``run_benchmarks(["provision-noop"], quick=True)``
    """
    names = select(only)
    compile_sources()
    results_dir = Path(results) if results else QUICK_RESULTS_DIR if quick else RESULTS_DIR
    started, failed, done = time.perf_counter(), [], {}
    in_world = [n for n in names if n in WORLD_BENCHMARKS]
    hosts = hosts_needed(in_world, quick)
    world = None
    try:
        world = World.create(hosts) if in_world else None
        extra = {"hosts": host_versions(world, hosts_with_backends(hosts))} if world else {}
        for name in names:
            start = time.perf_counter()
            try:
                path = run_one(name, world, quick, results_dir, extra)
                done[name] = (time.perf_counter() - start, path)
            except Exception:  # report it, go on with the others
                traceback.print_exc()
                failed.append(name)
    finally:
        lab.down(lab_hosts(hosts))  # leave nothing running
        if world:
            world.close()
    summary(done, failed, time.perf_counter() - started, quick)
    return failed


def select(only: list[str]) -> list[str]:
    unknown = [n for n in only if n not in BENCHMARKS]
    if unknown:
        from mtls_deploy.errors import BadInput

        raise BadInput(f"unknown benchmark {unknown[0]!r}: choose from {', '.join(BENCHMARKS)}")
    return [n for n in BENCHMARKS if n in only or not only and n not in ON_REQUEST]


def hosts_needed(names: list[str], quick: bool) -> list[str]:
    hosts = []
    for name in names:
        module = WORLD_BENCHMARKS[name]
        wanted = module.hosts_needed(quick) if hasattr(module, "hosts_needed") else module.HOSTS
        hosts += [h for h in wanted if h not in hosts]
    return sorted(hosts, key=sort_key)


def hosts_with_backends(hosts: list[str]) -> list[str]:
    """One host per backend is enough to read the server versions."""
    return [h for h in ("fleet1", "fleet2") if h in hosts]


def run_one(name: str, world, quick: bool, results_dir: Path, extra: dict) -> Path:
    print(f"\n=== {name}{' (quick)' if quick else ''} ===", flush=True)
    if name == "pki-bulk":
        return run_pki_bulk(quick, results_dir)
    if name == "soak":  # the same test as in the suite (no quick form: time is what it proves)
        return soak.run_soak(results_dir)
    report = WORLD_BENCHMARKS[name].run(world, quick)
    report["versions"] = versions(**extra)
    report["machine"] = machine()
    path = write_result(results_dir, name, report)
    print(f"written {display(path)}", flush=True)
    return path


def run_pki_bulk(quick: bool, results_dir: Path) -> Path:
    """bench/pki_bulk.py as its own process; it writes bench/results/pki-bulk.json itself, so a
    run elsewhere moves that file to ``results_dir`` and puts the committed one back."""
    own = RESULTS_DIR / "pki-bulk.json"
    target = results_dir / "pki-bulk.json"
    kept = own.read_bytes() if own.exists() and target != own else None
    argv = [sys.executable, PKI_BULK, *(["--quick"] if quick else [])]
    done = run_process(argv, timeout=1200)
    print(done.stdout, end="", flush=True)
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        raise RuntimeError(f"bench/pki_bulk.py failed with exit {done.returncode}")
    if target != own:
        results_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(own, target)
        if kept is not None:
            own.write_bytes(kept)
    return target


def summary(done: dict, failed: list[str], seconds: float, quick: bool) -> None:
    print(f"\n=== bench{' --quick' if quick else ''}: {len(done)} written, "
          f"{len(failed)} failed, {seconds / 60:.1f} min; load now "
          f"{', '.join(f'{x:.2f}' for x in machine()['load_average'])} ===")  # fmt: skip
    for name, (took, path) in done.items():
        print(f"{name:<16} {took:7.1f} s  {display(path)}")
    for name in failed:
        print(f"{name:<16}  FAILED")


def display(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="benchmarks, comma-separated")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--results", help="directory for the JSON files")
    options = parser.parse_args()
    only = [n.strip() for n in options.only.split(",") if n.strip()]
    return 1 if run_benchmarks(only, options.quick, options.results) else 0


if __name__ == "__main__":
    sys.exit(main())
