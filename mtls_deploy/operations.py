"""The plan: desired resources + facts -> steps. Pure Python over plain data; no host needed.

Each step says ok or changed with a reason ("already present, sha256 matches"), and for a
change carries the shell commands that make it so. ``apply.py`` runs them; check mode
stops after the plan, so it costs nothing extra and cannot lie.
"""

import difflib
import hashlib
import re
import shlex
from dataclasses import dataclass, field

from .facts import POLICY_RC, POLICY_RC_MARK, HostFacts, PathState, ResourceFacts, check_key
from .resources import Absent, Command, Directory, File, Packages, Removed, Service, User
from .shell import render, statement

APT_LISTS_MAX_AGE = 24 * 3600
DIFF_MAX_BYTES = 64 * 1024
DAEMON_RELOAD = "daemon-reload"  # the engine's handler: systemd re-reads its unit files
UNIT_DIRS = ("/etc/systemd/", "/run/systemd/", "/lib/systemd/", "/usr/lib/systemd/")


@dataclass
class Step:
    """One line of the report: what, ok or changed (or failed after apply), why, and how."""

    kind: str
    name: str
    status: str
    reason: str
    commands: list[str] = field(default_factory=list)
    notify: tuple[str, ...] = ()
    validate: str | None = None
    resource: object = None
    diff: str | None = None
    after_checks: bool = False  # applied after the validators, before services (a removal)

    @property
    def changed(self) -> bool:
        return self.status == "changed"


def ok(kind: str, name: str, reason: str, resource=None) -> Step:
    return Step(kind, name, "ok", reason, resource=resource)


def changed(kind, name, reason, commands, resource=None, notify=(), validate=None) -> Step:
    return Step(kind, name, "changed", reason, list(commands), tuple(notify), validate, resource)


# --- packages ---------------------------------------------------------------------------------


def plan_packages(desired: Packages, facts: HostFacts) -> Step:
    """Install what is missing, refreshing the package lists first when they are stale."""
    missing = [name for name in desired.names if name not in facts.packages]
    label = " ".join(desired.names)
    if not missing:
        return ok("packages", label, "all installed", desired)
    commands = []
    if facts.apt_lists_age is None or facts.apt_lists_age > APT_LISTS_MAX_AGE:
        commands.append("apt-get update -qq")
    commands.append(install_without_starting(missing))
    return changed("packages", label, f"missing: {' '.join(missing)}", commands, desired)


def install_without_starting(names: list[str], policy: str = POLICY_RC) -> str:
    """apt-get install with services held back (policy-rc.d), so a distribution default
    (a web server on port 80) never starts before our configuration is in place. Our policy-rc.d
    goes on every exit path (a trap: apt failing under ``set -e``, a dropped connection);
    one left by a killed run is recognised by its mark and replaced, then removed. A
    policy-rc.d of someone else's is left alone and obeyed."""
    quoted = " ".join(shlex.quote(n) for n in names)
    path = shlex.quote(policy)
    body = shlex.quote(f"#!/bin/sh\n{POLICY_RC_MARK}\nexit 101\n")
    return "\n".join(
        [
            remove_our_policy(policy),
            "own_policy=",
            f"if [ ! -e {path} ] && [ ! -L {path} ]; then",
            f"  own_policy=1; trap 'rm -f {path}' EXIT",
            f"  trap 'rm -f {path}; trap - EXIT; exit 129' HUP INT TERM PIPE",
            f"  printf {body} > {path}; chmod 755 {path}",
            "fi",
            "apt_status=0",
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
            f"-o Dpkg::Options::=--force-confold {quoted} >/dev/null || apt_status=$?",
            f'if [ -n "$own_policy" ]; then rm -f {path}; trap - EXIT HUP INT TERM PIPE; fi',
            "[ $apt_status -eq 0 ]",
        ]
    )


