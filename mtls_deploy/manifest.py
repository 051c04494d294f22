"""The host's manifest: what each role put on the host, so that a role that leaves takes it away.

One root-owned file, ``/var/lib/mtls-deploy/manifest.json``, read with the facts (same round
trip) and written by the apply script like any managed file: the engine adds it to the plan as a
``File`` of its own, so check mode, diffs and idempotence come for free. Per role it lists the
files and directories the role manages, the units it runs, its users, the packages it
installed (those missing before our apt-get; once recorded, they stay recorded), its trees:
directories marked ``Directory(tree=True)`` that a run of ours created (absent when planned;
once recorded, recorded while the role declares them), whose whole content is ours, and its
``units_before``: the units it runs that were already enabled or running the first time a run
of ours managed them, as seen before that run's apply and before its apt-get (a unit that a
package this run installs enables is ours); once recorded, recorded while the role runs them.

A role that left the host's role list has its entries taken away by ``Removed`` steps, tracked by
what we wrote, not guessed: units stopped and disabled, files deleted, trees deleted with all
they hold (never one with a path a remaining role manages inside it, never a system directory
or one less than two levels deep), directories deleted when empty, users deleted; packages
stay. A unit in ``units_before`` is neither stopped nor disabled (it serves what was there
before us): once our files are gone it is reloaded (``systemctl try-reload-or-restart``: one
that someone stopped stays stopped). A path, unit or user a remaining role manages stays. The
manifest is written first with the leaving role still in it, and once more, after the removals,
without it: a removal that fails leaves the role recorded, to be tried again next run.

Example manifest (sorted, no timestamps: a converged host's never changes; an empty ``trees``
or ``units_before`` is left out, so a manifest from before them stays byte for byte)::

    {"format": 1, "roles": {"app": {"directories": ["/srv/app"], "files": ["/srv/app/run"],
     "packages": ["app-server"], "trees": ["/srv/app"], "units": ["app-server", "web"],
     "units_before": ["web"], "users": ["app"]}}}
"""

import json
import posixpath
import shlex
from dataclasses import dataclass

from .errors import UserError
from .facts import MANIFEST, HostFacts, ResourceFacts, UnitState
from .operations import ENABLED, RUNNING, UNIT_DIRS, Step, changed, plan_file
from .resources import Directory, File, Packages, Removed, Service, User

FORMAT = 1
KEYS = ("directories", "files", "packages", "trees", "units", "units_before", "users")
OPTIONAL = ("trees", "units_before")  # left out of the file when empty (older manifests lack them)
# Removal order: what runs stops first, then files go, then trees (whole), then the (emptied)
# directories (a tree's parent among them), then users.
REMOVAL_ORDER = ("units", "files", "trees", "directories", "users")
REMOVED_KIND = {
    "units": "unit",
    "files": "file",
    "trees": "tree",
    "directories": "directory",
    "users": "user",
}
# Never removed whole, whatever a manifest says (nor anything less than two levels deep).
SYSTEM_DIRS = frozenset(
    f"/{top}/{sub}"
    for top, subs in {
        "usr": ("bin", "sbin", "lib", "lib64", "libexec", "local", "share", "include", "src"),
        "var": ("lib", "log", "cache", "spool", "backups", "mail", "opt", "tmp", "www", "local"),
        "etc": ("systemd", "ssh", "default", "apt", "security", "pam.d", "sudoers.d"),
        "run": ("systemd", "lock", "user", "sshd", "dbus"),
    }.items()
    for sub in subs
)


