"""Apply a plan: one shell script per host, run as root in one round trip.

Order: users, directories, files and removals; then the validators the roles declare (a config
test), which restore every file they cover when they fail; then what a role that left the host
had put there is taken away (``after_checks`` steps: so a refused configuration removes
nothing, and an old service stops before a new one starts); then daemon-reload if a unit
changed; then services; then each notified handler, once. The script prints ``@@`` markers so each step's fate is known.
"""

import shlex
from dataclasses import dataclass

from .operations import DAEMON_RELOAD, Step
from .resources import Handler, Validator
from .shell import statement

UNTRAP = "trap - EXIT HUP INT TERM PIPE"
# One run at a time on a host: every script that changes it (an apply, a release's switch,
# unprovision) holds this lock (flock, fd 9) until it ends. /run: gone at reboot with its holders.
HOST_LOCK = "/run/lock/mtls-deploy.lock"
LOCK_WAIT = 120  # seconds a second run waits before it gives up, in one line
BUSY_EXIT = 75  # EX_TEMPFAIL


def host_lock(on_busy: str = "", path: str | None = None, wait: int | None = None) -> str:
    """Shell lines that take the host's lock for the rest of the script (in its main shell,
    not a subshell), waiting at most ``wait`` seconds; when another run still holds it:
    ``on_busy`` runs, then one line on stderr, exit 75."""
    path, wait = path or HOST_LOCK, LOCK_WAIT if wait is None else wait
    where, folder = shlex.quote(path), shlex.quote(path.rsplit("/", 1)[0] or "/")
    busy = (
        f"another mtls-deploy run holds {path} on this host (waited {wait} s): "
        "run again once it is done"
    )
    return (
        f"mkdir -p {folder} && exec 9>>{where}\n"
        f"flock -w {int(wait)} 9 || {{ {on_busy + '; ' if on_busy else ''}"
        f"echo {shlex.quote(busy)} >&2; exit {BUSY_EXIT}; }}"
    )


@dataclass(frozen=True)
class ApplyOutcome:
    """What the script reported: steps done, the failed step, a validator's error, handlers run."""

    done: frozenset[int]
    invalid: tuple[str, str] | None  # (validator, its error output)
    handlers_started: tuple[str, ...]
    handlers_done: tuple[str, ...]
    error: str


def notified_handlers(steps: list[Step], handlers: list[Handler]) -> list[Handler]:
    """Handlers some changed step notified, each once, in handler order, less those another
    notified handler covers."""
    wanted = {name for step in steps if step.changed for name in step.notify}
    chosen = [h for h in handlers if h.name in wanted or set(h.listen) & wanted]
    covered = {name for h in chosen for name in h.covers}
    return sorted((h for h in chosen if h.name not in covered), key=lambda h: h.order)


def build_script(
    steps: list[Step], handlers: list[Handler], validators: dict[str, Validator] | None = None
) -> str:
    """The whole apply script for the changed steps of one host; ``validators`` by the name
    a step's ``validate`` gives."""
    todo = [(i, s) for i, s in enumerate(steps) if s.changed]
    removals = [(i, s) for i, s in todo if s.after_checks]
    files = [(i, s) for i, s in todo if s.kind != "service" and not s.after_checks]
    services = [(i, s) for i, s in todo if s.kind == "service" and not s.after_checks]
    validated = [(i, s) for i, s in files if s.validate]
    lines = ["set -e", "umask 077", host_lock(), _restore_function(validated)]
    if validated:
        # A dropped SSH connection ends the script with SIGHUP or SIGPIPE: restore then too.
        lines += [
            "trap mtls_restore EXIT",
            "trap 'mtls_restore; trap - EXIT; exit 129' HUP INT TERM PIPE",
        ]
    for i, step in files:
        lines += _backup(i, step) if step.validate else []
        lines += [*step.commands, f"echo '@@done {i}'"]
    lines += _validations(validated, validators or {})
    for i, step in removals:
        lines += [*step.commands, f"echo '@@done {i}'"]
    if any(DAEMON_RELOAD in s.notify for _, s in todo):
        lines.append("systemctl daemon-reload")
    for i, step in services:
        lines += [*step.commands, f"echo '@@done {i}'"]
    for handler in notified_handlers(steps, handlers):
        if handler.name != DAEMON_RELOAD:
            lines += [
                f"echo {shlex.quote('@@handler ' + handler.name)}",
                statement(handler.command),
                f"echo {shlex.quote('@@handled ' + handler.name)}",
            ]
    return "\n".join(lines) + "\n"


def _backup_path(path: str) -> str:
    """Beside the file, hidden, so a configuration's ``include dir/*`` never reads it."""
    folder, _, name = path.rpartition("/")
    return f"{folder}/.{name}.mtls-prev"


