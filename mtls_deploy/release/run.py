"""Deploy and roll back releases on hosts: the pipeline around the backend's ``release`` hook.

Before any connection: ``app_src`` read into a tree (refusals are one line), the host's backend
found (whichever of its roles defines ``release``). Then, on the host: one probe (nothing more
when ``current`` already is this tree), the upload as one tar, the install script (extract,
shared links, build and check as the app's user, rename) and the switch script (start, switch
``current``, activate, retire, prune). A failure before the switch leaves nothing behind; one
after it puts the previous release back.
"""

from dataclasses import dataclass, replace

from .. import role_loader
from ..connection import Remote, SshTarget
from ..errors import UserError
from ..facts import parse_system_facts, system_facts_script
from ..operations import Step
from ..runner import HostResult
from . import plan
from . import remote as scripts
from .plan import HostState
from .source import local_tree
from .steps import ReleaseContext, ReleaseSteps
from .transfer import upload
from .tree import Tree

KIND = "app"
ROLLBACK = "rollback"


@dataclass(frozen=True)
class Prepared:
    """A host ready for a release run: its inventory host, tree, backend role and app paths."""

    host: object
    tree: Tree | None
    backend: object
    app: dict
    packages: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def root(self) -> str:
        return self.app["app_root"]

    @property
    def sha12(self) -> str:
        """The end of this tree's release name under this backend (``plan.release_sha12``)."""
        return plan.release_sha12(self.tree.digest, self.backend.name)


def prepare(host, with_tree: bool = True) -> Prepared:
    """Everything that needs no connection, or one line (``BadInput``/``UserError``)."""
    tree = local_tree(host) if with_tree else None
    roles = role_loader.host_roles(host.vars)
    backends = [role for role in roles if getattr(role.module, "release", None)]
    if not backends:
        backend = host.vars.get("backend") or "/".join(r.name for r in roles)
        raise UserError(
            f"{host.name}: backend {backend} cannot deploy app_src (none of the host's roles "
            "has a release hook): use a backend that can, or unset app_src"
        )
    packages = tuple(p for role in roles for p in role.fact_packages())
    return Prepared(host, tree, backends[-1], role_loader.host_exports(host.vars), packages)


def deploy(prepared: Prepared, check: bool = False) -> HostResult:
    """``inv deploy`` on one host: a new release of its tree, unless ``current`` is that tree."""
    with _connected(prepared) as remote:
        steps = _deploy(remote, prepared, _probe(remote, prepared, check), check)
        return HostResult(prepared.name, steps, data={"ssh_channels": remote.channels})


def deploy_on(prepared: Prepared, check: bool, remote: Remote) -> list[Step]:
    """``deploy`` on a connection already open (``inv provision``'s, after the roles): its
    steps; what would have stopped the host is one failed step."""
    try:
        return _deploy(remote, prepared, _probe(remote, prepared, check), check)
    except UserError as error:
        return [Step(KIND, "release", "failed", str(error).removeprefix(f"{prepared.name}: "))]


def rollback(prepared: Prepared, to: str | None = None) -> HostResult:
    """``inv rollback`` on one host: ``current`` back to the release before it (or ``to``)."""
    with _connected(prepared) as remote:
        state = _probe(remote, prepared, check=False)
        target = plan.rollback_target(prepared.name, state, to)
        steps = _switch_to(remote, prepared, state, target, ROLLBACK)
        return HostResult(prepared.name, steps, data={"ssh_channels": remote.channels})


def _connected(prepared: Prepared) -> Remote:
    return Remote(SshTarget.from_vars(prepared.name, prepared.host.vars))


def _probe(remote: Remote, prepared: Prepared, check: bool) -> HostState:
    """The host's releases, in one round trip (a no-op deploy's only one); one line when it
    was never provisioned for them."""
    script = scripts.probe_script(prepared.root)
    _, output = scripts.split_probe(remote.run_script(script, sudo=True, check=True).stdout)
    state = plan.parse_probe(output)
    if not state.provisioned and not check:
        raise UserError(
            f"{prepared.name}: {prepared.root}/releases is missing: run inv provision first"
        )
    return state


def _with_facts(remote: Remote, prepared: Prepared, state: HostState) -> HostState:
    """``state`` with the host's system facts (package versions: the backend's paths follow
    them), gathered now: one round trip, only when something is to be switched."""
    script = system_facts_script(prepared.packages)
    facts = parse_system_facts(remote.run_script(script, sudo=True, check=True).stdout)
    return replace(state, facts=facts)


def _deploy(remote: Remote, prepared: Prepared, state: HostState, check: bool) -> list[Step]:
    sha12 = prepared.sha12
    if plan.is_current(state, sha12):
        return [Step(KIND, f"release {state.current}", "ok", "the tree is unchanged")]
    found = plan.existing(state, sha12)
    if found and not check:
        return _switch_to(remote, prepared, state, found, "the same tree, already on the host")
    release_id = found or plan.release_id(sha12)
    if check:
        return [Step(KIND, f"release {release_id}", "changed", f"would deploy ({_was(state)})")]
    return _new_release(remote, prepared, state, release_id)


