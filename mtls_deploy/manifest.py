"""The host's manifest: what each role put on the host, so that a role that leaves takes it away.

One root-owned file, ``/var/lib/mtls-deploy/manifest.json``, read with the facts (same round
trip) and written by the apply script like any managed file: the engine adds it to the plan as a
``File`` of its own, so check mode, diffs and idempotence come for free. Per role it lists the
files and directories the role manages, the units it runs, its users, and the packages it
installed (those missing before our apt-get; once recorded, they stay recorded).

A role that left the host's role list has its entries taken away by ``Removed`` steps, tracked by
what we wrote, not guessed: units stopped and disabled, files deleted, directories deleted when
empty, users deleted; packages stay. A path, unit or user a remaining role manages stays. The
manifest is written first with the leaving role still in it, and once more, after the removals,
without it: a removal that fails leaves the role recorded, to be tried again next run.

Example manifest (sorted, no timestamps: a converged host's never changes)::

    {"format": 1, "roles": {"app": {"directories": ["/srv/app"], "files": ["/srv/app/run"],
     "packages": ["app-server"], "units": ["app-server"], "users": ["app"]}}}
"""

import json
import posixpath
from dataclasses import dataclass

from .errors import UserError
from .facts import MANIFEST, HostFacts, ResourceFacts
from .operations import Step, plan_file
from .resources import Directory, File, Packages, Removed, Service, User

FORMAT = 1
KEYS = ("directories", "files", "packages", "units", "users")
# Removal order: what runs stops first, then files go, then the (emptied) directories, then users.
REMOVAL_ORDER = ("units", "files", "directories", "users")
REMOVED_KIND = {"units": "unit", "files": "file", "directories": "directory", "users": "user"}


def entry(resources: list, installed: list[str] = ()) -> dict[str, list[str]]:
    """What one role's ``resources`` manage, as its manifest entry; ``installed``: the packages
    it installed (missing before our apt-get)."""
    found = {
        "directories": [r.path for r in resources if isinstance(r, Directory)],
        "files": [r.path for r in resources if isinstance(r, File)],
        "packages": list(installed),
        "units": [r.name for r in resources if isinstance(r, Service) and r.running],
        "users": [r.name for r in resources if isinstance(r, User)],
    }
    return {key: sorted(set(values)) for key, values in found.items()}


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
    return result


def updated(
    old: dict, resources: dict[str, list], installed: dict[str, list[str]]
) -> dict[str, dict[str, list[str]]]:
    """The current roles' entries: what their ``resources`` manage now, and every package the
    old manifest recorded for them or they ``installed`` this run (sticky)."""
    return {
        role: entry(found, [*old.get(role, {}).get("packages", []), *installed.get(role, [])])
        for role, found in resources.items()
    }


def render(roles: dict) -> bytes:
    """The manifest file's content: sorted, indented JSON with a final newline."""
    return (
        json.dumps({"format": FORMAT, "roles": roles}, indent=2, sort_keys=True) + "\n"
    ).encode()


def removals(left: dict[str, dict], kept: dict[str, dict]) -> list[Removed]:
    """What the roles in ``left`` had put there and no role in ``kept`` manages: units, files,
    directories (deepest first), users. Their packages stay."""
    managed = {(key, x) for e in kept.values() for key in KEYS for x in e[key]}
    paths = {x for key, x in managed if key in ("files", "directories")}
    found = []
    for key in REMOVAL_ORDER:
        for role, e in sorted(left.items()):
            found += [
                Removed(REMOVED_KIND[key], x, role)
                for x in e[key]
                if (key, x) not in managed and x not in paths
            ]
    return sorted(found, key=_removal_rank)


def _removal_rank(removed: Removed) -> tuple:
    """Units (sockets and timers before the services they start), files, directories deepest
    first, users."""
    kind = tuple(REMOVED_KIND.values()).index(removed.kind)
    if removed.kind == "unit":
        return (kind, removed.name.endswith(".service") or "." not in removed.name, removed.name)
    if removed.kind == "directory":
        return (kind, -removed.name.count("/"), removed.name)
    return (kind, False, removed.name)


@dataclass(frozen=True)
class Bookkeeping:
    """The engine's own part of a plan: the manifest (before the roles' resources), the
    removals of the roles that left, and the manifest's last write once they are done."""

    first: list
    removals: list[Removed]
    last: File | None
    left: tuple[str, ...] = ()  # the roles that left the host's list


NOTHING = Bookkeeping([], [], None)


def bookkeeping(resources: dict[str, list], facts: HostFacts, installed: dict) -> Bookkeeping:
    """The manifest for the roles' ``resources`` (by role), given the one on the host
    (``facts``) and the packages ``installed`` this run (by role)."""
    old = read(facts)
    current = updated(old, resources, installed)
    left = {role: e for role, e in old.items() if role not in current}
    folder = Directory(posixpath.dirname(MANIFEST), mode=0o755)
    first = File(MANIFEST, render({**left, **current}), mode=0o644)
    last = File(MANIFEST, render(current), mode=0o644) if left else None
    return Bookkeeping([folder, first], removals(left, current), last, tuple(sorted(left)))


def last_step(books: Bookkeeping, facts: ResourceFacts, steps: list[Step]) -> list[Step]:
    """The manifest written without the roles that left, after their removals: none when there
    is nothing to remove or a removal could not even be planned (the role stays recorded)."""
    if books.last is None or any(s.status == "failed" for s in steps):
        return []
    step = plan_file(books.last, facts.path(MANIFEST))
    step.kind, step.reason = "manifest", f"{', '.join(books.left)} left: no longer listed"
    step.after_checks = True
    return [step]