def entry(
    resources: list, installed: list[str] = (), ours=frozenset(), before=frozenset()
) -> dict[str, list[str]]:
    """What one role's ``resources`` manage, as its manifest entry; ``installed``: the packages
    it installed (missing before our apt-get); ``ours``: the paths of tree directories we
    created (its ``Directory(tree=True)`` among them are its trees); ``before``: the units that
    ran before us (those of them it runs are its ``units_before``)."""
    units = [r.name for r in resources if isinstance(r, Service) and r.running]
    found = {
        "directories": [r.path for r in resources if isinstance(r, Directory)],
        "files": [r.path for r in resources if isinstance(r, File)],
        "packages": list(installed),
        "trees": [r.path for r in resources if _is_tree(r) and r.path in ours],
        "units": units,
        "units_before": [u for u in units if u in before],
        "users": [r.name for r in resources if isinstance(r, User)],
    }
    for path in found["trees"]:
        if refusal := tree_refusal(path):
            raise UserError(f"Directory({path!r}, tree=True): {refusal}")
    return {key: sorted(set(values)) for key, values in found.items()}


def _is_tree(resource) -> bool:
    return isinstance(resource, Directory) and resource.tree


def tree_refusal(path: str) -> str | None:
    """Why ``path`` may not be removed whole (None when it may): not absolute and normal, ``/``,
    less than two levels deep (``/srv``), or a system directory (``/var/lib``).

    Example: ``tree_refusal("/srv")`` -> ``"less than two levels deep: ..."``
    """
    if not path.startswith("/") or path.startswith("//") or posixpath.normpath(path) != path:
        return "not an absolute, normal path"
    if path.count("/") < 2:
        return "less than two levels deep: a tree is a directory of its own, such as /srv/<name>"
    if path in SYSTEM_DIRS:
        return "a system directory, never removed whole"
    return None


def created_trees(resources: list, facts: ResourceFacts) -> frozenset[str]:
    """The tree directories among ``resources`` that are not there yet: this run creates them,
    so everything that comes under them is ours."""
    return frozenset(
        r.path for r in resources if _is_tree(r) and facts.path(r.path).kind == "absent"
    )


def found_units(resources: list, facts: ResourceFacts) -> frozenset[str]:
    """The units among ``resources`` that ``facts`` shows enabled or running (a static unit
    that is not running was enabled by nobody). Given facts from before our apply and before
    our apt-get: the units that ran before us."""
    units = [r.name for r in resources if isinstance(r, Service) and r.running]
    return frozenset(u for u in units if _was_on(facts.unit(u)))


def units_recorded(facts: HostFacts) -> frozenset[str]:
    """The units the host's manifest lists already, ours or there before us: nothing left to
    find about them (a converged host's run finds none and is not planned again)."""
    return frozenset(u for e in read(facts).values() for u in (*e["units"], *e["units_before"]))


def _was_on(unit: UnitState) -> bool:
    return (unit.enabled in ENABLED and unit.enabled != "static") or unit.active in RUNNING


def missing_packages(wanted: dict[str, list], facts: HostFacts) -> dict[str, list[str]]:
    """Per role, the names of its ``Packages`` that ``facts`` (before apt-get) lacks."""
    return {
        role: sorted(
            {n for p in resources if isinstance(p, Packages) for n in p.names} - set(facts.packages)
        )
        for role, resources in wanted.items()
    }


