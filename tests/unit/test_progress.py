"""A provision of many hosts says where it stands: on a terminal one line (hosts done / failed
/ running) rewritten in place below the hosts' lines; elsewhere one line per finished host."""

import io
from types import SimpleNamespace

from mtls_deploy import hosts, report
from mtls_deploy.operations import Step
from mtls_deploy.runner import HostResult


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def ok(host: str) -> HostResult:
    return HostResult(host, [Step("file", "/etc/x", "ok", "as wanted")])


def test_off_a_terminal_one_line_per_finished_host():
    out = io.StringIO()
    progress = report.Progress(3, out)
    for _ in range(3):
        progress.started()
    progress.finished(ok("api1"), ["ok       api1  file /etc/x  (as wanted)"])
    progress.finished(HostResult("api2", error="api2: cannot reach"), ["failed   api2  boom"])
    progress.close()
    assert out.getvalue().splitlines() == [
        "ok       api1  file /etc/x  (as wanted)",
        "hosts: 1/3 done, 0 failed, 2 running (api1 ended)",
        "failed   api2  boom",
        "hosts: 2/3 done, 1 failed, 1 running (api2 ended)",
    ]


def test_on_a_terminal_one_status_line_rewritten_in_place():
    out = Terminal()
    progress = report.Progress(2, out)
    progress.started()
    progress.started()
    progress.finished(ok("api1"), ["ok api1"])
    progress.close()
    assert out.getvalue() == (
        "\r\033[Khosts: 0/2 done, 0 failed, 1 running"
        "\r\033[Khosts: 0/2 done, 0 failed, 2 running"
        "\r\033[Kok api1\nhosts: 1/2 done, 0 failed, 1 running"
        "\r\033[K"
    )


def test_many_hosts_are_provisioned_with_progress(capsys):
    names = [SimpleNamespace(name=f"fleet{i}") for i in range(1, 5)]
    group = hosts._with_progress(names, lambda h: ok(h.name), None, diff=False)
    lines = capsys.readouterr().out.splitlines()
    assert [r.host for r in group.results] == ["fleet1", "fleet2", "fleet3", "fleet4"]
    assert lines[-1].startswith("hosts: 4/4 done, 0 failed, 0 running (fleet")
    assert sum(line.startswith("hosts: ") for line in lines) == 4
