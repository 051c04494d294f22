"""The shell scripts a release run sends, built from a ``ReleaseContext`` and the backend's
``ReleaseSteps``. Pure: text out, no I/O. Every path is quoted; every command of a backend is
a ``ShellCommand`` rendered by ``mtls_deploy.shell``.

Each script prints ``@@phase <name>`` before each phase, so the last one printed says where a
failure happened; the last line of its stderr says why.
"""

import shlex

from ..apply import host_lock
from ..facts import HostFacts, parse_system_facts, system_facts_script
from ..shell import render, statement
from .steps import ReleaseContext, ReleaseSteps

PHASE = "@@phase "
RELEASES_MARK = "@@releases"
RESTORE_FAILED = "@@restore-failed"
AFTER_SWITCH = ("prune", "retire")  # phases after a successful activate
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
q = shlex.quote


PROBE = """\
if [ ! -d "$root/releases" ]; then exit 0; fi
echo provisioned
echo "current $(readlink "$root/current" 2>/dev/null || true)"
for d in "$root"/releases/*; do
  if [ -d "$d" ] && [ ! -L "$d" ]; then echo "release ${d##*/}"; fi
done
"""


def probe_script(root: str, packages: tuple[str, ...] = ()) -> str:
    """One round trip: the system facts (the versions of ``packages``, which the backend's
    paths follow), then whether the host is provisioned for releases, where ``current``
    points, which releases exist."""
    facts = system_facts_script(packages)
    return f"{facts}echo {RELEASES_MARK}\nroot={q(root)}\n{PROBE}"


def split_probe(output: str) -> tuple[HostFacts, str]:
    """The probe's output as the host's facts and the lines about its releases."""
    system, _, releases = output.partition(f"{RELEASES_MARK}\n")
    return parse_system_facts(system), releases


def install_script(ctx: ReleaseContext, steps: ReleaseSteps, upload: str) -> str:
    """Extract the uploaded tar into ``<release>.partial`` (as root, files owned by root),
    link the shared dirs, build and check as the app's user, hand it back to root, rename it
    to ``<release>``. Any failure removes ``<release>.partial`` and nothing else."""
    partial, user = q(ctx.build_dir), q(steps.user)
    lines = [
        "set -e",
        "umask 022",
        f"partial={partial}",
        f'home=$(mktemp -d) && chown {user} "$home"',
        f'trap \'status=$?; rm -rf -- "$home" {q(upload)}; '
        'if [ $status -ne 0 ]; then rm -rf -- "$partial"; fi\' EXIT',
        _phase("extract"),
        'rm -rf -- "$partial"',
        'mkdir -m 0755 -- "$partial"',
        f'tar -xf {q(upload)} -C "$partial" --no-same-owner',
        *_shared_links(ctx, steps.user),
        f'chown -R -h {user}: -- "$partial"',
        *_as_user("build", steps.build, ctx, steps.user),
        *_as_user("check", steps.check, ctx, steps.user),
        _phase("finish"),
        'chown -R -h root:root -- "$partial"',
        'chmod -R u+rwX,go+rX,go-w -- "$partial"',
        f'mv -T -- "$partial" {q(ctx.release)}',
    ]
    return "\n".join(lines) + "\n"


def _phase(name: str) -> str:
    return f"echo {q(PHASE + name)}"


def _shared_links(ctx: ReleaseContext, user: str) -> list[str]:
    """Each shared dir made when missing (the app's user's, 0750) and linked into the release
    in place of whatever the tree had there."""
    lines = []
    for name in ctx.shared:
        shared, inside = f"{ctx.shared_root}/{name}", f"{ctx.build_dir}/{name}"
        lines += [
            f"[ -d {q(shared)} ] || install -d -o {q(user)} -m 0750 -- {q(shared)}",
            f"rm -rf -- {q(inside)}",
            f"mkdir -p -- {q(inside.rsplit('/', 1)[0])}",
            f"ln -s -- {q(shared)} {q(inside)}",
        ]
    return lines


