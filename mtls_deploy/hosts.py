"""Work on several inventory hosts at once: ad-hoc commands and provisioning, with reports."""

import sys
from functools import partial

from . import inventory as inventory_module
from . import report
from .cli import print_json
from .connection import Remote, SshTarget
from .operations import Step
from .runner import GroupResult, HostResult, run_on_hosts


def select(
    names: list[str],
    group: str | None,
    default_group: str | None = None,
    extra_vars: dict | None = None,
) -> list:
    """Inventory hosts by name and/or group; ``default_group`` when neither is given."""
    loaded = inventory_module.load(extra_vars=extra_vars)
    if not names and not group and default_group:
        group = default_group
    return loaded.select(names, group)


def run_command(names: list[str], group: str | None, command: str, sudo: bool) -> GroupResult:
    """Run one shell command on each host in parallel; print each host's output as it ends.

    Example: ``run_command(["api1", "bob"], None, "id -un", sudo=False)``
    """

    def on_host(host) -> HostResult:
        with Remote(SshTarget.from_vars(host.name, host.vars)) as remote:
            result = remote.run(command, sudo=sudo)
        status = "ok" if result.ok else "failed"
        reason = (result.stdout or result.stderr).strip() or f"exit {result.exit_status}"
        return HostResult(host.name, [Step("command", command, status, reason)])

    group_result = run_on_hosts(select(names, group), on_host, on_result=report.print_host)
    report.print_recap(group_result)
    return group_result


def provision_hosts(names, group, check, diff, serial, json, extra_vars) -> GroupResult:
    """``inv provision``: every selected host (default: group api) in parallel or in batches;
    then, on a host with ``app_src`` whose roles succeeded, its release (``release.hosts``)."""
    from .provision import RunOptions, provision_host  # the engine: hosts.run needs none of it

    hosts = select(names, group, default_group="api", extra_vars=extra_vars)
    options = RunOptions(check=check, diff=diff)
    work = partial(provision_host, options=options)
    if any(h.vars.get("app_src") for h in hosts):  # the release pipeline, imported when used
        from .release.hosts import release_work

        work = release_work(hosts, options)  # then app_src's, on the same connection
    if json or len(hosts) < 2:
        printer = None if json else (lambda r: report.print_host(r, diff=diff))
        group_result = run_on_hosts(hosts, work, serial, printer)
    else:
        group_result = _with_progress(hosts, work, serial, diff)
    if json:
        print_json(report.as_json(group_result))
    else:
        report.print_recap(group_result, sys.stdout)
    return group_result


def _with_progress(hosts: list, work, serial, diff: bool) -> GroupResult:
    """``run_on_hosts`` showing hosts done / failed / running as they go (``report.Progress``)."""
    progress = report.Progress(len(hosts))

    def started(host) -> HostResult:
        progress.started()
        return work(host)

    def ended(result: HostResult) -> None:
        progress.finished(result, report.step_lines(result, progress.tty, diff))

    group_result = run_on_hosts(hosts, started, serial, ended)
    progress.close()
    return group_result
