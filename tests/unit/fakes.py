"""A fake transport for unit tests: a stand-in for ``mtls_deploy.connection.Remote`` that answers
the engine's scripts the way a real host answered them once.

``FakeHost`` is a host's state as a recorded fact-gathering output shows it
(``fixtures/<host>-gathered.txt``, written by ``tests/record_facts.py`` on a provisioned lab
host): the system facts lines are replayed verbatim; the resource lines (``stat``, ``sha``,
``user``, ``unit``, ``check``) are answered for exactly the paths, users, units and checks a
script asks about, in the format the real commands print. Tests change the state to make the
case they need (``converged``, ``with_content``, ``without``, ``without_packages``).

``FakeRemote`` is what ``provision``, ``rollout`` and ``hosts`` hold: ``run``, ``run_script``,
``channels`` (one per command, as ``Remote`` counts them) and the context manager. It keeps
every script it was sent (``scripts``). Apply scripts are not run: they are recorded, and
answered as a successful run answers them (every ``@@done`` and handler marker), unless the
host says otherwise (``apply_reply``; a file whose directory is missing fails as mktemp does).
``FakeTransport`` hands out a ``FakeRemote`` per ``SshTarget``, for ``monkeypatch.setattr(
module, "Remote", transport.connect)``.
"""

import base64
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from mtls_deploy.connection import CommandResult, ConnectError, RemoteCommandError
from mtls_deploy.facts import (
    MANIFEST,
    RESOURCES_MARK,
    UNIT_SUFFIXES,
    HostFacts,
    PathState,
    UnitState,
    check_key,
    parse_resource_facts,
    parse_system_facts,
)
from mtls_deploy.operations import sha256
from mtls_deploy.resources import Absent, Command, Directory, File, Service, User
from mtls_deploy.shell import render

NOT_FOUND = CommandResult("", "sh: 1: not found", 127)
FIXTURES = Path(__file__).resolve().parent / "fixtures"
KIND_WORDS = {"file": "regular file", "directory": "directory", "link": "symbolic link"}
APPLY_START = "set -e\numask 077\n"  # how apply.build_script begins
# What Debian 12's mktemp said on api1 (sudo, sh) for a template in a missing directory.
MKTEMP_ERROR = "mktemp: failed to create file via template ‘{}’: No such file or directory\n"


