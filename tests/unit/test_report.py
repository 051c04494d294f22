"""What the user reads: step lines, the recap in Ansible's style, the JSON document."""

import io
import json

from mtls_deploy import report
from mtls_deploy.operations import Step
from mtls_deploy.runner import GroupResult, HostResult


def group() -> GroupResult:
    api1 = HostResult(
        "api1",
        [
            Step(
                "file",
                "/etc/nginx/conf.d/api.conf",
                "changed",
                "content differs",
                diff="--- before\n+x\n",
            ),
            Step("service", "nginx", "ok", "enabled and running"),
        ],
        data={"ssh_channels": 1},
    )
    bob = HostResult("bob", error="bob: cannot reach bob@127.0.0.1:2202: connection refused")
    return GroupResult([api1, bob])


def test_step_lines_and_diffs_on_request():
    api1 = group().results[0]
    lines = report.step_lines(api1)
    assert lines == [
        "changed  api1  file /etc/nginx/conf.d/api.conf  (content differs)",
        "ok       api1  service nginx  (enabled and running)",
    ]
    assert "+x" in report.step_lines(api1, diff=True)[1]


def test_recap_like_ansible_and_colour_only_on_a_terminal():
    lines = report.recap_lines(group())
    assert lines[2:] == [
        "api1 : ok=1 changed=1 failed=0 skipped=0",
        "bob  : ok=0 changed=0 failed=1 skipped=0",
    ]
    painted = report.recap_lines(group(), tty=True)
    assert painted[2].startswith("\033[33m") and painted[3].startswith("\033[31m")


def test_print_host_never_colours_a_pipe():
    stream = io.StringIO()
    report.print_host(group().results[1], stream=stream)
    assert (
        stream.getvalue() == "failed   bob  cannot reach bob@127.0.0.1:2202: connection refused\n"
    )


def test_an_error_names_its_host_once():
    """ConnectError and RemoteCommandError start with the host; the line names it already."""
    stopped = HostResult("api1", error="api1: `nginx -t` failed (exit 1): api1.conf: bad")
    other = HostResult("api1", error="not started: an earlier batch failed")
    assert report.step_lines(stopped) == [
        "failed   api1  `nginx -t` failed (exit 1): api1.conf: bad"
    ]
    assert report.step_lines(other) == ["failed   api1  not started: an earlier batch failed"]
    # only a whole-word prefix: a host called "api" keeps "api1: ..." as it is
    assert report.step_lines(HostResult("api", error="api1: x")) == ["failed   api  api1: x"]


def test_json_document_has_every_host_and_the_failures():
    document = json.loads(json.dumps(report.as_json(group())))
    assert document["failed"] == ["bob"]
    assert document["hosts"]["api1"]["recap"] == {"ok": 1, "changed": 1, "failed": 0, "skipped": 0}
    assert document["hosts"]["api1"]["steps"][0]["diff"] == "--- before\n+x\n"
    assert document["hosts"]["api1"]["ssh_channels"] == 1
    assert document["hosts"]["bob"]["error"].startswith("bob: cannot reach")
