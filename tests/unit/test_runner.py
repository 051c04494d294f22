"""Running on many hosts: isolation of failures, rolling batches, the recap's figures."""

import threading
from dataclasses import dataclass

from mtls_deploy.errors import UserError
from mtls_deploy.operations import Step
from mtls_deploy.runner import HostResult, run_on_hosts


@dataclass
class FakeHost:
    name: str


def hosts(*names):
    return [FakeHost(n) for n in names]


def test_a_failing_host_does_not_stop_the_others():
    def work(host):
        if host.name == "b":
            raise UserError("b: cannot reach deploy@127.0.0.1:2299: connection refused")
        if host.name == "c":
            raise RuntimeError("boom")
        return HostResult(host.name, [Step("file", "/x", "ok", "same")])

    group = run_on_hosts(hosts("a", "b", "c", "d"), work)
    assert [r.host for r in group.succeeded] == ["a", "d"]
    assert [(r.host, r.error) for r in group.failed] == [
        ("b", "b: cannot reach deploy@127.0.0.1:2299: connection refused"),
        ("c", "RuntimeError: boom"),
    ]


def test_hosts_run_in_parallel():
    barrier = threading.Barrier(4, timeout=5)  # deadlocks unless all four run at once

    def work(host):
        barrier.wait()
        return HostResult(host.name)

    assert not run_on_hosts(hosts("a", "b", "c", "d"), work).failed


def test_serial_batches_stop_after_a_failed_batch():
    started = []

    def work(host):
        started.append(host.name)
        status = "failed" if host.name == "c" else "changed"
        return HostResult(host.name, [Step("file", "/x", status, "why")])

    group = run_on_hosts(hosts("a", "b", "c", "d", "e", "f"), work, serial=2)
    assert sorted(started) == ["a", "b", "c", "d"]  # batch (e, f) never started
    assert [r.host for r in group.results] == ["a", "b", "c", "d", "e", "f"]
    assert group.results[4].error == "not started: an earlier batch failed"


def test_recap_counts():
    result = HostResult(
        "api1", [Step("f", "/a", s, "") for s in ("ok", "ok", "changed", "skipped")]
    )
    assert result.recap() == {"ok": 2, "changed": 1, "failed": 0, "skipped": 1}
    assert HostResult("api2", error="down").recap()["failed"] == 1