def _as_user(phase: str, commands, ctx: ReleaseContext, user: str) -> list[str]:
    """``commands`` as ``user`` in the build dir, with a HOME of their own and without the
    app's environment file."""
    if ctx.rollback or not commands:
        return []
    runner = f'runuser -u {q(user)} -- env HOME="$home" PATH={PATH} sh -c'
    run = [f"(cd {q(ctx.build_dir)} && {runner} {q(render(c))})" for c in commands]
    return [_phase(phase), *run]


def switch_script(
    ctx: ReleaseContext, steps: ReleaseSteps, previous: ReleaseSteps | None, prune=()
) -> str:
    """``start``, the atomic switch of ``current``, ``activate`` (undone on failure: ``current``
    back to the previous release and its ``activate`` run again), pruning, then ``retire`` (which
    sees only the releases kept: unused virtualenvs go at once). A new release that failed to
    start or activate is removed; a rollback's target is kept. First the host's lock (another
    run's switch or apply finishes first), then ``current`` must still be what the probe saw:
    else another deploy switched in between, and this one stops."""
    drop = [] if ctx.rollback else [f"rm -rf -- {q(ctx.release)}"]
    lines = [
        "set -e",
        _phase("lock"),
        host_lock(on_busy="; ".join(drop)),
        *_guarded((_unchanged(ctx),), drop),
        _phase("start"),
        *_guarded(steps.start, drop),
        _phase("switch"),
        _switch(ctx.current, ctx.root, ctx.release),
        _phase("activate"),
        *_guarded(steps.activate, _restore(ctx, previous) + drop),
        _phase("prune"),
        *(f"rm -rf -- {q(f'{ctx.root}/releases/{name}')}" for name in prune),
        _stale_partials(ctx.root),
        _phase("retire"),
        *(statement(c) for c in steps.retire),
    ]
    return "\n".join(lines) + "\n"


def _unchanged(ctx: ReleaseContext) -> str:
    """True when ``current`` is as the probe found it (pointing at ``previous``, or absent);
    else one line saying what it is now."""
    expected = "releases/" + ctx.previous.rsplit("/", 1)[-1] if ctx.previous else "none"
    moved = (
        "%s changed since this run looked (now %s, was %s): another deploy or rollback ran "
        "meanwhile; run again\\n"
    )
    return (
        f"now=$(readlink -- {q(ctx.current)} 2>/dev/null || echo none)\n"
        f'[ "$now" = {q(expected)} ] || '
        f'{{ printf {q(moved)} {q(ctx.current)} "$now" {q(expected)} >&2; false; }}'
    )


def _stale_partials(root: str) -> str:
    """Builds a killed run left behind (``<id>.partial`` older than an hour): removed."""
    releases = q(f"{root}/releases")
    return f"find {releases} -mindepth 1 -maxdepth 1 -name '*.partial' -mmin +60 -exec rm -rf -- {{}} +"


def _guarded(commands, undo: list[str]) -> list[str]:
    """Each command; on its failure the ``undo`` lines run and the script exits 1."""
    cleanup = "; ".join(undo) + "; " if undo else ""
    return [f"if ! {statement(c)}; then {cleanup}exit 1; fi" for c in commands]


def _switch(current: str, root: str, release: str) -> str:
    """``current`` replaced in one rename(2): a relative symlink made beside it, moved over it."""
    target = "releases/" + release.rsplit("/", 1)[-1]
    return f"ln -sfn -- {q(target)} {q(current + '.new')} && mv -T -- {q(current + '.new')} {q(current)}"


def _restore(ctx: ReleaseContext, previous: ReleaseSteps | None) -> list[str]:
    """Back to the release that served before: ``current`` switched back and its ``activate``
    run again (its output kept off the reason line)."""
    if ctx.previous is None:
        return [f"rm -f -- {q(ctx.current)}"]
    back = [_switch(ctx.current, ctx.root, ctx.previous)]
    for command in previous.activate if previous else ():
        back.append(f"{{ {statement(command)} >/dev/null 2>&1 || echo {RESTORE_FAILED}; }}")
    return back


def failed_phase(stdout: str) -> str:
    """The phase a failed script was in: the last ``@@phase`` line it printed."""
    phases = [line[len(PHASE) :] for line in stdout.splitlines() if line.startswith(PHASE)]
    return phases[-1] if phases else "connect"


def last_line(text: str) -> str:
    """The last non-empty line of ``text`` (a failed command's reason)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
