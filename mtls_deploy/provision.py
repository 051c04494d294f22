"""Provision one host: system facts -> packages -> role resources -> facts -> plan -> apply.

A no-op run costs one SSH connection and two round trips (system facts, resource facts).
Check mode is the same run without the two applies.
"""

import importlib
from dataclasses import dataclass

from . import apply as applying
from .connection import Remote, SshTarget
from .facts import (
    HostFacts,
    parse_resource_facts,
    parse_system_facts,
    resource_facts_script,
    system_facts_script,
)
from .operations import Step, plan, plan_packages, secret_summary, unified_diff, watched
from .resources import File, Handler, Packages
from .runner import HostResult
from .variables import require

ENGINE_HANDLERS = [Handler(applying.DAEMON_RELOAD, "systemctl daemon-reload", order=0)]


@dataclass(frozen=True)
class RunOptions:
    """How to run: ``check`` plans only; ``diff`` shows file diffs."""

    check: bool = False
    diff: bool = False


def role_names(v: dict) -> list[str]:
    """The roles a host gets: ``roles`` from the inventory, else by group (api hosts: the API)."""
    if v.get("roles") is not None:
        return list(v["roles"])
    if "api" in v.get("group_names", []):
        return ["tls", "nginx", f"backend_{v.get('backend', 'php')}"]
    return []


def load_roles(names: list[str]) -> list:
    """Import ``roles/<name>/role.py`` for each name."""
    return [importlib.import_module(f"roles.{name}.role") for name in names]


def provision_host(host, options: RunOptions = RunOptions()) -> HostResult:
    """Bring one inventory host to the state its roles describe. Returns its steps.

    Example: ``provision_host(inventory.host("api1"), RunOptions(check=True))``
    """
    v = dict(host.vars, ansible_check_mode=options.check)
    roles = load_roles(role_names(v))
    if roles and "api" in v.get("group_names", []):
        require(host, "server_name", "https_port")
    with Remote(SshTarget.from_vars(host.name, v)) as remote:
        facts, package_steps = _packages(remote, roles, v, options)
        if any(s.status == "failed" for s in package_steps):
            return HostResult(host.name, package_steps, data=_counters(remote))
        if options.check and any(s.changed for s in package_steps):
            note = Step(
                "note", "later steps", "skipped", "they depend on packages not yet installed"
            )
            return HostResult(host.name, package_steps + [note], data=_counters(remote))
        steps = _converge(remote, roles, v, facts, options)
        return HostResult(host.name, package_steps + steps, data=_counters(remote))


def gather_system_facts(remote: Remote, packages: tuple[str, ...] = ()) -> HostFacts:
    """OS, init, installed versions and package-list age, in one round trip."""
    result = remote.run_script(system_facts_script(packages), check=True)
    return parse_system_facts(result.stdout)


def _packages(remote: Remote, roles: list, v: dict, options: RunOptions):
    wanted = _package_resources(roles, v)
    names = tuple(name for p in wanted for name in p.names)
    facts = gather_system_facts(remote, names)
    steps = [plan_packages(p, facts) for p in wanted]
    if options.check or not any(s.changed for s in steps):
        return facts, steps
    script = "set -e\n" + "\n".join(c for s in steps if s.changed for c in s.commands) + "\n"
    result = remote.run_script(script, sudo=True, timeout=1800)
    if not result.ok:
        for step in steps:
            if step.changed:
                step.status, step.reason = "failed", _last_line(result.stderr) or "apt-get failed"
        return facts, steps
    return gather_system_facts(remote, names), steps


def _package_resources(roles: list, v: dict) -> list[Packages]:
    """Packages don't depend on versions, so ask roles with empty facts."""
    empty = HostFacts()
    return [r for role in roles for r in _role_resources(role, v, empty) if isinstance(r, Packages)]


def _role_resources(role, v: dict, facts: HostFacts) -> list:
    return list(role.resources(v, facts))


def _converge(remote: Remote, roles: list, v: dict, facts: HostFacts, options: RunOptions):
    resources = [
        r for role in roles for r in _role_resources(role, v, facts) if not isinstance(r, Packages)
    ]
    handlers = ENGINE_HANDLERS + [h for role in roles for h in role.handlers(v, facts)]
    actual = parse_resource_facts(
        remote.run_script(resource_facts_script(*watched(resources)), sudo=True, check=True).stdout
    )
    steps = plan(resources, actual)
    if options.diff:
        _attach_diffs(remote, steps)
    if options.check or not any(s.changed for s in steps):
        return steps
    result = remote.run_script(applying.build_script(steps, handlers), sudo=True, timeout=600)
    outcome = applying.parse_outcome(result.stdout, result.stderr)
    return applying.settle(steps, outcome, result.exit_status)


def _attach_diffs(remote: Remote, steps: list[Step]) -> None:
    """Fetch the old content of changed, non-secret files (one round trip) and diff them."""
    files = [s for s in steps if s.changed and isinstance(s.resource, File)]
    public = [s for s in files if not s.resource.secret]
    before = fetch_files(remote, [s.name for s in public]) if public else {}
    for step in files:
        new = step.resource.content
        step.diff = (
            secret_summary(step.name, new)
            if step.resource.secret
            else unified_diff(step.name, before.get(step.name), new)
        )


def fetch_files(remote: Remote, paths: list[str]) -> dict[str, bytes]:
    """Contents of regular files (missing ones are left out), base64 over one channel."""
    import base64
    import shlex

    script = "\n".join(
        f"if [ -f {shlex.quote(p)} ]; then echo '@@file {p}'; base64 {shlex.quote(p)}; fi"
        for p in paths
    )
    out = remote.run_script(script + "\ntrue\n", sudo=True, check=True).stdout
    contents, current, chunks = {}, None, []
    for line in [*out.splitlines(), "@@file "]:
        if line.startswith("@@file "):
            if current:
                contents[current] = base64.b64decode("".join(chunks))
            current, chunks = line[len("@@file ") :], []
        else:
            chunks.append(line)
    return contents


def _counters(remote: Remote) -> dict:
    return {"ssh_channels": remote.channels}


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
