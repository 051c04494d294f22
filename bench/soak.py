"""``inv bench --only soak``: the soak test (tests/integration/test_soak.py) as it runs in the
suite: lifetimes in minutes, ``inv maintain`` every 15 s, both CA rollovers, a client on the
consumer every 0.2 s for over 6 minutes. The test writes its figures (requests, failures,
renewals of each kind, duration, machine) to ``<results>/soak.json``; this runs it on its own
lab world (sk-api, sk-bob), not on the bench's fleet."""

import os
import sys
from pathlib import Path

from .common import REPO, run_process

TEST = REPO / "tests" / "integration" / "test_soak.py"


def run_soak(results_dir: Path) -> Path:
    """Run the soak test, its figures written to ``results_dir/soak.json``; raise when it fails
    (its output, with the failing requests and maintain's runs around them, printed first)."""
    target = results_dir / "soak.json"
    env = {**os.environ, "MTLS_DEPLOY_SOAK_RESULT": str(target)}
    env.setdefault("MTLS_DEPLOY_CA_PASSPHRASE", "lab-only-passphrase")  # the world's own PKI
    argv = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", str(TEST)]
    done = run_process(argv, timeout=1200, env=env)
    print(done.stdout[-6000:], end="", flush=True)
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        raise RuntimeError(f"the soak test failed with exit {done.returncode}")
    return target
