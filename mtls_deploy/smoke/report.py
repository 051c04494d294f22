"""The smoke test's report: the table, its total line, or one JSON document."""

import json
import sys
from dataclasses import dataclass, field

from .cases import Case


@dataclass
class SmokeReport:
    """Every row, and how long it took."""

    cases: list[Case]
    seconds: float = 0.0
    totals: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what to run, one line each

    @property
    def failed(self) -> bool:
        return any(case.result == "fail" for case in self.cases)

    def count(self, result: str) -> int:
        return sum(1 for case in self.cases if case.result == result)


COLUMNS = ("case", "from", "to", "expected", "got", "result")

GOT_WIDTH = 72  # longer answers are cut in the table; --json has them whole


def rows(report: SmokeReport) -> list[dict]:
    """The table's rows as dicts (the ``--json`` document's ``cases``)."""
    return [
        {"case": c.number, "name": c.name, "from": c.source, "to": c.target, "expected": c.expected,
         "got": c.got, "result": c.result, **({"via": c.via} if c.via else {})}
        for c in report.cases
    ]  # fmt: skip


def totals(report: SmokeReport) -> dict:
    return {
        "passed": report.count("pass"),
        "failed": report.count("fail"),
        "skipped": report.count("skip"),
    }


def total_line(report: SmokeReport) -> str:
    t = totals(report)
    verdict = "FAILED" if report.failed else "all passed"
    return (
        f"{len(report.cases)} cases: {t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped "
        f"in {report.seconds:.1f} s: {verdict}"
    )


def table_lines(report: SmokeReport) -> list[str]:
    """The table, one row per case, and the total line."""
    cells = [
        [_case_cell(c), c.source, c.target, c.expected, c.got, c.result.upper()]
        for c in report.cases
    ]
    for row in cells:
        row[4] = row[4] if len(row[4]) <= GOT_WIDTH else row[4][: GOT_WIDTH - 1] + "…"
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(COLUMNS)]
    line = lambda row: "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()  # noqa: E731
    return [
        line(COLUMNS),
        line(["-" * w for w in widths]),
        *(line(row) for row in cells),
        "",
        total_line(report),
    ]


def _case_cell(case: Case) -> str:
    return f"{case.number} {case.name}" if case.number is not None else f"- {case.name}"


def print_report(report: SmokeReport, as_json: bool = False, stream=None) -> None:
    """The table and its notes (or one JSON document) on stdout."""
    stream = stream or sys.stdout
    if as_json:
        document = {"cases": rows(report), "totals": totals(report), "passed": not report.failed,
                    "seconds": round(report.seconds, 2), "notes": report.notes}  # fmt: skip
        stream.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        return
    stream.write("\n".join([*table_lines(report), *report.notes]) + "\n")
