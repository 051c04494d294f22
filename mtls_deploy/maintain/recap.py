"""``inv maintain``'s recap: one line per action and per host, a summary line first, and the exit
code as ``inv status`` gives it (0 fine, 1 warning, 2 critical or a host failed, 3 unknown).
Pure: ``Action`` rows in, text and a number out."""

from dataclasses import dataclass

from ..runner import HostResult

OK, CHANGED, WARNING, CRITICAL = "ok", "changed", "warning", "critical"
EXIT_CODES = {OK: 0, CHANGED: 0, WARNING: 1, CRITICAL: 2}
ORDER = (OK, CHANGED, WARNING, CRITICAL)
LABELS = {0: "OK", 1: "WARNING", 2: "CRITICAL"}


@dataclass(frozen=True)
class Action:
    """One recap line: ``client bob: changed: renewed, serial 0A -> 0B; delivered to bob``."""

    subject: str
    status: str
    text: str

    def line(self) -> str:
        """The line as printed."""
        return f"{self.status:<8} {self.subject}: {self.text}"


def exit_code(actions: list[Action]) -> int:
    """The worst action's code: a change is fine (0), a warning 1, a failure 2."""
    return max((EXIT_CODES[a.status] for a in actions), default=0)


def summary(actions: list[Action]) -> str:
    """``maintain: CRITICAL - 2 changed, 1 critical (host mt-down)``: first, where monitoring
    plugins read it."""
    code = exit_code(actions)
    counts = {s: sum(1 for a in actions if a.status == s) for s in ORDER}
    figures = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "nothing to do"
    bad = [a.subject for a in actions if a.status == CRITICAL]
    named = f" ({', '.join(bad)})" if bad else ""
    return f"maintain: {LABELS[code]} - {figures}{named}"


def recap_text(actions: list[Action]) -> str:
    """The summary line, then each action's line."""
    return "\n".join([summary(actions), *(a.line() for a in actions)]) + "\n"


def host_action(result: HostResult) -> Action:
    """An API host's line: what changed there (server certificate, CRL), or why it failed."""
    subject = f"host {result.host}"
    if result.error:
        return Action(subject, CRITICAL, f"FAILED: {result.error.removeprefix(result.host + ': ')}")
    failed = [f"{s.name} ({s.reason})" for s in result.steps if s.status == "failed"]
    if failed:
        return Action(subject, CRITICAL, "FAILED: " + "; ".join(failed))
    changed = [f"{_short_name(s.name)} {s.reason}" for s in result.steps if s.status == "changed"]
    if changed:
        return Action(subject, CHANGED, "; ".join(changed))
    return Action(subject, OK, f"up to date ({len(result.steps)} checked)")


def _short_name(name: str) -> str:
    """``/etc/nginx/tls/crl.pem`` -> ``crl.pem``."""
    return name.rsplit("/", 1)[-1]