def remove_our_policy(policy: str = POLICY_RC) -> str:
    """Remove ``policy`` if it is ours (it holds our mark line); anyone else's stays."""
    path = shlex.quote(policy)
    mark = shlex.quote(POLICY_RC_MARK)
    return f"if [ -f {path} ] && grep -qxF -- {mark} {path}; then rm -f {path}; fi"


def plan_policy_leftover(facts: HostFacts) -> list[Step]:
    """A policy-rc.d of ours left by a run killed mid-install refuses every service start:
    remove it (the facts found our mark in it)."""
    if not facts.policy_rc_leftover:
        return []
    reason = "ours, left by an interrupted install: it refuses every service start"
    return [changed("absent", POLICY_RC, reason, [remove_our_policy()])]


# --- users and directories ----------------------------------------------------------------------


def plan_user(desired: User, actual: ResourceFacts) -> Step:
    """A system user for a service; present users are left alone."""
    if desired.name in actual.users:
        return ok("user", desired.name, "present", desired)
    groups = f" --groups {shlex.quote(','.join(desired.groups))}" if desired.groups else ""
    command = (
        f"useradd --system --no-create-home --home-dir {shlex.quote(desired.home)} "
        f"--shell /usr/sbin/nologin{groups} {shlex.quote(desired.name)}"
    )
    return changed("user", desired.name, "absent -> created", [command], desired)


def plan_directory(desired: Directory, actual: PathState) -> Step:
    """mkdir, then fix owner and mode; a file or link in the way is an error, not a change."""
    if actual.kind not in ("absent", "directory"):
        return Step(
            "directory", desired.path, "failed", f"{actual.kind} in the way", resource=desired
        )
    fixes = attribute_changes(desired, actual)
    if actual.kind == "directory" and not fixes:
        return ok("directory", desired.path, "present, owner and mode match", desired)
    path = shlex.quote(desired.path)
    commands = [f"mkdir -p {path}", *ownership_commands(desired, path)]
    reason = "absent -> created" if actual.kind == "absent" else ", ".join(fixes)
    return changed("directory", desired.path, reason, commands, desired)


def attribute_changes(desired, actual: PathState) -> list[str]:
    """Human-readable differences in owner, group and mode (normalised as numbers and names)."""
    if actual.kind == "absent":
        return []
    found = []
    if actual.owner != desired.owner or actual.group != desired.group:
        found.append(f"owner {actual.owner}:{actual.group} -> {desired.owner}:{desired.group}")
    if actual.mode != desired.mode:
        found.append(f"mode {actual.mode:04o} -> {desired.mode:04o}")
    return found


def directory_guard(desired: Directory) -> str:
    """A shell line that stops a ``set -e`` script (exit 5) unless ``desired.path`` is, at this
    moment, a directory (not a link) with the desired owner and mode. Put it right before files
    are written into a directory whose facts were read a round trip earlier: a link swapped in
    since would send them elsewhere, a looser mode would let other users open them."""
    path = shlex.quote(desired.path)
    wanted = shlex.quote(f"directory {desired.owner} {desired.mode:o}")
    message = shlex.quote(
        f"{desired.path} is a link, or not a directory of {desired.owner}'s with mode "
        f"{desired.mode:04o}: nothing written; fix it and run again"
    )
    found = f"\"$(stat -c '%F %U %a' -- {path} 2>/dev/null)\""
    return f"[ ! -L {path} ] && [ {found} = {wanted} ] || {{ echo {message} >&2; exit 5; }}"


def ownership_commands(desired, quoted_path: str) -> list[str]:
    return [
        f"chown {shlex.quote(desired.owner)}:{shlex.quote(desired.group)} {quoted_path}",
        f"chmod {desired.mode:04o} {quoted_path}",
    ]


