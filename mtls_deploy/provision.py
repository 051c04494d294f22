"""Provision one host: prepare -> facts -> packages -> role resources -> plan -> apply.

A no-op run costs one SSH connection and one round trip: system facts and the state of every
managed path, user and unit are gathered by one script, whose path list comes from the roles
run on the last run's facts (``fact_cache``). Check mode is the same run without the applies,
and its prepare step changes nothing. The engine knows no role: it asks each of the host's roles
(``role_loader``) for its resources, handlers, validators, exports and prepare step, and adds
its own bookkeeping to the plan: the host's manifest, and the removal of what a role that left
the host had put there (``manifest.py``; never in a tagged run).
"""

from collections.abc import Callable
from dataclasses import dataclass

from . import apply as applying
from . import fact_cache, manifest, package_survey, role_loader
from .connection import Remote, SshTarget
from .errors import UserError
from .facts import (
    HostFacts,
    ResourceFacts,
    Watched,
    gather_script,
    merge,
    parse_gathered,
    parse_resource_facts,
)
from .operations import (
    Step,
    plan,
    plan_packages,
    plan_policy_leftover,
    secret_summary,
    unified_diff,
    watched,
)
from .resources import File, Handler, Packages, Service, tagged
from .runner import HostResult
from .variables import require

ENGINE_HANDLERS = [Handler(applying.DAEMON_RELOAD, (("systemctl", "daemon-reload"),), order=0)]


@dataclass(frozen=True)
class RunOptions:
    """How to run: ``check`` plans only; ``diff`` shows file diffs; ``tags`` runs only the
    resources carrying one of them (no packages, no prepare step: the CRL push); ``then``:
    ``then(remote) -> list[Step]``, more work on the same connection once every step of the
    roles succeeded (a release of the host's application)."""

    check: bool = False
    diff: bool = False
    tags: tuple[str, ...] = ()
    then: Callable[[Remote], list[Step]] | None = None


@dataclass(frozen=True)
class PrepareContext:
    """What a role's ``prepare(v, context)`` is told: ``check`` => change nothing, say what
    would be done."""

    host: str
    check: bool


def provision_host(host, options: RunOptions = RunOptions()) -> HostResult:
    """Bring one inventory host to the state its roles describe. Returns its steps.

    Example: ``provision_host(inventory.host("api1"), RunOptions(check=True))``
    """
    v = host.vars
    roles = role_loader.host_roles(v)
    for role in roles:
        require(host, *role.meta["requires"])
    prepared = [] if options.tags else prepare(roles, v, PrepareContext(host.name, options.check))
    target = SshTarget.from_vars(host.name, v)
    cache = fact_cache.cache_file(host.name, target.address, target.port)
    with Remote(target) as remote:
        run = HostRun(remote, roles, v, options)
        steps = run.converge(fact_cache.load(cache))
        if run.facts is not None:
            fact_cache.save(cache, run.facts)
        if options.then and not any(s.status == "failed" for s in steps):
            steps += options.then(remote)
        return HostResult(host.name, prepared + steps, data={"ssh_channels": remote.channels})


def prepare(roles: list, v: dict, context: PrepareContext) -> list[Step]:
    """Each role's step before planning (issue a certificate, sign a list), once per host: its
    recap lines. A plan computed after it only reads what it left."""
    variables = role_loader.with_exports(roles, v, HostFacts())
    return [s for r in roles for s in r.call("prepare", variables[r.name], context, default=[])]