def _backup(index: int, step: Step) -> list[str]:
    path, backup = shlex.quote(step.name), shlex.quote(_backup_path(step.name))
    return [
        f"rm -f {backup}; had_{index}=",
        f"if [ -e {path} ] || [ -L {path} ]; then cp -a {path} {backup}; had_{index}=1; fi",
        f"touched_{index}=1",
    ]


def _restore_function(validated: list[tuple[int, Step]]) -> str:
    """Put back every validated file this run touched: the old copy, or nothing if it was new."""
    body = ['[ -n "${t:-}" ] && rm -f "$t"']  # a temporary file not yet renamed into place
    for index, step in validated:
        path, backup = shlex.quote(step.name), shlex.quote(_backup_path(step.name))
        body.append(
            f'if [ -n "${{touched_{index}:-}}" ]; then if [ -n "${{had_{index}:-}}" ]; '
            f"then mv -f {backup} {path}; else rm -f {path}; fi; fi"
        )
    return "mtls_restore() {\n  " + "\n  ".join(body) + "\n}"


def _validations(validated: list[tuple[int, Step]], validators: dict) -> list[str]:
    if not validated:
        return []
    lines = []
    for name in dict.fromkeys(step.validate for _, step in validated):
        command = statement(validators[name].command)
        lines += [
            f"if ! mtls_out=$( {{ {command}; }} 2>&1); then mtls_restore; {UNTRAP}",
            f"  printf '@@invalid {name}\\n%s\\n@@end\\n' \"$mtls_out\"; exit 3; fi",
        ]
    backups = " ".join(shlex.quote(_backup_path(s.name)) for _, s in validated)
    return [*lines, UNTRAP, f"rm -f {backups}"]


def parse_outcome(stdout: str, stderr: str) -> ApplyOutcome:
    """Read the ``@@`` markers the script printed."""
    done, started, handled, invalid, capture = set(), [], [], None, None
    for line in stdout.splitlines():
        if capture is not None:
            if line == "@@end":
                invalid, capture = (capture[0], "\n".join(capture[1])), None
            else:
                capture[1].append(line)
        elif line.startswith("@@done "):
            done.add(int(line.split()[1]))
        elif line.startswith("@@handler "):
            started.append(line.split(" ", 1)[1])
        elif line.startswith("@@handled "):
            handled.append(line.split(" ", 1)[1])
        elif line.startswith("@@invalid "):
            capture = (line.split(" ", 1)[1], [])
    error = next((x for x in reversed(stderr.strip().splitlines()) if x.strip()), "")
    return ApplyOutcome(frozenset(done), invalid, tuple(started), tuple(handled), error)


def settle(
    steps: list[Step],
    outcome: ApplyOutcome,
    exit_status: int,
    validators: dict[str, Validator] | None = None,
) -> list[Step]:
    """Mark each changed step: stays changed if done, failed where the script stopped,
    reverted when its validator refused it, skipped after a failure."""
    extra, shown = [], {n: _shown(v.command) for n, v in (validators or {}).items()}
    if outcome.invalid:
        name, output = outcome.invalid
        error = _error_line(output, (validators or {}).get(name))
        extra.append(Step("validate", shown.get(name, name), "failed", error))
    failed_once = False
    for index, step in enumerate(steps):
        if not step.changed:
            continue
        if outcome.invalid and step.validate == outcome.invalid[0]:
            command = shown.get(step.validate, step.validate)
            step.status, step.reason = "failed", f"reverted: {command} failed"
        elif index not in outcome.done and exit_status != 0:
            step.status = "skipped" if failed_once else "failed"
            step.reason = step.reason if failed_once else (outcome.error or f"exit {exit_status}")
            failed_once = True
    return steps + extra + _handler_steps(outcome, exit_status, failed_once)


def _handler_steps(outcome: ApplyOutcome, exit_status: int, step_failed: bool) -> list[Step]:
    """A line per handler run; the one that broke the script fails with its error."""
    steps = [Step("handler", name, "changed", "notified") for name in outcome.handlers_done]
    broken = [n for n in outcome.handlers_started if n not in outcome.handlers_done]
    if exit_status != 0 and not step_failed and not outcome.invalid:
        name = broken[0] if broken else "apply"
        steps.append(Step("handler", name, "failed", outcome.error or f"exit {exit_status}"))
    return steps


def _shown(command) -> str:
    """A validator's command as the report names it: ``app-config --test``."""
    if isinstance(command, str):
        return command.strip()
    return "; ".join(shlex.join(argv) for argv in command)


def _error_line(output: str, validator: Validator | None) -> str:
    """The validator's own words: the first line holding its ``error_lines`` word, else the
    last non-empty line."""
    lines = [line for line in output.splitlines() if line.strip()]
    word = validator.error_lines if validator else None
    picked = [line for line in lines if word and word in line]
    return (picked or lines[-1:] or ["validation failed"])[0]