# --- files ------------------------------------------------------------------------------------


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def plan_file(desired: File, actual: PathState) -> Step:
    """Write when content differs (by sha256), else fix only owner and mode."""
    if actual.kind not in ("absent", "file"):
        return Step("file", desired.path, "failed", f"{actual.kind} in the way", resource=desired)
    digest = sha256(desired.content)
    fixes = attribute_changes(desired, actual)
    if actual.kind == "file" and actual.sha256 == digest and not fixes:
        return ok("file", desired.path, "already present, sha256 matches", desired)
    if actual.kind == "file" and actual.sha256 == digest and same_owner(desired, actual):
        commands = ownership_commands(desired, shlex.quote(desired.path))
        reason = ", ".join(fixes)
    elif actual.kind == "file" and actual.sha256 == digest:
        # Replaced rather than chowned: a login user's apply (no sudo) can rename a new file of
        # its own over another user's, not chown it; root ends with the same file either way.
        commands, reason = [write_file_command(desired, digest)], ", ".join(fixes)
    else:
        commands = [write_file_command(desired, digest)]
        reason = "absent -> created" if actual.kind == "absent" else content_reason(actual, digest)
    return changed(
        "file", desired.path, reason, commands, desired, desired.notify, desired.validate
    )


def same_owner(desired, actual: PathState) -> bool:
    return (actual.owner, actual.group) == (desired.owner, desired.group)


def content_reason(actual: PathState, digest: str) -> str:
    return f"content differs (sha256 {(actual.sha256 or '?')[:12]} -> {digest[:12]})"


def write_file_command(desired: File, digest: str) -> str:
    """Write to a temporary file beside the target, check its sha256, set owner and mode,
    then rename over the target: the file is always either the old one or the new one."""
    import base64

    path = shlex.quote(desired.path)
    folder = shlex.quote(desired.path.rsplit("/", 1)[0] or "/")
    encoded = base64.encodebytes(desired.content).decode()
    return "\n".join(
        [
            f"t=$(mktemp {folder}/.mtls-XXXXXX.tmp)",
            "base64 -d > \"$t\" <<'MTLS_DEPLOY_EOF'",
            encoded.rstrip("\n"),
            "MTLS_DEPLOY_EOF",
            f"echo '{digest}  '\"$t\" | sha256sum -c --status",
            *ownership_commands(desired, '"$t"'),
            f'mv -f "$t" {path}',
        ]
    )


def plan_absent(desired: Absent, actual: PathState) -> Step:
    """Remove a file or link (never a directory: that would be a surprise)."""
    if actual.kind == "absent":
        return ok("absent", desired.path, "already absent", desired)
    if actual.kind == "directory":
        return Step(
            "absent", desired.path, "failed", "is a directory; remove it by hand", resource=desired
        )
    command = f"rm -f {shlex.quote(desired.path)}"
    return changed(
        "absent",
        desired.path,
        f"{actual.kind} present -> removed",
        [command],
        desired,
        desired.notify,
        desired.validate,
    )


# --- services ---------------------------------------------------------------------------------


ENABLED = ("enabled", "static", "indirect", "generated", "alias")
RUNNING = ("active", "reloading", "activating")


def plan_service(desired: Service, actual_enabled: str, actual_active: str) -> Step:
    """enable --now (or disable --now); 'static' and 'indirect' units count as enabled."""
    enabled = actual_enabled in ENABLED
    running = actual_active in RUNNING
    name = shlex.quote(desired.name)
    if desired.running:
        if running and (enabled or not desired.enabled):
            return ok("service", desired.name, "enabled and running", desired)
        verb = "enable --now" if desired.enabled else "start"
        reason = ", ".join(
            filter(None, ["" if enabled else "not enabled", "" if running else "not running"])
        )
        return changed("service", desired.name, reason, [f"systemctl {verb} {name}"], desired)
    if not running and not enabled:
        return ok("service", desired.name, "stopped and disabled", desired)
    return changed(
        "service", desired.name, "running or enabled", [f"systemctl disable --now {name}"], desired
    )


# --- commands ---------------------------------------------------------------------------------


