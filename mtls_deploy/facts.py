"""Facts: what a host has now. Each fact is a shell command plus a pure parser."""

import fnmatch
import re
import shlex
from dataclasses import dataclass, field

from .errors import UserError
from .shell import condition


def version_tuple(text: str | None) -> tuple[int, ...] | None:
    """The upstream part of a Debian version: ``"1:1.22.1-9+deb12u1"`` -> ``(1, 22, 1)``."""
    if not text:
        return None
    upstream = text.split(":", 1)[-1].rsplit("-", 1)[0]
    digits = []
    for part in upstream.split("."):
        leading = re.match(r"\d+", part)
        if not leading:
            break
        digits.append(int(leading.group()))
        if leading.group() != part:  # "2+93", "3~rc1": the number ends here
            break
    return tuple(digits) or None


@dataclass(frozen=True)
class HostFacts:
    """System facts, gathered once per host per run (again only after packages were installed)."""

    os_id: str = ""
    os_version: str = ""
    init: str = ""
    packages: dict[str, str] = field(default_factory=dict)  # installed package -> version
    apt_lists_age: float | None = None  # seconds since the package lists were refreshed
    policy_rc_leftover: bool = False  # our policy-rc.d, left by a killed run, is in place
    manifest: str = ""  # the text of our manifest on the host (MANIFEST), "" when there is none

    def version(self, *names: str) -> tuple[int, ...] | None:
        """The upstream version of the first of ``names`` that is installed, as a tuple.

        Example: ``facts.version("tool", "tool-core")`` -> ``(1, 22, 1)``
        """
        found = next((self.packages[n] for n in names if n in self.packages), None)
        return version_tuple(found)

    def installed(self, pattern: str) -> list[str]:
        """Installed package names matching a dpkg-query pattern (``"lib*-dev"``), sorted."""
        return sorted(n for n in self.packages if fnmatch.fnmatchcase(n, pattern))


# --- system facts: one round trip before anything is planned ----------------------------------

OS_RELEASE = "/etc/os-release"  # ID and VERSION_ID: the system, checked at fact time
POLICY_RC = "/usr/sbin/policy-rc.d"
POLICY_RC_MARK = "# mtls-deploy policy-rc.d"  # the line that tells ours from anyone else's
MANIFEST = "/var/lib/mtls-deploy/manifest.json"  # what each role put on the host (manifest.py)


def system_facts_script(packages: tuple[str, ...]) -> str:
    """A shell script printing the system facts as ``KEY<TAB>value`` lines; ``packages``: the
    names (or dpkg-query patterns) whose installed versions the roles read or install."""
    # Quoted: a name comes from a role, maybe from a variable; a pattern (lib*) is
    # dpkg-query's to match, not the shell's.
    names = " ".join(shlex.quote(n) for n in dict.fromkeys(packages))
    return "\n".join(
        [
            # guarded: sh's "." of a missing file ends the whole script
            f"[ -r {OS_RELEASE} ] && . {OS_RELEASE}; "
            'printf \'os\\t%s\\t%s\\n\' "$ID" "$VERSION_ID"',
            "printf 'init\\t%s\\n' \"$(cat /proc/1/comm 2>/dev/null)\"",
            "printf 'now\\t%s\\n' \"$(date +%s)\"",
            'for f in /var/lib/apt/lists/*_Packages*; do [ -e "$f" ] && '
            'printf \'lists\\t%s\\n\' "$(stat -c %Y "$f")"; break; done',
            f"grep -qxF -- {shlex.quote(POLICY_RC_MARK)} {POLICY_RC} 2>/dev/null && "
            "printf 'policy_rc\\tours\\n'",
            # base64 on one line: the manifest's text whatever it holds
            f"[ -f {MANIFEST} ] && printf 'manifest\\t%s\\n' \"$(base64 -w0 {MANIFEST})\" || true",
            # No name at all would list every package.
            f"dpkg-query -W -f='pkg\\t${{Package}}\\t${{db:Status-Abbrev}}\\t${{Version}}\\n' {names} "
            "2>/dev/null || true"
            if names
            else "true",
            "",
        ]
    )


