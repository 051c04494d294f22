"""Run a function on many hosts in parallel; a failure on one host never stops the others.

Results are collected the way Fabric's ``GroupResult`` does: ``.succeeded`` and ``.failed``.
"""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .errors import UserError
from .operations import Step

MAX_PARALLEL_HOSTS = 16


@dataclass
class HostResult:
    """One host's steps, or the one error that stopped it (unreachable, refused, ...)."""

    host: str
    steps: list[Step] = field(default_factory=list)
    error: str | None = None
    data: dict = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(1 for step in self.steps if step.status == status)

    @property
    def failed(self) -> bool:
        return self.error is not None or self.count("failed") > 0

    def recap(self) -> dict:
        """Ansible's PLAY RECAP figures for this host."""
        return {
            "ok": self.count("ok"),
            "changed": self.count("changed"),
            "failed": self.count("failed") + (1 if self.error else 0),
            "skipped": self.count("skipped"),
        }


@dataclass
class GroupResult:
    """Every host's result, in the order the hosts were given."""

    results: list[HostResult]

    @property
    def succeeded(self) -> list[HostResult]:
        return [r for r in self.results if not r.failed]

    @property
    def failed(self) -> list[HostResult]:
        return [r for r in self.results if r.failed]


def run_on_hosts(
    hosts: list, work: Callable, serial: int | None = None, on_result: Callable | None = None
) -> GroupResult:
    """Run ``work(host) -> HostResult`` on every host, in parallel.

    ``serial=N`` runs N hosts at a time and stops before the next batch when a batch failed,
    as a rolling deploy should. ``on_result`` is called as each host finishes.
    Example: ``run_on_hosts(inventory.select(group="api"), provision_host, serial=2)``
    """
    batch_size = serial or len(hosts) or 1
    results = []
    for start in range(0, len(hosts), batch_size):
        batch = hosts[start : start + batch_size]
        batch_results = _run_batch(batch, work, on_result)
        results += batch_results
        if serial and any(r.failed for r in batch_results):
            results += [
                HostResult(h.name, error="not started: an earlier batch failed")
                for h in hosts[start + batch_size :]
            ]
            break
    return GroupResult(results)


def _run_batch(hosts: list, work: Callable, on_result: Callable | None) -> list[HostResult]:
    if len(hosts) == 1:
        return [_guarded(work, hosts[0], on_result)]
    with ThreadPoolExecutor(max_workers=min(len(hosts), MAX_PARALLEL_HOSTS)) as pool:
        return list(pool.map(lambda h: _guarded(work, h, on_result), hosts))


def _guarded(work: Callable, host, on_result: Callable | None) -> HostResult:
    try:
        result = work(host)
    except UserError as error:
        result = HostResult(host.name, error=str(error))
    except Exception as error:  # a bug or an unexpected remote state: isolate it to this host
        result = HostResult(host.name, error=f"{type(error).__name__}: {error}")
    if on_result:
        on_result(result)
    return result