def plan_command(
    desired: Command, creates: PathState | None, unless_succeeded: bool | None
) -> Step:
    """Run ``command`` unless its guard says it is done (``creates`` exists, ``unless`` passed)."""
    name = render(desired.command)
    unless = render(desired.unless) if desired.unless else None
    if creates is not None and creates.kind != "absent":
        return ok("command", name, f"{desired.creates} exists", desired)
    if unless_succeeded:
        return ok("command", name, f"`{unless}` succeeded", desired)
    reason = (
        f"{desired.creates} absent"
        if desired.creates
        else (f"`{unless}` failed" if unless else "no guard: runs every time")
    )
    command = statement(desired.command)
    return changed("command", name, reason, [command], desired, desired.notify)


# --- what a role that left the host had put there -------------------------------------------


def plan_removed(desired: Removed, facts: ResourceFacts) -> Step:
    """Take away one thing the manifest says a role that left had put there; already gone is
    ok. Runs after the validators (a refused configuration removes nothing), before services."""
    present, command = REMOVALS[desired.kind](desired.name, facts)
    why = f"role {desired.role} left"
    if present is None:
        found = facts.path(desired.name).kind
        return Step(desired.kind, desired.name, "failed", f"{why}, but a {found} is there now")
    if not present:
        return ok(desired.kind, desired.name, f"{why}: already gone", desired)
    reload = desired.kind in ("unit", "file") and desired.name.startswith(UNIT_DIRS)
    step = changed(
        desired.kind,
        desired.name,
        f"{why}: {REMOVED[desired.kind]}",
        [command],
        desired,
        (DAEMON_RELOAD,) if reload else (),
    )
    step.after_checks = True
    return step


def _unit_removal(name: str, facts: ResourceFacts) -> tuple[bool | None, str]:
    unit = facts.unit(name)
    present = unit.enabled in ENABLED or unit.active in RUNNING
    return present, f"systemctl disable --now {shlex.quote(name)}"


def _file_removal(path: str, facts: ResourceFacts) -> tuple[bool | None, str]:
    kind = facts.path(path).kind
    command = f"rm -f -- {shlex.quote(path)}"
    if TEMPLATE_UNIT.fullmatch(path):  # its instances are ours too: they go first
        command = f"sh -c {shlex.quote(INSTANCES_GONE)} sh {shlex.quote(path)}\n{command}"
    return (None if kind == "directory" else kind != "absent"), command


def _tree_removal(path: str, facts: ResourceFacts) -> tuple[bool | None, str]:
    # Everything in it is ours (manifest.py records only trees we created); a link in its
    # place is not followed (failed: "a link is there now"), nor another file system in it.
    kind = facts.path(path).kind
    command = f"rm -rf --one-file-system -- {shlex.quote(path)}"
    return (None if kind not in ("absent", "directory") else kind == "directory"), command


def _directory_removal(path: str, facts: ResourceFacts) -> tuple[bool | None, str]:
    # Only when empty: what is left in it is not ours (we removed our files first).
    kind = facts.path(path).kind
    command = f"rmdir --ignore-fail-on-non-empty -- {shlex.quote(path)}"
    return (None if kind not in ("absent", "directory") else kind == "directory"), command


def _user_removal(name: str, facts: ResourceFacts) -> tuple[bool | None, str]:
    return name in facts.users, f"userdel -- {shlex.quote(name)}"


