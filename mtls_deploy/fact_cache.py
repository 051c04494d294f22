"""The last run's system facts per host, kept on the control machine.

They only serve as a guess of which paths the roles will want, so that a no-op run gathers
everything in one round trip. A stale or missing cache costs one more round trip, never a
wrong answer: the plan always uses the facts gathered in this run.
"""

import json
import os
from dataclasses import asdict
from pathlib import Path
from urllib.parse import quote

from .facts import HostFacts


def cache_file(host: str, address: str, port: int) -> Path:
    """``~/.cache/mtls-deploy/facts/api1@127.0.0.1:2201.json``; a ``/`` in an inventory name
    is escaped, so the file stays in that folder whatever the name."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    name = quote(f"{host}@{address}:{port}", safe="@:[]")
    return base / "mtls-deploy" / "facts" / f"{name}.json"


def load(path: Path) -> HostFacts | None:
    """The cached facts, or None when there are none or they cannot be read."""
    try:
        return HostFacts(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def save(path: Path, facts: HostFacts) -> None:
    """Keep ``facts`` for the next run; a cache that cannot be written is simply skipped."""
    from .files import atomic_write

    data = asdict(facts)
    data["apt_lists_age"] = None  # ages go stale; never let a guess look like a fresh list
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(data, sort_keys=True).encode(), 0o600, durable=False)
    except OSError:
        pass
