"""What the user reads: a line per step, diffs on request, then a recap per host."""

import sys

from .runner import GroupResult, HostResult

COLOURS = {"ok": "32", "changed": "33", "failed": "31", "skipped": "36"}


def _paint(text: str, status: str, tty: bool) -> str:
    return f"\033[{COLOURS[status]}m{text}\033[0m" if tty and status in COLOURS else text


def step_lines(result: HostResult, tty: bool = False, diff: bool = False) -> list[str]:
    """``changed  api1  file /etc/app/site.conf  (content differs ...)``"""
    lines = []
    for step in result.steps:
        status = _paint(f"{step.status:<8}", step.status, tty)
        lines.append(f"{status} {result.host}  {step.kind} {step.name}  ({step.reason})")
        if diff and step.diff:
            lines.append(step.diff.rstrip("\n"))
    if result.error:
        error = _without_host(result.error, result.host)
        lines.append(f"{_paint('failed  ', 'failed', tty)} {result.host}  {error}")
    return lines


def _without_host(error: str, host: str) -> str:
    """An error as the line shows it: the line names the host already, so an error that starts
    with it (``api1: cannot reach ...``, as ConnectError's do) drops that prefix."""
    return error.removeprefix(f"{host}: ")


def recap_lines(group: GroupResult, tty: bool = False) -> list[str]:
    """Ansible's PLAY RECAP: ``api1 : ok=23 changed=0 failed=0 skipped=0``."""
    width = max((len(r.host) for r in group.results), default=0)
    lines = ["", "RECAP"]
    for result in group.results:
        figures = " ".join(f"{k}={v}" for k, v in result.recap().items())
        lines.append(_paint(f"{result.host:<{width}} : {figures}", _worst(result), tty))
    return lines


def _worst(result: HostResult) -> str:
    if result.failed:
        return "failed"
    return "changed" if result.count("changed") else "ok"


def print_host(result: HostResult, diff: bool = False, stream=None) -> None:
    """Print one host's lines as soon as it finishes (hosts run in parallel)."""
    stream = stream or sys.stdout
    tty = stream.isatty()
    stream.write("\n".join(step_lines(result, tty, diff)) + "\n")
    stream.flush()


def print_recap(group: GroupResult, stream=None) -> None:
    """Print the RECAP once every host has finished."""
    stream = stream or sys.stdout
    stream.write("\n".join(recap_lines(group, stream.isatty())) + "\n")


def as_json(group: GroupResult) -> dict:
    """The same report as one JSON document (``--json``)."""
    return {
        "hosts": {
            r.host: {
                "recap": r.recap(),
                "error": r.error,
                "steps": [
                    {
                        "kind": s.kind,
                        "name": s.name,
                        "status": s.status,
                        "reason": s.reason,
                        **({"diff": s.diff} if s.diff else {}),
                    }
                    for s in r.steps
                ],
                **r.data,
            }
            for r in group.results
        },
        "failed": [r.host for r in group.failed],
    }


class Progress:
    """Where a run over many hosts stands: hosts done, failed and running. On a terminal one
    line, rewritten in place below the hosts' own lines; otherwise one line per finished host
    (a log keeps every one). Called from the hosts' threads, hence the lock."""

    def __init__(self, total: int, stream=None):
        import threading

        self.total, self.stream = total, stream or sys.stdout
        self.tty = self.stream.isatty()
        self.running = self.done = self.failed = 0
        self.lock = threading.Lock()

    def line(self) -> str:
        """``hosts: 12/32 done, 1 failed, 16 running``"""
        return f"hosts: {self.done}/{self.total} done, {self.failed} failed, {self.running} running"

    def started(self) -> None:
        """A host's run began."""
        with self.lock:
            self.running += 1
            if self.tty:
                self.stream.write(f"\r\033[K{self.line()}")
                self.stream.flush()

    def finished(self, result: HostResult, lines: list[str]) -> None:
        """A host's run ended: its ``lines``, then where the run stands."""
        with self.lock:
            self.running -= 1
            self.done += 1
            self.failed += bool(result.failed)
            text = "".join(f"{line}\n" for line in lines)
            if self.tty:  # the host's lines replace the status line, which comes back below
                self.stream.write(f"\r\033[K{text}{self.line()}")
            else:
                self.stream.write(f"{text}{self.line()} ({result.host} ended)\n")
            self.stream.flush()

    def close(self) -> None:
        """Clear the status line before what follows (the recap)."""
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()