# A template unit we wrote (``/etc/systemd/system/<name>@.service``): every instance of it was
# started from our file, so with the file go its instances, stopped and disabled (loaded, or
# enabled through a .wants link), and their drop-in directories ``<name>@<instance>.service.d``.
TEMPLATE_UNIT = re.compile(r"/etc/systemd/system/[^/@]+@\.(service|socket|timer|path)")
INSTANCES_GONE = r"""
dir=${1%/*} template=${1##*/}
prefix=${template%%@*}@ suffix=.${template##*.}
{ systemctl list-units --all --plain --no-legend --full "$prefix*$suffix" | awk '{print $1}'
  for p in "$dir"/*.wants/"$prefix"?*"$suffix" "$dir/$prefix"?*"$suffix.d"; do
    [ -e "$p" ] || [ -L "$p" ] || continue
    p=${p##*/}; echo "${p%.d}"
  done; } | sort -u | while read -r unit; do
  systemctl disable --now --quiet -- "$unit" 2>/dev/null || true
  rm -rf -- "$dir/$unit.d"
  systemctl reset-failed -- "$unit" 2>/dev/null || true
done
""".strip()

REMOVALS = {
    "unit": _unit_removal,
    "file": _file_removal,
    "tree": _tree_removal,
    "directory": _directory_removal,
    "user": _user_removal,
}
REMOVED = {
    "unit": "stopped and disabled",
    "file": "removed",
    "tree": "removed with everything in it (we created it)",
    "directory": "removed (if nothing else is in it)",
    "user": "removed",
}


# --- the whole plan ---------------------------------------------------------------------------


def plan(resources: list, facts: ResourceFacts) -> list[Step]:
    """Steps for every non-package resource, in the order the roles gave them."""
    steps = []
    for resource in resources:
        if isinstance(resource, User):
            steps.append(plan_user(resource, facts))
        elif isinstance(resource, Directory):
            steps.append(plan_directory(resource, facts.path(resource.path)))
        elif isinstance(resource, File):
            steps.append(plan_file(resource, facts.path(resource.path)))
        elif isinstance(resource, Absent):
            steps.append(plan_absent(resource, facts.path(resource.path)))
        elif isinstance(resource, Service):
            unit = facts.unit(resource.name)
            steps.append(plan_service(resource, unit.enabled, unit.active))
        elif isinstance(resource, Command):
            creates = facts.path(resource.creates) if resource.creates else None
            unless = resource.unless
            passed = facts.checks.get(check_key(render(unless))) if unless else None
            steps.append(plan_command(resource, creates, passed))
        elif isinstance(resource, Removed):
            steps.append(plan_removed(resource, facts))
    return steps


def watched(resources: list) -> tuple[list[str], list[str], list[str], list[str]]:
    """The paths, users, units and ``unless`` checks the plan needs: gathered in one round trip."""
    paths = [r.path for r in resources if isinstance(r, File | Directory | Absent)]
    paths += [r.creates for r in resources if isinstance(r, Command) and r.creates]
    gone = [r for r in resources if isinstance(r, Removed)]
    paths += [r.name for r in gone if r.kind in ("file", "directory", "tree")]
    users = [r.name for r in resources if isinstance(r, User)]
    users += [r.name for r in gone if r.kind == "user"]
    units = [r.name for r in resources if isinstance(r, Service)]
    units += [r.name for r in gone if r.kind == "unit"]
    checks = [render(r.unless) for r in resources if isinstance(r, Command) and r.unless]
    return paths, users, units, checks


def unified_diff(path: str, before: bytes | None, after: bytes) -> str:
    """A unified diff with before/after headers; binary or large files get a one-line summary."""
    if (before and b"\0" in before) or b"\0" in after:
        return f"--- {path}: binary file differs\n"
    if len(after) > DIFF_MAX_BYTES or (before and len(before) > DIFF_MAX_BYTES):
        return f"--- {path}: larger than {DIFF_MAX_BYTES // 1024} KiB, diff not shown\n"
    lines = difflib.unified_diff(
        (before or b"").decode(errors="replace").splitlines(keepends=True),
        after.decode(errors="replace").splitlines(keepends=True),
        fromfile=f"before: {path}",
        tofile=f"after: {path}",
    )
    return "".join(lines)


def secret_summary(path: str, after: bytes) -> str:
    """Private keys are never diffed: only a fingerprint of the new content."""
    return f"--- {path}: secret, not shown (new sha256 {sha256(after)[:16]})\n"