def read(facts: HostFacts) -> dict[str, dict[str, list[str]]]:
    """The roles the host's manifest lists, with their entries; ``{}`` when it has none. A
    manifest we cannot read is one line: guessing would remove the wrong things."""
    if not facts.manifest:
        return {}
    try:
        data = json.loads(facts.manifest)
        listed = data["roles"]
        return {str(name): _checked(e) for name, e in listed.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise UserError(
            f"{MANIFEST} on the host cannot be read ({type(error).__name__}: {error}): put "
            "back a good copy, or delete it (what roles that left the host had put there then "
            "stays)"
        ) from None


def _checked(found: dict) -> dict[str, list[str]]:
    """One role's entry: lists of names per key; paths absolute and normal, never ``/``."""
    result = {key: sorted({str(x) for x in found.get(key, [])}) for key in KEYS}
    for path in result["files"] + result["directories"]:
        if not path.startswith("/") or posixpath.normpath(path) != path or path == "/":
            raise ValueError(f"{path!r} is not an absolute, normal path")
    for path in result["trees"]:
        if refusal := tree_refusal(path):
            raise ValueError(f"tree {path!r} is {refusal}")
    return result


def updated(
    old: dict,
    resources: dict[str, list],
    installed: dict[str, list[str]],
    created=frozenset(),
    found=frozenset(),
) -> dict[str, dict[str, list[str]]]:
    """The current roles' entries: what their ``resources`` manage now, every package the
    old manifest recorded for them or they ``installed`` this run (sticky), their trees:
    recorded before, or ``created`` by this run, and their units that ran before us: recorded
    before (by any role), or ``found`` enabled or running before this run when no run of ours
    ran them yet (the old manifest lists them nowhere: else we may have enabled them)."""
    ours = {u for e in old.values() for u in e["units"]}
    before = {u for e in old.values() for u in e["units_before"]} | (set(found) - ours)
    return {
        role: entry(
            wanted,
            [*old.get(role, {}).get("packages", []), *installed.get(role, [])],
            {*old.get(role, {}).get("trees", []), *created},
            before,
        )
        for role, wanted in resources.items()
    }


def render(listed: dict) -> bytes:
    """The manifest file's content: sorted, indented JSON with a final newline. An empty
    ``trees`` or ``units_before`` is left out (a host's manifest from before them stays byte
    for byte)."""
    shown = {
        name: {key: x for key, x in e.items() if key not in OPTIONAL or x}
        for name, e in listed.items()
    }
    return (
        json.dumps({"format": FORMAT, "roles": shown}, indent=2, sort_keys=True) + "\n"
    ).encode()


def removals(left: dict[str, dict], kept: dict[str, dict]) -> list[Removed]:
    """What the roles in ``left`` had put there and no role in ``kept`` manages: units (not
    those that ran before us: ``reloaded``), files, trees (whole, when no kept path is in
    them; what they hold is not listed again), directories (deepest first), users. Their
    packages stay."""
    managed = {(key, x) for e in kept.values() for key in KEYS for x in e[key]}
    # What ran before us is not stopped: it is reloaded (``reloaded``).
    managed |= {("units", u) for e in left.values() for u in e["units_before"]}
    paths = {x for key, x in managed if key in ("files", "directories", "trees")}
    trees = {t for e in left.values() for t in e["trees"] if not any(_inside(p, t) for p in paths)}
    found = []
    for key in REMOVAL_ORDER:
        for role, e in sorted(left.items()):
            found += [
                Removed(REMOVED_KIND[key], x, role)
                for x in e[key]
                if (key, x) not in managed and x not in paths and _goes(key, x, trees)
            ]
    return sorted(found, key=_removal_rank)


def reloaded(left: dict[str, dict], kept: dict[str, dict]) -> tuple[str, ...]:
    """The units of the roles in ``left`` that ran before us and no role in ``kept`` runs:
    they stay enabled and running, and are reloaded once our files are gone."""
    running = {u for e in kept.values() for u in e["units"]}
    return tuple(sorted({u for e in left.values() for u in e["units_before"]} - running))


def reload_steps(units, left, unit_files: bool = False) -> list[Step]:
    """``units`` (``reloaded``) reloaded after the removals of the roles ``left`` (after a
    daemon-reload when one of our ``unit_files`` went): they serve what is not ours, no longer
    what was. ``try-``: a unit someone stopped stays stopped."""
    steps = []
    for unit in units:
        commands = ["systemctl daemon-reload"] if unit_files else []
        commands.append(f"systemctl try-reload-or-restart -- {shlex.quote(unit)}")
        reason = f"{', '.join(left)} left: reloaded without our files (ran before us: stays)"
        step = changed("unit", unit, reason, ["\n".join(commands)])
        step.after_checks = True
        steps.append(step)
    return steps


def _inside(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree + "/")


def _goes(key: str, thing: str, trees: set[str]) -> bool:
    """Whether ``thing`` has a removal of its own: a tree when it goes whole; a file or
    directory when no tree that goes holds it (it goes with the tree)."""
    if key == "trees":
        return thing in trees
    return key not in ("files", "directories") or not any(_inside(thing, t) for t in trees)


def _removal_rank(removed: Removed) -> tuple:
    """Units (sockets and timers before the services they start), files, directories deepest
    first, users."""
    kind = tuple(REMOVED_KIND.values()).index(removed.kind)
    if removed.kind == "unit":
        return (kind, removed.name.endswith(".service") or "." not in removed.name, removed.name)
    if removed.kind in ("directory", "tree"):
        return (kind, -removed.name.count("/"), removed.name)
    return (kind, False, removed.name)


@dataclass(frozen=True)
class Bookkeeping:
    """The engine's own part of a plan: the manifest (before the roles' resources), the
    removals of the roles that left, and the manifest's last write once they are done."""

    first: list
    removals: list[Removed]
    last: File | None
    left: tuple[str, ...] = ()  # the roles that left the host's list (with things to remove)
    packages: tuple[str, ...] = ()  # what only they installed: no remaining role wants it
    reloads: tuple[str, ...] = ()  # their units that ran before us: reloaded, not stopped

    def reload_steps(self) -> list[Step]:
        """The ``reloads``, after the removals (and a daemon-reload when a unit file went)."""
        unit_files = any(r.kind == "file" and r.name.startswith(UNIT_DIRS) for r in self.removals)
        return reload_steps(self.reloads, self.left, unit_files)


NOTHING = Bookkeeping([], [], None)


def bookkeeping(
    resources: dict[str, list],
    facts: HostFacts,
    installed: dict,
    created=frozenset(),
    found=frozenset(),
) -> Bookkeeping:
    """The manifest for the roles' ``resources`` (by role), given the one on the host
    (``facts``), the packages ``installed`` this run (by role), the tree directories this
    run ``created`` and the units ``found`` enabled or running before it (``found_units``). A
    role that left keeps its packages recorded (they stay installed: a later ``unprovision
    --packages`` still knows them)."""
    old = read(facts)
    current = updated(old, resources, installed, created, found)
    left = {role: e for role, e in old.items() if role not in current}
    leaving = {role: e for role, e in left.items() if any(e[k] for k in REMOVAL_ORDER)}
    staying = {
        role: {**dict.fromkeys(KEYS, []), "packages": e["packages"]} for role, e in left.items()
    }
    staying = {role: e for role, e in staying.items() if e["packages"]}
    folder = Directory(posixpath.dirname(MANIFEST), mode=0o755)
    first = File(MANIFEST, render({**left, **current}), mode=0o644)
    last = File(MANIFEST, render({**staying, **current}), mode=0o644) if leaving else None
    wanted = {
        n for rs in resources.values() for r in rs if isinstance(r, Packages) for n in r.names
    }
    wanted |= {p for e in current.values() for p in e["packages"]}
    only = sorted({p for e in leaving.values() for p in e["packages"]} - wanted)
    return Bookkeeping(
        [folder, first],
        removals(leaving, current),
        last,
        tuple(sorted(leaving)),
        tuple(only),
        reloaded(leaving, current),
    )


def last_step(books: Bookkeeping, facts: ResourceFacts, steps: list[Step]) -> list[Step]:
    """The manifest written without the roles that left, after their removals: none when there
    is nothing to remove or a removal could not even be planned (the role stays recorded)."""
    if books.last is None or any(s.status == "failed" for s in steps):
        return []
    step = plan_file(books.last, facts.path(MANIFEST))
    step.kind, step.reason = "manifest", f"{', '.join(books.left)} left: no longer listed"
    step.after_checks = True
    return [step]
