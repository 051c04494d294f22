"""Another process holding a lock, as flock(1) takes it in the scripts under test."""

import subprocess
import time
from pathlib import Path


def holding(path: Path, command: list[str], cwd: Path | None = None) -> subprocess.Popen:
    """``command`` run under ``flock path``, returned once the lock is taken (a script started
    right after finds it held)."""
    holder = subprocess.Popen(["flock", "-o", str(path), *command], cwd=cwd)
    for _ in range(50):
        if subprocess.run(["flock", "-n", str(path), "true"]).returncode != 0:
            return holder
        time.sleep(0.05)
    raise AssertionError(f"{command} never took {path}")
