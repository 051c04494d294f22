"""provision-fresh: from a freshly reset lab host to an API that answers.

``lab.reset`` gives fleet1 a new root from the Debian base (a new VPS), then ``provision_host``
runs in this process under ``SshTrace`` and the check is curl from this machine: /whoami must
answer 200 for the bench client with its certificate verified (curl with --cacert, never -k).

The split: *package installation* is the one round trip that runs ``apt-get update`` and
``apt-get install`` (nginx, php-fpm; the lab keeps each host's downloaded .deb files across
resets, so it is the package lists from the mirror plus unpacking and configuring);
*everything else* is the SSH connection, facts, the PKI's server certificate, the files,
``nginx -t``, the service starts and the check. In process rather than ``inv provision``
because the CLI prints no per-phase times; a whole process adds its start-up (see
provision-noop's process overhead, about 0.4 s). 3 fresh runs, 1 with ``--quick``.
"""

import time

from mtls_deploy import lab
from mtls_deploy.provision import RunOptions, provision_host

from .common import REPO, print_table, spread
from .sshtrace import SshTrace
from .world import whoami_ok

NAME = "provision-fresh"
HOST = "fleet1"
HOSTS = [HOST]
CHECK_TIMEOUT_S = 30


def run(world, quick: bool) -> dict:
    """Measure; print the table; return the report for bench/results/provision-fresh.json."""
    runs = [fresh_run(world) for _ in range(1 if quick else 3)]
    figures = {key: spread(r[key] for r in runs) for key in
               ("reset_s", "total_s", "packages_s", "rest_s", "provision_s", "check_s", "connect_s")}  # fmt: skip
    figures["packages_share"] = round(
        figures["packages_s"]["median"] / figures["total_s"]["median"], 3
    )
    figures["changed_steps"] = runs[-1]["changed_steps"]
    figures["packages"] = runs[-1]["packages"]
    show(figures)
    return {"quick": quick, "host": HOST, "figures": figures, "goals": [], "runs": runs}


def fresh_run(world) -> dict:
    """Reset the host, provision it, and wait for the API to answer the bench client."""
    started = time.perf_counter()
    lab.reset(world.lab_hosts(HOSTS), REPO / ".lab")
    reset_s = time.perf_counter() - started
    start = time.perf_counter()
    with SshTrace() as trace:
        result = provision_host(world.host(HOST), RunOptions())
    provisioned = time.perf_counter()
    if result.failed:
        failed = [f"{s.name}: {s.reason}" for s in result.steps if s.status == "failed"]
        raise RuntimeError(f"{HOST}: fresh provisioning failed: {result.error or failed}")
    check_api(world)
    total = time.perf_counter() - start
    summary = trace.summary()
    packages = sum(c["seconds"] for c in summary["channels"] if c["what"] == "packages")
    return {
        "reset_s": round(reset_s, 3),
        "total_s": round(total, 3),
        "packages_s": round(packages, 3),
        "rest_s": round(total - packages, 3),
        "provision_s": round(provisioned - start, 3),
        "check_s": round(time.perf_counter() - provisioned, 3),
        "connect_s": summary["connect_s"],
        "channels": summary["channels"],
        "changed_steps": result.count("changed"),
        "packages": [s.reason for s in result.steps if s.kind == "packages"],
    }


def check_api(world) -> None:
    """curl /whoami until it answers 200 for the bench client (it should at once)."""
    deadline = time.monotonic() + CHECK_TIMEOUT_S
    while True:
        status, body = world.curl(HOST)
        if whoami_ok(status, body):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{HOST}: /whoami answered {status}: {body[:200]}")
        time.sleep(0.1)


def show(f: dict) -> None:
    keys = [
        ("lab.reset (new root, boot, sshd up)", "reset_s"),
        ("provisioned to /whoami 200, total", "total_s"),
        ("  package installation (apt round trip)", "packages_s"),
        ("  everything else", "rest_s"),
        ("    of which SSH connect + auth", "connect_s"),
        ("    of which the curl check", "check_s"),
    ]
    rows = [[label, f[k]["median"], f[k]["min"], f[k]["max"]] for label, k in keys]
    print_table(f"{NAME}: fresh {HOST} to a passing /whoami ({f['total_s']['n']} runs), seconds",
                ["", "median", "min", "max"], rows)  # fmt: skip
    print(
        f"packages: {'; '.join(f['packages'])}; {f['changed_steps']} steps changed; "
        f"package installation is {f['packages_share']:.0%} of the total"
    )