@dataclass
class FakeHost:
    """One host's state: recorded system facts, and the paths, users, units and checks."""

    name: str
    system: list[str]
    paths: dict[str, PathState]
    users: set[str]
    units: dict[str, UnitState]
    checks: dict[str, bool] = field(default_factory=dict)
    contents: dict[str, bytes] = field(default_factory=dict)  # what a diff may fetch
    apt_error: str | None = None  # apt-get fails with this as its last line
    apply_reply: Callable[[str], CommandResult] | None = None
    # ``run`` replies by command line: a result, or a function of the command giving one
    commands: dict[str, CommandResult | Callable] = field(default_factory=dict)
    unreachable: str | None = None  # connecting raises ConnectError with this text

    @classmethod
    def recorded(cls, fixture: str = "api1", name: str | None = None) -> "FakeHost":
        """The host recorded in ``fixtures/<fixture>-gathered.txt`` (named ``name``)."""
        text = (FIXTURES / f"{fixture}-gathered.txt").read_text()
        system, _, resources = text.partition(f"{RESOURCES_MARK}\n")
        state = parse_resource_facts(resources)
        return cls(
            name or fixture,
            system.splitlines(),
            dict(state.paths),
            set(state.users),
            dict(state.units),
            dict(state.checks),
        )

    def gathered(self) -> str:
        """The recorded system facts part, as ``parse_gathered`` reads it (with the manifest
        a converged run wrote, as the host's facts carry it)."""
        lines = list(self.system)
        if MANIFEST in self.contents:
            lines.append(f"manifest\t{base64.b64encode(self.contents[MANIFEST]).decode()}")
        return "\n".join(lines) + "\n"

    def facts(self) -> HostFacts:
        """The system facts, parsed: what the last run cached (the engine's guess)."""
        return parse_system_facts(self.gathered())

    # --- making the case a test needs -------------------------------------------------------

    def converged(self, resources: list) -> "FakeHost":
        """The state after a successful run of ``resources``: every file holds the content they
        want; what the recording shows of a path (mode, owner) stays, what it lacks (a resource
        added since it was made) is as wanted."""
        for resource in resources:
            self._converge(resource)
        return self

    def _converge(self, r) -> None:
        if isinstance(r, File):
            was = self.paths.get(r.path) or PathState("file", r.mode, r.owner, r.group)
            self.paths[r.path] = replace(was, sha256=sha256(r.content))
            self.contents[r.path] = r.content
        elif isinstance(r, Directory):
            self.paths.setdefault(r.path, PathState("directory", r.mode, r.owner, r.group))
        elif isinstance(r, User):
            self.users.add(r.name)
        elif isinstance(r, Service):
            unit = r.name if r.name.endswith(UNIT_SUFFIXES) else f"{r.name}.service"
            state = UnitState(
                "enabled" if r.enabled else "disabled", "active" if r.running else "inactive"
            )
            self.units.setdefault(unit, state)
        elif isinstance(r, Command):
            if r.creates:
                self.paths.setdefault(r.creates, PathState("file", 0o644, "root", "root"))
            if r.unless:
                self.checks[check_key(render(r.unless))] = True
        elif isinstance(r, Absent):
            self.paths.pop(r.path, None)

    def with_content(self, path: str, content: bytes) -> "FakeHost":
        """``path`` holds ``content`` now (mode and owner unchanged)."""
        self.paths[path] = replace(self.paths[path], sha256=sha256(content))
        self.contents[path] = content
        return self

    def without(self, folder: str) -> "FakeHost":
        """``folder`` and everything under it are gone."""
        for path in [p for p in self.paths if p == folder or p.startswith(folder + "/")]:
            del self.paths[path]
            self.contents.pop(path, None)
        return self

    def without_packages(self, *names: str) -> "FakeHost":
        """These packages are not installed."""
        self.system = [line for line in self.system if _package(line) not in names]
        return self

    # --- answering the engine's scripts -----------------------------------------------------

    def answer(self, script: str) -> CommandResult:
        """What the host prints for ``script``, one of the engine's."""
        if f"echo {RESOURCES_MARK}" in script:
            facts = self.resource_lines(script)
            return CommandResult(self.gathered() + f"{RESOURCES_MARK}\n" + facts, "", 0)
        if script.startswith(APPLY_START):
            return (self.apply_reply or self.successful_apply)(script)
        if "apt-get" in script:
            return self.install(script)
        if "echo '@@file " in script:
            return CommandResult(self.fetch(script), "", 0)
        return CommandResult(self.resource_lines(script), "", 0)

    def resource_lines(self, script: str) -> str:
        """``stat``/``sha``/``user``/``unit``/``check`` lines for what ``script`` asks about."""
        paths, users, units, checks = asked(script)
        known = [p for p in paths if p in self.paths]
        lines = [self._stat_line(p) for p in known]
        lines += [f"sha\t{self.paths[p].sha256}  {p}" for p in known if self.paths[p].sha256]
        lines += [
            f"user\t{u}:x:999:997::/nonexistent:/usr/sbin/nologin" for u in users if u in self.users
        ]
        for unit in (u for u in units if u in self.units):
            state = self.units[unit]
            lines += [f"unit\tId={unit}", f"unit\tActiveState={state.active}"]
            lines += [f"unit\tUnitFileState={state.enabled}", "unit\t"]
        lines += [f"check\t{k}\t{0 if self.checks.get(k) else 1}" for k in checks]
        return "".join(line + "\n" for line in lines)

    def _stat_line(self, path: str) -> str:
        s = self.paths[path]
        return f"stat\t{path}\t{KIND_WORDS.get(s.kind, 'socket')}\t{s.mode:o}\t{s.owner}\t{s.group}"

    def successful_apply(self, script: str) -> CommandResult:
        """Every step done and every handler run, as a successful apply script prints them;
        a file written into a missing directory fails there, as mktemp does."""
        out = []
        for line in script.splitlines():
            template = re.match(r"t=\$\(mktemp (.+)\)$", line)
            if template and not self.has_directory(_unquoted(template[1]).rpartition("/")[0]):
                return CommandResult(_lines(out), MKTEMP_ERROR.format(_unquoted(template[1])), 1)
            marker = re.match(r"echo '?(@@(?:done|handler|handled) [^']*)'?$", line)
            if marker:
                out.append(marker[1])
        return CommandResult(_lines(out), "", 0)

    def has_directory(self, folder: str) -> bool:
        """A known directory, or one that some known path lies in."""
        state = self.paths.get(folder)
        return (
            (state.kind == "directory")
            if state
            else any(p.startswith(folder + "/") for p in self.paths)
        )

    def install(self, script: str) -> CommandResult:
        if self.apt_error:
            return CommandResult(
                "Reading package lists...\n", f"W: a warning\n{self.apt_error}\n", 100
            )
        return CommandResult("", "", 0)

    def fetch(self, script: str) -> str:
        """``fetch_files``: each regular file asked for, announced by its index, in base64."""
        out = []
        for path, index in re.findall(r"if \[ -f (.+?) \]; then echo '@@file (\d+)'", script):
            name = shlex.split(path)[0]
            if name in self.contents:
                out += [f"@@file {index}", base64.encodebytes(self.contents[name]).decode()]
        return "\n".join(out) + "\n"


