"""``inv status`` end to end: options in, report printed (table, JSON or HTML page), exit code
out. Any ``UserError`` (unknown host, no PKI, a bad threshold) is exit 3, "unknown", as
monitoring plugins expect, printed as one line."""

import sys

from ..errors import BadInput, UserError
from .verdicts import EXIT_CODES, UNKNOWN


def status_main(names: list[str], as_json: bool, html_file: str | None,
                warn_before: str | None) -> int:  # fmt: skip
    """Run ``inv status``; returns the exit code (0-3). Example: ``status_main([], False,
    None, "7d")``."""
    try:
        report = _report(names, warn_before)
        _show(report, as_json, html_file)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CODES[UNKNOWN]
    return report.exit_code


def _report(names: list[str], warn_before: str | None):
    from .. import inventory
    from .run import run_status, thresholds

    loaded = inventory.load()
    marks = thresholds(loaded)
    if warn_before:
        marks = type(marks)(_duration(warn_before), marks.client_renew_before)
    return run_status(names, marks, loaded)


def _duration(text: str):
    from ..durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as problem:
        raise BadInput(f"--warn-before {problem}") from None


def _show(report, as_json: bool, html_file: str | None) -> None:
    from ..cli import print_json
    from .table import print_table

    if html_file:
        from .html import write_page

        write_page(report, html_file)
    if as_json:
        print_json(report.as_json())
    elif not html_file:
        print_table(report)
    else:
        print(f"wrote {html_file}")