def parse_system_facts(output: str) -> HostFacts:
    """Parse ``system_facts_script`` output; unknown or missing lines leave defaults."""
    os_id = os_version = init = ""
    now = lists = None
    packages, leftover, manifest = {}, False, ""
    for line in output.splitlines():
        key, _, rest = line.partition("\t")
        fields = rest.split("\t")
        if key == "os":
            os_id, os_version = (fields + [""])[:2]
        elif key == "init":
            init = rest
        elif key == "now" and rest.isdigit():
            now = int(rest)
        elif key == "lists" and rest.isdigit():
            lists = int(rest)
        elif key == "policy_rc":
            leftover = rest == "ours"
        elif key == "manifest":
            manifest = _unbase64(rest)
        elif key == "pkg" and len(fields) == 3 and fields[1].startswith("ii"):
            packages[fields[0]] = fields[2]
    return HostFacts(
        os_id=os_id,
        os_version=os_version,
        init=init,
        packages=packages,
        apt_lists_age=(now - lists) if now is not None and lists is not None else None,
        policy_rc_leftover=leftover,
        manifest=manifest,
    )


def _unbase64(text: str) -> str:
    """The manifest's text; damaged base64 or bytes that are no UTF-8 read as "?" (the
    manifest's reader then says it cannot be read)."""
    import base64
    import binascii

    try:
        return base64.b64decode(text, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return "?"


# --- resource facts: the state of every managed path, user and unit, in one round trip --------


@dataclass(frozen=True)
class PathState:
    """What is at a path: kind is absent, file, directory, link or other."""

    kind: str
    mode: int | None = None
    owner: str | None = None
    group: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class UnitState:
    """``systemctl show`` for one unit: UnitFileState (enabled, disabled, ...) and ActiveState."""

    enabled: str
    active: str


@dataclass(frozen=True)
class ResourceFacts:
    """The actual state the plan compares against."""

    paths: dict[str, PathState]
    users: frozenset[str]
    units: dict[str, UnitState]
    checks: dict[str, bool] = field(default_factory=dict)  # check_key(command) -> succeeded

    def path(self, path: str) -> PathState:
        return self.paths.get(path, PathState("absent"))

    def unit(self, name: str) -> UnitState:
        return self.units.get(_unit_name(name), UnitState("not-found", "inactive"))


STAT_KINDS = {
    "regular file": "file",
    "regular empty file": "file",
    "directory": "directory",
    "symbolic link": "link",
}


UNIT_SUFFIXES = (".service", ".socket", ".timer", ".target", ".path", ".mount")


def _unit_name(name: str) -> str:
    """``cron`` -> ``cron.service``; ``app2.1-worker`` too (a dot is not a suffix)."""
    return name if name.endswith(UNIT_SUFFIXES) else f"{name}.service"


def check_key(command: str) -> str:
    """A short, stable name for an ``unless`` check (its rendered text) in the facts output."""
    import hashlib

    return hashlib.sha256(command.encode()).hexdigest()[:16]


def resource_facts_script(paths, users, units, checks=()) -> str:
    """One script: ``stat`` every path, hash every regular file, look up users and units, and
    run each ``unless`` check (read-only by contract), recording whether it succeeded."""
    quoted = " ".join(_q(p) for p in paths)
    lines = []
    if paths:
        lines += [
            f"stat -c 'stat\t%n\t%F\t%a\t%U\t%G' -- {quoted} 2>/dev/null",
            f'for p in {quoted}; do [ -f "$p" ] && [ ! -L "$p" ] && set -- "$@" "$p"; done',
            '[ $# -gt 0 ] && sha256sum -- "$@" | sed "s/^/sha\t/"',
        ]
    if users:
        lines.append(f"getent passwd {' '.join(_q(u) for u in users)} | sed 's/^/user\t/'")
    if units:
        names = " ".join(_q(_unit_name(u)) for u in units)
        lines.append(
            f"systemctl show -p Id,UnitFileState,ActiveState -- {names} 2>/dev/null "
            "| sed 's/^/unit\t/'"
        )
    for command in checks:
        key = check_key(command)
        lines.append(
            f"if {condition(command)}; then printf 'check\\t%s\\t0\\n' {key};"
            f" else printf 'check\\t%s\\t1\\n' {key}; fi"
        )
    lines.append("true")
    return "\n".join(lines) + "\n"


def parse_resource_facts(output: str) -> ResourceFacts:
    """Parse ``resource_facts_script`` output. Paths not mentioned are absent."""
    paths, hashes, users, unit_lines, checks = {}, {}, set(), [], {}
    for line in output.split("\n"):  # not splitlines(): a path may hold \x1c or \x85
        key, _, rest = line.partition("\t")
        if key == "stat" and rest.count("\t") >= 4:  # a name with a newline is unknown: absent
            name, kind, mode, owner, group = rest.rsplit("\t", 4)
            paths[name] = (STAT_KINDS.get(kind, "other"), int(mode, 8), owner, group)
        elif key == "sha":
            name, digest = _parse_sha256sum(rest)
            hashes[name] = digest
        elif key == "user":
            users.add(rest.split(":", 1)[0])
        elif key == "unit":
            unit_lines.append(rest)
        elif key == "check":
            name, _, status = rest.partition("\t")
            checks[name] = status == "0"
    states = {
        name: PathState(kind, mode, owner, group, hashes.get(name))
        for name, (kind, mode, owner, group) in paths.items()
    }
    return ResourceFacts(states, frozenset(users), parse_units(unit_lines), checks)


SHA256SUM_ESCAPES = {"n": "\n", "r": "\r"}


def _parse_sha256sum(line: str) -> tuple[str, str]:
    """(name, digest) from a ``sha256sum`` line; a leading backslash means the name was escaped
    (it held a backslash, a newline or a carriage return)."""
    escaped = line.startswith("\\")
    digest, _, name = line.removeprefix("\\").partition("  ")
    if escaped:
        name = re.sub(r"\\(.)", lambda m: SHA256SUM_ESCAPES.get(m.group(1), m.group(1)), name)
    return name, digest


def parse_units(lines: list[str]) -> dict[str, UnitState]:
    """``systemctl show`` output: ``Name=value`` lines, one block per unit, blank between."""
    units, block = {}, {}
    for line in [*lines, ""]:
        if line:
            name, _, value = line.partition("=")
            block[name] = value
        elif "Id" in block:
            units[block["Id"]] = UnitState(
                block.get("UnitFileState") or "not-found", block.get("ActiveState", "inactive")
            )
            block = {}
    return units


def _q(text: str) -> str:
    return shlex.quote(text)


# --- both at once: a no-op run needs a single round trip ---------------------------------------

RESOURCES_MARK = "@@resources"


@dataclass(frozen=True)
class Watched:
    """What a resource-facts query covered: a path, user or unit outside it is unknown, not absent."""

    paths: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    units: frozenset[str] = frozenset()
    checks: frozenset[str] = frozenset()

    @classmethod
    def of(cls, paths, users, units, checks=()) -> "Watched":
        return cls(frozenset(paths), frozenset(users), frozenset(units), frozenset(checks))

    def __sub__(self, other: "Watched") -> "Watched":
        return Watched(
            *(mine - theirs for mine, theirs in zip(self.parts(), other.parts(), strict=True))
        )

    def __or__(self, other: "Watched") -> "Watched":
        return Watched(
            *(mine | theirs for mine, theirs in zip(self.parts(), other.parts(), strict=True))
        )

    def __bool__(self) -> bool:
        return any(self.parts())

    def parts(self) -> tuple[frozenset[str], ...]:
        return (self.paths, self.users, self.units, self.checks)

    def script(self) -> str:
        """``resource_facts_script`` for exactly what this covers."""
        return resource_facts_script(*(sorted(part) for part in self.parts()))


def gather_script(packages: tuple[str, ...], watched: Watched) -> str:
    """System facts, then the state of the watched paths, users and units, in one script."""
    return system_facts_script(packages) + f"echo {RESOURCES_MARK}\n" + watched.script()


def parse_gathered(output: str) -> tuple[HostFacts, ResourceFacts]:
    """Split ``gather_script`` output into its two halves and parse each; a system we do not
    support is refused here, before anything is planned (``require_supported_system``)."""
    system, _, resources = output.partition(f"{RESOURCES_MARK}\n")
    facts = parse_system_facts(system)
    require_supported_system(facts)
    return facts, parse_resource_facts(resources)


# ID and VERSION_ID of /etc/os-release. Ubuntu is accepted, but only Debian is tested here.
SUPPORTED_SYSTEMS = {("debian", "12"), ("debian", "13"), ("ubuntu", "22.04"), ("ubuntu", "24.04")}


def require_supported_system(facts: HostFacts) -> None:
    """Refuse, in one line naming what was found, a system other than Debian 12 or 13 or
    Ubuntu 22.04 or 24.04 (``ID`` and ``VERSION_ID`` of its /etc/os-release)."""
    if (facts.os_id, facts.os_version) in SUPPORTED_SYSTEMS:
        return
    found = (
        f"ID={facts.os_id or '(none)'} VERSION_ID={facts.os_version or '(none)'} in /etc/os-release"
        if facts.os_id
        else "no /etc/os-release"
    )
    raise UserError(
        f"unsupported system ({found}): mtls-deploy provisions Debian 12 or 13"
        " (Ubuntu 22.04 or 24.04 accepted, not tested)"
    )


def merge(first: ResourceFacts, second: ResourceFacts) -> ResourceFacts:
    """Facts from two queries over different paths, users and units."""
    return ResourceFacts(
        paths={**first.paths, **second.paths},
        users=first.users | second.users,
        units={**first.units, **second.units},
        checks={**first.checks, **second.checks},
    )
