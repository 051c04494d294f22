"""``inv unprovision``: take away what provisioning put on a host, by the host's manifest, and
leave the packages' own files as the packages ship them.

1. **What the roles wrote** (``manifest.py``): the run of a host whose every role left, the
   engine's own plan (``manifest.bookkeeping({}, ...)``): units stopped and disabled (with a
   template unit we wrote, every instance of it and its drop-in directory), files deleted,
   trees we created deleted whole (the app's releases, shared state and environment),
   directories deleted when empty, users deleted. A unit that ran before us (the manifest's
   ``units_before``) is neither stopped nor disabled: it is reloaded once our files are gone
   and the roles' ``restore`` is done (step 2), so it keeps serving what was there before us.
2. **The packages we brought** (the manifest's ``packages``: those missing before our apt-get)
   and what apt would take away with them (``apt-get -s purge --autoremove``, less what was
   autoremovable before): with ``--packages`` purged; otherwise kept, but the units they enabled
   are disabled (a fresh host runs none of them) and a configuration file of theirs that is
   missing is put back from the package (``apt-get install --reinstall`` with dpkg's
   ``--force-confmiss``; services held back by our policy-rc.d), so ``dpkg --verify`` is clean.
   Each role that left may put back what it took away that no package restores (``restore``
   in its role.py: nginx's default site link, made by nginx-common's first install only).
3. **Our bookkeeping**: with ``--packages`` the manifest and ``/var/lib/mtls-deploy`` go;
   without, the manifest keeps only the packages we installed (so that a later
   ``unprovision --packages``, or a provision, still knows them). The local fact cache goes,
   and the host's lock file (``apply.HOST_LOCK``, held while it runs). A second run finds
   nothing to do.

Limits: packages that were there before us are never touched, their files neither (but for
what the roles wrote over them, such as the default site they took away, which ``restore``
puts back). Whether a unit ran before us is known from the first run of ours that managed it
(enabled or running before its apply and before its apt-get); a host provisioned by a version
that did not record ``units_before``, or whose first run installed packages but failed before
its manifest was written, has its units taken for ours: they are stopped and disabled.
"""

import base64
import shlex

from . import apply as applying
from . import fact_cache, manifest, role_loader
from .connection import Remote, SshTarget
from .facts import MANIFEST, HostFacts
from .operations import Step, changed, ok
from .package_survey import SURVEY, Survey, leaving, package_steps, parse_survey, survey_script  # noqa: F401
from .provision import HostRun, RunOptions
from .runner import HostResult


def recorded_packages(roles: dict[str, dict]) -> list[str]:
    """Every package the manifest says a role installed, each once, sorted."""
    return sorted({p for entry in roles.values() for p in entry["packages"]})


def restore_steps(roles: dict[str, dict], v: dict) -> list[Step]:
    """Each role's own ``restore`` (what it took away that no package puts back), for the
    roles the manifest lists; a role no longer found has none."""
    steps = []
    for name in sorted(roles):
        try:
            role = role_loader.load(name)
        except Exception:  # noqa: BLE001 (a role removed from the project: nothing to ask)
            continue
        for kind, thing, script in role.call("restore", v, default=[]):
            steps.append(changed(kind, thing, f"put back (role {name})", [script]))
    return steps


def kept_record(roles: dict[str, dict]) -> dict[str, dict]:
    """The manifest's roles reduced to the packages they installed (which stay on the host)."""
    empty = dict.fromkeys(manifest.KEYS, [])
    return {
        name: {**empty, "packages": e["packages"]} for name, e in roles.items() if e["packages"]
    }


