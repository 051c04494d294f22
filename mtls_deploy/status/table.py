"""``inv status`` as a table: with ``rich`` on a terminal (colours by verdict), plain aligned
text otherwise (cron mail, pipes, tests)."""

import sys

from .verdicts import CRITICAL, OK, WARNING

STYLES = {OK: "green", WARNING: "yellow", CRITICAL: "bold red"}
HEADERS = ("host", "check", "status", "detail")
SUMMARY = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}


def rows(report) -> list[tuple[str, str, str, str]]:
    """(host, check, status, detail) per row; PKI-wide rows (clients, CAs) under ``pki``."""
    found = []
    for check in report.checks:
        what = check.kind if check.name in ("ssh", "units") else f"{check.kind} {check.name}"
        found.append((check.host or "pki", what, check.status, check.detail))
    return found


def summary(report) -> str:
    """The monitoring-plugin line: ``STATUS WARNING: 1 warning, 0 critical (12 checks)``."""
    counts = {level: sum(c.status == level for c in report.checks) for level in (WARNING, CRITICAL)}
    return (f"STATUS {SUMMARY[report.exit_code]}: {counts[WARNING]} warning, "
            f"{counts[CRITICAL]} critical ({len(report.checks)} checks)")  # fmt: skip


def plain(report) -> str:
    """The summary line first (monitoring plugins read the first line), then the table as
    aligned text."""
    table = [HEADERS, *rows(report)]
    widths = [max(len(r[i]) for r in table) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in table]
    return summary(report) + "\n" + "\n".join(line.rstrip() for line in lines) + "\n"


def print_table(report, stream=None) -> None:
    """Print the table: ``rich`` when ``stream`` is a terminal, plain text otherwise."""
    stream = stream or sys.stdout
    if not stream.isatty():
        stream.write(plain(report))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*HEADERS)
    for host, what, status, detail in rows(report):
        table.add_row(host, what, f"[{STYLES.get(status, 'magenta')}]{status}[/]", detail)
    console = Console(file=stream)
    console.print(table)
    console.print(summary(report))
