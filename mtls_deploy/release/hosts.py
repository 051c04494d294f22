"""Release runs on several inventory hosts, with provision's report: ``deploy_hosts``,
``rollback_hosts``, and ``release_work``, with which ``inv provision`` deploys after the roles."""

import sys
from dataclasses import replace
from functools import partial

from .. import report
from ..cli import print_json
from ..runner import GroupResult, HostResult, run_on_hosts
from . import run
from .source import check_sources


def deploy_hosts(hosts: list, check: bool = False, json: bool = False) -> GroupResult:
    """Deploy each host's ``app_src`` (every tree read and checked before any connection)."""
    prepared = {host.name: run.prepare(host) for host in hosts}
    return _report(hosts, lambda h: run.deploy(prepared[h.name], check), json)


def rollback_hosts(hosts: list, to: str | None = None, json: bool = False) -> GroupResult:
    """Switch each host back to the release before its current one (or ``to``)."""
    prepared = {host.name: run.prepare(host, with_tree=False) for host in hosts}
    return _report(hosts, lambda h: run.rollback(prepared[h.name], to), json)


def _report(hosts: list, work, json: bool) -> GroupResult:
    printer = None if json else report.print_host
    group_result = run_on_hosts(hosts, work, on_result=printer)
    if json:
        print_json(report.as_json(group_result))
    else:
        report.print_recap(group_result, sys.stdout)
    return group_result


def release_work(hosts: list, options):
    """``provision_host(host, options)`` for each host, and for hosts with ``app_src`` its
    deploy on the same connection once the roles succeeded (``RunOptions.then``). Every tree
    is read and checked now, before any connection."""
    from ..provision import provision_host

    check_sources(hosts)
    prepared = {h.name: run.prepare(h) for h in hosts if h.vars.get("app_src")}

    def work(host) -> HostResult:
        if host.name not in prepared:
            return provision_host(host, options)
        then = partial(run.deploy_on, prepared[host.name], options.check)
        return provision_host(host, replace(options, then=then))

    return work