def bookkeeping_step(roles: dict[str, dict], text: str, purge: bool) -> Step:
    """Last (a run that failed before keeps the manifest for the next): the manifest and its
    directory removed, or, when packages stay, the manifest listing only them."""
    kept = {} if purge else kept_record(roles)
    if not kept:
        folder = shlex.quote(MANIFEST.rsplit("/", 1)[0])
        command = f"rm -f {shlex.quote(MANIFEST)}; rmdir --ignore-fail-on-non-empty {folder}"
        return changed("manifest", MANIFEST, "removed: nothing of ours is left", [command])
    content = manifest.render(kept)
    if content.decode().strip() == text.strip():
        return ok("manifest", MANIFEST, "lists only the packages we installed")
    encoded, path = base64.b64encode(content).decode(), shlex.quote(MANIFEST)
    command = f"printf %s {encoded} | base64 -d > {path}.new && mv -f {path}.new {path}"
    return changed("manifest", MANIFEST, "now lists only the packages we installed", [command])


def unprovision_host(host, packages: bool = False, check: bool = False) -> HostResult:
    """Take away what provisioning put on ``host`` (an inventory host), as its manifest says.

    Example: ``unprovision_host(inventory.load().host("api1"), packages=True)``
    """
    v = host.vars
    target = SshTarget.from_vars(host.name, v)
    with Remote(target) as remote:
        steps = _unprovision(remote, v, packages, check)
    fact_cache.cache_file(host.name, target.address, target.port).unlink(missing_ok=True)
    return HostResult(host.name, steps)


def _unprovision(remote: Remote, v: dict, packages: bool, check: bool) -> list[Step]:
    """The removals by the manifest (the engine's plan, when it lists anything but packages),
    then packages and bookkeeping."""
    probe = remote.run(f"cat {shlex.quote(MANIFEST)}", sudo=True)
    if not probe.ok:
        return [ok("manifest", MANIFEST, "none on the host: nothing of ours to take away")]
    roles = manifest.read(HostFacts(manifest=probe.stdout))
    placed = {name for name, e in roles.items() if any(e[k] for k in manifest.REMOVAL_ORDER)}
    steps = Removals(remote, [], v, RunOptions(check=check)).converge(None) if placed else []
    if any(step.status == "failed" for step in steps):
        return steps
    names = recorded_packages(roles)
    found = remote.run_script(survey_script(names), sudo=True, check=True) if names else None
    before = manifest.reloaded(roles, {})
    survey = leaving(parse_survey(found.stdout if found else ""), before)
    later = package_steps(survey, packages)
    later += [] if packages else restore_steps({name: roles[name] for name in placed}, v)
    later += manifest.reload_steps(before, tuple(sorted(placed)))
    later.append(bookkeeping_step(roles, probe.stdout, packages))
    return steps + (later if check else _apply(remote, later))


class Removals(HostRun):
    """The engine's run of a host whose every role left, without its survey of the packages
    only they installed (unprovision surveys every recorded package itself, after) nor the
    reloads of the units that ran before us (after the roles' restores)."""

    def left_packages(self, books, resources) -> list[Step]:
        return []

    def reloads(self, books) -> list[Step]:
        return []  # after the roles' restores (unprovision's own steps)


def _apply(remote: Remote, steps: list[Step]) -> list[Step]:
    """Run the steps in order, one script, holding the host's lock; the first that fails stops
    it and is marked. Last, the lock's file goes too (in /run: nothing of ours stays; a run
    that waited for it then holds the removed file, which only another waiting run could
    contend for)."""
    lines = ["set -e", applying.host_lock()]
    for number, step in enumerate(steps):
        lines += [*step.commands, f"echo 'done {number}'"]
    lines.append(f"rm -f -- {shlex.quote(applying.HOST_LOCK)}")
    result = remote.run_script("\n".join(lines) + "\n", sudo=True, timeout=1800)
    done = {int(line.split()[1]) for line in result.stdout.splitlines() if line.startswith("done ")}
    for number, step in enumerate(steps):
        if number not in done:
            step.status = "failed" if number == len(done) else "skipped"
            step.reason = _last_line(result.stderr) if step.status == "failed" else "not reached"
    return steps


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "failed"