def _was(state: HostState) -> str:
    return f"was {state.current}" if state.current else "first release"


def _new_release(remote: Remote, prepared: Prepared, state: HostState, release_id: str):
    """Upload, install, switch; the report's lines."""
    state = _with_facts(remote, prepared, state)
    ctx = context(prepared, state, release_id)
    steps = _steps(prepared, state, ctx)
    name = f"release {release_id}"
    path = upload(remote, prepared.tree, f".mtls-deploy-{release_id}.tar")
    installed = remote.run_script(scripts.install_script(ctx, steps, path), sudo=True, timeout=1800)
    if not installed.ok:
        return [_failed(name, "refused", installed)]
    keep = int(prepared.host.vars.get("app_keep_releases") or 5)
    pruned = plan.to_prune([*state.releases, release_id], release_id, state.current, keep)
    switched = _run_switch(remote, prepared, state, (ctx, steps), pruned)
    if not switched.ok:
        return [_failed(name, "not switched", switched)]
    removed = [Step(KIND, f"release {r}", "changed", "pruned (app_keep_releases)") for r in pruned]
    return [Step(KIND, name, "changed", _was(state)), *removed]


def _switch_to(remote: Remote, prepared: Prepared, state, release_id: str, why: str):
    """``current`` to an existing release (a rollback): start, switch, activate, retire."""
    state = _with_facts(remote, prepared, state)
    ctx = replace(context(prepared, state, release_id), rollback=True)
    ctx = replace(ctx, build_dir=ctx.release)
    switched = _run_switch(remote, prepared, state, (ctx, _steps(prepared, state, ctx)), ())
    name = f"release {release_id}"
    if not switched.ok:
        return [_failed(name, "not switched", switched)]
    return [Step(KIND, name, "changed", f"{why}; {_was(state)}")]


def _run_switch(remote: Remote, prepared: Prepared, state: HostState, release, prune):
    """The switch script for ``release`` (its context and steps) with the previous release's
    steps for the undo."""
    ctx, steps = release
    before = _previous_steps(prepared, state, ctx)
    script = scripts.switch_script(ctx, steps, before, prune)
    return remote.run_script(script, sudo=True, timeout=600)


def _failed(name: str, what: str, result) -> Step:
    """One line: where it failed and the last line of its stderr (``refused at check: ...``;
    ``switched, but retire failed: ...`` when ``current`` already points at the release)."""
    phase = scripts.failed_phase(result.stdout)
    reason = scripts.last_line(result.stderr) or f"exit {result.exit_status}"
    if scripts.RESTORE_FAILED in result.stdout:
        reason += "; the previous release could not be re-activated"
    if phase in scripts.AFTER_SWITCH:
        return Step(KIND, name, "failed", f"switched, but {phase} failed: {reason}")
    return Step(KIND, name, "failed", f"{what} at {phase}: {reason}")


def context(prepared: Prepared, state: HostState, release_id: str) -> ReleaseContext:
    """The ``ReleaseContext`` of ``release_id`` on this host, built in ``<release>.partial``."""
    app, root = prepared.app, prepared.root
    release = f"{root}/releases/{release_id}"
    previous = f"{root}/releases/{state.current}" if state.current else None
    tree = prepared.tree
    return ReleaseContext(
        api_name=str(prepared.host.vars.get("api_name")),
        root=root,
        release=release,
        build_dir=f"{release}.partial",
        release_id=release_id,
        current=app["app_current"],
        previous=previous,
        shared_root=app["app_shared_root"],
        shared=tuple(app.get("app_shared") or ()),
        env_file=app["app_env_file"],
        files=tree.files if tree else frozenset(),
        digests=tree.digests if tree else {},
    )


def _steps(prepared: Prepared, state: HostState, ctx: ReleaseContext) -> ReleaseSteps:
    """The backend's ``release(v, facts, ctx)``, with its variables and the probe's facts."""
    v, facts = prepared.host.vars, state.facts
    roles = role_loader.host_roles(v)
    variables = role_loader.with_exports(roles, v, facts)[prepared.backend.name]
    steps = prepared.backend.call("release", variables, facts, ctx)
    if not isinstance(steps, ReleaseSteps):
        raise UserError(f"role {prepared.backend.name}: release() must return ReleaseSteps")
    return steps


def _previous_steps(prepared: Prepared, state, ctx: ReleaseContext) -> ReleaseSteps | None:
    """The steps that re-activate the release that served before ``ctx``'s."""
    if ctx.previous is None:
        return None
    previous_id = ctx.previous.rsplit("/", 1)[-1]
    back = replace(ctx, release=ctx.previous, build_dir=ctx.previous, release_id=previous_id,
                   previous=None, rollback=True, files=frozenset(), digests={})  # fmt: skip
    return _steps(prepared, state, back)