class HostRun:
    """One host's run: gather (one round trip when the guess is right), packages, plan, apply."""

    def __init__(self, remote: Remote, roles: list, v: dict, options: RunOptions):
        self.remote, self.roles, self.v, self.options = remote, roles, v, options
        wanted = {} if options.tags else self.by_role(HostFacts())
        self.wanted_packages = {
            role: [r for r in found if isinstance(r, Packages)] for role, found in wanted.items()
        }
        self.packages = [p for found in self.wanted_packages.values() for p in found]
        self.installed: dict[str, list[str]] = {}  # by role: the packages this run installed
        self.created: frozenset[str] = frozenset()  # tree directories this run creates
        self.found: frozenset[str] = frozenset()  # units enabled or running before this run
        self.before: ResourceFacts | None = None  # the units' states before our apt-get
        self.facts: HostFacts | None = None

    def by_role(self, facts: HostFacts) -> dict[str, list]:
        """What each role wants given ``facts``, by role name."""
        variables = role_loader.with_exports(self.roles, self.v, facts)
        return {
            role.name: role.call("resources", variables[role.name], facts, default=[])
            for role in self.roles
        }

    def wanted(self, facts: HostFacts) -> tuple[list, manifest.Bookkeeping]:
        """What the roles want given ``facts``, with the engine's part (the manifest first, the
        removals of roles that left last); a tagged run gets only the tagged resources and must
        not touch the manifest."""
        by_role = self.by_role(facts)
        found = [r for rs in by_role.values() for r in rs]
        if self.options.tags:
            return [r for r in found if tagged(r, self.options.tags)], manifest.NOTHING
        books = manifest.bookkeeping(by_role, facts, self.installed, self.created, self.found)
        last = [books.last] if books.last else []
        return [*books.first, *found, *books.removals, *last], books

    def resources(self, facts: HostFacts) -> list:
        """Every resource of this run given ``facts`` (``wanted``)."""
        return self.wanted(facts)[0]

    def handlers(self) -> list[Handler]:
        """The engine's handlers and every role's: a change notifies one by name, whoever owns it."""
        variables = role_loader.with_exports(self.roles, self.v, self.facts)
        mine = [
            h
            for r in self.roles
            for h in r.call("handlers", variables[r.name], self.facts, default=[])
        ]
        return ENGINE_HANDLERS + mine

    def validators(self) -> dict:
        """Every validator the host's roles declare, by name."""
        variables = role_loader.with_exports(self.roles, self.v, self.facts)
        return {
            k: x for r in self.roles for k, x in r.validators(variables[r.name], self.facts).items()
        }

    def fact_packages(self) -> tuple[str, ...]:
        """Packages whose versions the roles read, and those they install."""
        read = [name for role in self.roles for name in role.fact_packages()]
        return (*read, *(name for p in self.packages for name in p.names))

    def converge(self, guess: HostFacts | None) -> list[Step]:
        actual, covered = self.gather(guess)
        if self.options.tags:
            return self.apply(actual, covered)
        package_steps = [
            *plan_policy_leftover(self.facts),
            *(plan_packages(p, self.facts) for p in self.packages),
        ]
        if self.options.check and any(s.changed and s.kind == "packages" for s in package_steps):
            note = Step(
                "note", "later steps", "skipped", "they depend on packages not yet installed"
            )
            return package_steps + [note]
        if not self.options.check and any(s.changed for s in package_steps):
            if not self.install(package_steps):
                return package_steps
            self.installed = manifest.missing_packages(self.wanted_packages, self.facts)
            actual, covered = self.gather(self.facts)
        return package_steps + self.apply(actual, covered)

    def gather(self, guess: HostFacts | None) -> tuple[ResourceFacts, Watched]:
        """System facts, and the state of what the roles want given ``guess``, in one trip (a
        tagged run's few resources need no guess)."""
        basis = guess or (HostFacts() if self.options.tags else None)
        covered = Watched.of(*watched(self.resources(basis))) if basis else Watched()
        script = gather_script(self.fact_packages(), covered)
        result = self.remote.run_script(script, sudo=True, check=True)
        self.facts, actual = parse_gathered(result.stdout)
        return actual, covered

    def install(self, steps: list[Step]) -> bool:
        """apt-get for the missing packages (and our leftover policy-rc.d removed first), after
        reading the state of the units the roles run (``before``: what a package enables is
        not what ran before us); on failure mark the steps failed with apt's words."""
        commands = [c for s in steps if s.changed for c in s.commands]
        units = [
            r.name for rs in self.by_role(self.facts).values() for r in rs if isinstance(r, Service)
        ]
        probe = Watched.of((), (), units).script()
        script = "\n".join(["set -e", applying.host_lock(), probe, *commands]) + "\n"
        result = self.remote.run_script(script, sudo=True, timeout=1800)
        self.before = parse_resource_facts(result.stdout)
        for step in steps if not result.ok else []:
            if step.changed:
                step.status, step.reason = "failed", _last_line(result.stderr) or "apt-get failed"
        return result.ok

    def complete(self, actual: ResourceFacts, covered: Watched, resources: list) -> ResourceFacts:
        """``actual`` plus what the guess missed: one more round trip, only when it missed."""
        missing = Watched.of(*watched(resources)) - covered
        if not missing:
            return actual
        result = self.remote.run_script(missing.script(), sudo=True, check=True)
        return merge(actual, parse_resource_facts(result.stdout))

    def planned(self, actual: ResourceFacts, covered: Watched):
        """The resources to plan (no packages), the engine's bookkeeping, and complete facts."""
        wanted, books = self.wanted(self.facts)
        resources = [r for r in wanted if not isinstance(r, Packages)]
        facts = self.complete(actual, covered, resources)
        created = manifest.created_trees(resources, facts) - self.created
        found = manifest.found_units(resources, self.before or facts)
        found -= self.found | manifest.units_recorded(self.facts)
        if created or found:  # the manifest may record them: planned again
            self.created, self.found = self.created | created, self.found | found
            wanted, books = self.wanted(self.facts)
            resources = [r for r in wanted if not isinstance(r, Packages)]
        return resources, books, facts

    def left_packages(self, books: manifest.Bookkeeping, resources: list) -> list[Step]:
        """What the packages only the roles that left had installed need, after their removals
        (one more round trip, only then): configuration files they took away put back as the
        packages ship them, and the packages' enabled units disabled (the packages stay)."""
        if not books.packages:
            return []
        script = package_survey.survey_script(books.packages)
        found = package_survey.parse_survey(
            self.remote.run_script(script, sudo=True, check=True).stdout
        )
        # Not a remaining role's units; the leaving role's own again (after the reinstall).
        handled = [*(r.name for r in resources if isinstance(r, Service)), *books.reloads]
        steps = package_survey.package_steps(package_survey.leaving(found, handled), purge=False)
        for step in steps:
            step.after_checks = True
        return steps

    def reloads(self, books: manifest.Bookkeeping) -> list[Step]:
        """The units of the roles that left that ran before us: reloaded after the removals."""
        return books.reload_steps()

    def apply(self, actual: ResourceFacts, covered: Watched) -> list[Step]:
        """Plan every resource against the facts; unless checking, apply what changed."""
        resources, books, facts = self.planned(actual, covered)
        steps = plan([r for r in resources if r is not books.last], facts)
        steps += self.left_packages(books, resources)
        steps += self.reloads(books)
        steps += manifest.last_step(books, facts, steps)
        if self.options.diff:
            _attach_diffs(self.remote, steps)
        if self.options.check or not any(s.changed for s in steps):
            return steps
        validators = self.validators()
        _check_validators(steps, validators)
        script = applying.build_script(steps, self.handlers(), validators)
        result = self.remote.run_script(script, sudo=True, timeout=600)
        outcome = applying.parse_outcome(result.stdout, result.stderr)
        return applying.settle(steps, outcome, result.exit_status, validators)


def _check_validators(steps: list[Step], validators: dict) -> None:
    """One line when a file names a check no role of this host declares."""
    for step in steps:
        if step.changed and step.validate and step.validate not in validators:
            raise UserError(
                f"{step.name} is to be checked by {step.validate!r}, which no role of this host "
                "declares: add the role that owns it to the host's roles"
            )


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
    """Contents of regular files (missing ones are left out), base64 over one channel. Each
    file is announced by its index in ``paths``: a path never reaches an ``echo``."""
    import base64
    import shlex

    script = "\n".join(
        f"if [ -f {shlex.quote(p)} ]; then echo '@@file {i}'; base64 < {shlex.quote(p)}; fi"
        for i, p in enumerate(paths)
    )
    out = remote.run_script(script + "\ntrue\n", sudo=True, check=True).stdout
    contents, current, chunks = {}, None, []
    for line in [*out.splitlines(), "@@file "]:
        if line.startswith("@@file "):
            if current is not None:
                contents[paths[current]] = base64.b64decode("".join(chunks))
            index = line[len("@@file ") :]
            current, chunks = (int(index) if index else None), []
        else:
            chunks.append(line)
    return contents


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
