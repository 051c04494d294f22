"""Roll the CRL out to every API host in parallel: a provision run that takes only the resources
tagged ``crl`` (the tls role's CRL file), planned and applied by the engine (temporary file,
sha256 check, rename; the validators and handlers of the host's roles: a config test, then the
reload, which returns once the new configuration is live). One round trip when it is current.

A request made after ``push_crl`` returns meets the new CRL, with no waiting.
"""

import sys

from . import report
from .provision import RunOptions, provision_host
from .runner import GroupResult, HostResult, run_on_hosts

API_GROUP = "api"
CRL_TAG = "crl"


def push_crl_to_host(host) -> HostResult:
    """Plan and apply the CRL file on one host: one round trip when it is current, two when
    it changes (facts; then write, check, reload). Example:
    ``push_crl_to_host(inventory.load().host("api1"))``"""
    return with_provision_hint(provision_host(host, RunOptions(tags=(CRL_TAG,))))


MISSING_DIRECTORY = "No such file or directory"  # mktemp's words when the folder is not there


def with_provision_hint(result: HostResult) -> HostResult:
    """A CRL that cannot be written because its directory is missing: the host was never
    provisioned, and the line says so instead of mktemp's words."""
    for step in result.steps:
        if step.status == "failed" and step.kind == "file" and MISSING_DIRECTORY in step.reason:
            folder = step.name.rpartition("/")[0]
            fix = f"inv provision --host {result.host}"
            step.reason = f"{folder} is missing: provision the host first ({fix})"
    return result


def push_crl(store=None, names: list[str] | None = None, loaded=None, stream=None) -> GroupResult:
    """``revoke-client`` and ``pki.crl --push``: the PKI's CRL (as the roles read it from the
    store) to every host of group api (or ``names``) in parallel; a line per host as it ends,
    then the recap. ``store`` is the caller's, already written: the roles open the same one.

    Example: ``raise_on_failure(push_crl(PkiStore.open()))``
    """
    from . import inventory

    loaded = loaded or inventory.load()
    hosts = loaded.select(names or [], None if names else API_GROUP)
    stream = stream or sys.stdout
    printer = lambda result: report.print_host(result, stream=stream)  # noqa: E731
    group = run_on_hosts(hosts, push_crl_to_host, on_result=printer)
    report.print_recap(group, stream)
    return group