def _unquoted(word: str) -> str:
    return shlex.split(word)[0]


def _lines(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def _package(line: str) -> str | None:
    """The package a ``pkg<TAB>name<TAB>...`` line is about."""
    key, name, *_ = [*line.split("\t"), ""]
    return name if key == "pkg" else None


def asked(script: str) -> tuple[list[str], list[str], list[str], list[str]]:
    """The paths, users, units and check keys a resource-facts script asks about."""
    paths, users, units = [], [], []
    for line in script.splitlines():
        if line.startswith("stat -c "):
            paths = _between(line, "--", "2>/dev/null")
        elif line.startswith("getent passwd "):
            users = _between(line, "passwd", "|")
        elif line.startswith("systemctl show "):
            units = _between(line, "--", "2>/dev/null")
    return paths, users, units, re.findall(r"printf 'check\\t%s\\t0\\n' (\w+);", script)


def _between(line: str, start: str, end: str) -> list[str]:
    words = shlex.split(line)
    first = words.index(start) + 1
    return words[first : words.index(end, first)]


class FakeRemote:
    """``Remote`` for one ``FakeHost``: every command is one channel, every script is kept."""

    def __init__(self, host: FakeHost, target=None):
        self.host, self.target = host, target
        self.channels = 0
        self.scripts: list[str] = []
        self.commands: list[tuple[str, bool]] = []

    def __enter__(self) -> "FakeRemote":
        if self.host.unreachable:
            raise ConnectError(self.host.unreachable)
        return self

    def __exit__(self, *exc) -> None:
        return None

    def run(self, command, *, sudo=False, stdin=b"", check=False, timeout=None) -> CommandResult:
        """A script on stdin is answered as the host answers it; a command from ``commands``."""
        self.channels += 1
        if command == "sh -s":
            script = stdin.decode()
            self.scripts.append(script)
            result = self.host.answer(script)
        else:
            self.commands.append((command, sudo))
            result = self.host.commands.get(command, NOT_FOUND)
            result = result(command) if callable(result) else result
        if check and not result.ok:
            raise RemoteCommandError(
                f"{self.host.name}: `{command}` failed (exit {result.exit_status})"
            )
        return result

    def run_script(self, script, *, sudo=False, check=False, timeout=None) -> CommandResult:
        return self.run("sh -s", sudo=sudo, stdin=script.encode(), check=check, timeout=timeout)

    @property
    def applies(self) -> list[str]:
        """The apply scripts this host was sent."""
        return [s for s in self.scripts if s.startswith(APPLY_START)]


class FakeTransport:
    """Hosts by inventory name; ``connect(target)`` stands in for ``Remote(target)``."""

    def __init__(self, *hosts: FakeHost):
        self.hosts = {h.name: h for h in hosts}
        self.remotes: dict[str, FakeRemote] = {}

    def connect(self, target) -> FakeRemote:
        remote = FakeRemote(self.hosts[target.host], target)
        self.remotes[target.host] = remote
        return remote


def api_vars(name: str = "api1", **extra) -> dict:
    """An API host's variables as the inventory gives api1 (role defaults under them, the
    lab's group_vars over them)."""
    from mtls_deploy.inventory import role_defaults

    defaults = {k: x for layer in role_defaults() for k, x in layer.values.items()}
    return {
        **defaults,
        "inventory_hostname": name,
        "group_names": ["api"],
        "ansible_host": "127.0.0.1",
        "ansible_port": 2201,
        "ansible_user": "deploy",
        "ansible_become": True,
        "server_name": f"{name}.lab.test",
        "https_listen": "127.0.0.1",
        "https_port": 8441,
        "lab": True,
        **extra,
    }
