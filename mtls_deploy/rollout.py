"""Roll the CRL out to every API host in parallel: the tls role's CRL file, planned and applied by
the engine (temporary file, sha256 check, rename; ``nginx -t``; reload), nothing else.

nginx reads ``ssl_crl`` only when it (re)loads its configuration, so a new CRL counts as rolled
out once the reload has taken effect: the reload handler here waits until no worker of the old
generation still accepts connections. A request made after ``push_crl`` returns meets the new
CRL, with no waiting.
"""

import sys

from . import apply as applying
from . import report
from .connection import Remote, SshTarget
from .facts import HostFacts, parse_resource_facts, resource_facts_script
from .operations import Step, plan_file
from .resources import File, Handler
from .runner import GroupResult, HostResult, run_on_hosts
from .shell import ShellCommand, statement

API_GROUP = "api"
RELOAD_TIMEOUT = 10  # seconds for nginx's new workers to take over

# Worker pids of nginx that still accept connections: "nginx: worker process", not yet
# "nginx: worker process is shutting down". Read from /proc: procps may be missing.
ACCEPTING_WORKERS = r"""mtls_accepting() {
  for p in /proc/[0-9]*; do
    case "$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)" in
      *"shutting down"*) ;;
      "nginx: worker process"*) echo "${p#/proc/}" ;;
    esac
  done
}"""


def wait_for_reload(command: ShellCommand, timeout: int = RELOAD_TIMEOUT) -> str:
    """``command`` (a reload: argv or a fixed script), then wait until the workers that accepted connections before it
    are gone or shutting down and new ones accept: the new configuration is live."""
    tries = timeout * 10
    return "\n".join(
        [
            ACCEPTING_WORKERS,
            "mtls_old=$(mtls_accepting)",
            statement(command),
            "mtls_try=0",
            "while :; do",
            '  mtls_now=" $(echo $(mtls_accepting)) "; mtls_stale=',
            '  for p in $mtls_old; do case "$mtls_now" in *" $p "*) mtls_stale=1 ;; esac; done',
            '  [ "$mtls_now" != "  " ] && [ -z "$mtls_stale" ] && break',
            "  mtls_try=$((mtls_try + 1))",
            f'  [ $mtls_try -ge {tries} ] && {{ echo "nginx did not take the new configuration within {timeout} s" >&2; exit 1; }}',
            "  sleep 0.1",
            "done",
        ]
    )


def crl_file(v: dict, content: bytes) -> File:
    """The tls role's CRL resource (path, owner, mode, ``nginx -t``, reload) with ``content``."""
    from roles.tls.role import NGINX, tls_paths

    return File(tls_paths(v)["crl"], content, **NGINX)


def reload_handlers(v: dict) -> list[Handler]:
    """The nginx role's handlers, each reload waiting until it has taken effect."""
    from roles.nginx.role import handlers

    return [
        Handler(h.name, wait_for_reload(h.command), h.order, h.listen)
        for h in handlers(v, HostFacts())
    ]


def push_crl_to_host(host, content: bytes) -> HostResult:
    """Plan and apply the CRL file on one host: one round trip when it is current, two when
    it changes (facts; then write, ``nginx -t``, reload). Example:
    ``push_crl_to_host(inventory.load().host("api1"), store.crl_pem())``"""
    v = host.vars
    desired = crl_file(v, content)
    folder = desired.path.rsplit("/", 1)[0]
    with Remote(SshTarget.from_vars(host.name, v)) as remote:
        facts_script = resource_facts_script([folder, desired.path], [], [])
        facts = parse_resource_facts(remote.run_script(facts_script, sudo=True, check=True).stdout)
        if facts.path(folder).kind != "directory":
            reason = (
                f"{folder} is missing: provision the host first (inv provision --host {host.name})"
            )
            return HostResult(host.name, [Step("file", desired.path, "failed", reason)])
        steps = [plan_file(desired, facts.path(desired.path))]
        if steps[0].changed:
            steps = _apply(remote, steps, reload_handlers(v))
    return HostResult(host.name, steps, data={"ssh_channels": remote.channels})


def _apply(remote: Remote, steps: list[Step], handlers: list[Handler]) -> list[Step]:
    script = applying.build_script(steps, handlers)
    result = remote.run_script(script, sudo=True, timeout=120)
    outcome = applying.parse_outcome(result.stdout, result.stderr)
    return applying.settle(steps, outcome, result.exit_status)


def push_crl(store, names: list[str] | None = None, loaded=None, stream=None) -> GroupResult:
    """``revoke-client`` and ``pki.crl --push``: the PKI's CRL to every host of group api (or
    ``names``) in parallel; a line per host as it ends, then the recap.

    Example: ``raise_on_failure(push_crl(PkiStore.open()))``
    """
    from . import inventory

    loaded = loaded or inventory.load()
    hosts = loaded.select(names or [], None if names else API_GROUP)
    content = store.crl_pem()
    stream = stream or sys.stdout
    printer = lambda result: report.print_host(result, stream=stream)  # noqa: E731
    group = run_on_hosts(hosts, lambda host: push_crl_to_host(host, content), on_result=printer)
    report.print_recap(group, stream)
    return group
