"""``inv status --html FILE``: the status as one self-contained page (inline CSS and SVG, no
script, nothing fetched): a timeline of every certificate, CRL and CA over the coming year
(shorter when everything ends sooner, as with compressed lifetimes), with today, the renewal
points and the warning zones marked, then every check as a table. Written atomically."""

import datetime as dt
from html import escape

from .verdicts import CRITICAL, OK, WARNING

COLOURS = {OK: "#2e7d32", WARNING: "#f9a825", CRITICAL: "#c62828"}
YEAR = dt.timedelta(days=365)
LABEL_WIDTH, CHART_WIDTH, ROW_HEIGHT, TOP = 260, 720, 26, 40
CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;background:#fff}
h1{font-size:1.4em} .ok{color:#2e7d32} .warning{color:#b26a00} .critical{color:#c62828}
table{border-collapse:collapse;margin-top:1em} td,th{border:1px solid #ccc;padding:4px 8px;
text-align:left;font-size:.9em} th{background:#f0f0f0} svg text{font-size:12px}
.legend span{display:inline-block;margin-right:1.5em}
"""


def window(report) -> tuple[dt.datetime, dt.datetime]:
    """The timeline's span: from a twelfth before today to a year on, or to a little after
    the last end when everything ends sooner."""
    ends = [c.not_after for c in report.checks if c.not_after and c.not_after > report.now]
    horizon = min(YEAR, max([e - report.now for e in ends], default=YEAR) * 1.1)
    horizon = max(horizon, dt.timedelta(minutes=1))
    return report.now - horizon / 12, report.now + horizon


def timeline_rows(report) -> list:
    """The dated checks (certificates, CRLs, CAs), in report order."""
    return [c for c in report.checks if c.not_after is not None]


def label(check) -> str:
    """``api1 crl crl.pem``, ``client bob``, ``ca Example API client CA``."""
    where = f"{check.host} " if check.host else ""
    return f"{where}{check.kind} {check.name}"


class Scale:
    """Maps a moment to an x coordinate inside the chart."""

    def __init__(self, start: dt.datetime, end: dt.datetime):
        self.start, self.span = start, (end - start).total_seconds()

    def x(self, moment: dt.datetime) -> float:
        share = (moment - self.start).total_seconds() / self.span
        return LABEL_WIDTH + CHART_WIDTH * min(max(share, 0.0), 1.0)


def bar(check, y: int, scale: Scale, warn_before: dt.timedelta) -> str:
    """One row: its label, its life as a bar, the warning zone before its end, its renewal."""
    start = check.not_before or scale.start
    x1, x2 = scale.x(start), scale.x(check.not_after)
    warn_x = scale.x(check.not_after - warn_before) if check.not_after > scale.start else x2
    colour = COLOURS.get(check.status, "#666")
    parts = [
        f'<text x="4" y="{y + 15}">{escape(label(check))}</text>',
        f'<rect x="{x1:.1f}" y="{y + 4}" width="{max(x2 - x1, 1):.1f}" height="14" '
        f'fill="{colour}" opacity="0.75"><title>{escape(check.detail)}</title></rect>',
        f'<rect x="{warn_x:.1f}" y="{y + 4}" width="{max(x2 - warn_x, 0):.1f}" height="14" '
        'fill="#f9a825" opacity="0.6"/>',
    ]
    if check.renew_at is not None:
        rx = scale.x(check.renew_at)
        parts.append(f'<path d="M{rx:.1f} {y + 2} l-5 -6 h10 z" fill="#1565c0">'
                     f'<title>renewal {check.renew_at:%Y-%m-%d %H:%M}</title></path>')  # fmt: skip
    return "\n".join(parts)


def axis(scale: Scale, start, end, now, height: int) -> str:
    """Month (or shorter) ticks along the top, and today's line through every row."""
    ticks = []
    for i in range(7):
        moment = start + (end - start) * i / 6
        x = scale.x(moment)
        shown = f"{moment:%Y-%m-%d}" if end - start > dt.timedelta(days=3) else f"{moment:%H:%M}"
        ticks.append(f'<line x1="{x:.1f}" y1="{TOP - 8}" x2="{x:.1f}" y2="{height}" stroke="#eee"/>'
                     f'<text x="{x:.1f}" y="{TOP - 12}" fill="#555" text-anchor="middle">{shown}</text>')  # fmt: skip
    today = scale.x(now)
    ticks.append(f'<line x1="{today:.1f}" y1="{TOP - 8}" x2="{today:.1f}" y2="{height}" '
                 f'stroke="#000" stroke-width="2"/><text x="{today + 4:.1f}" y="{height - 2}" '
                 'font-weight="bold">today</text>')  # fmt: skip
    return "\n".join(ticks)


def timeline_svg(report) -> str:
    """The whole timeline as one inline SVG."""
    start, end = window(report)
    scale, rows = Scale(start, end), timeline_rows(report)
    height = TOP + ROW_HEIGHT * len(rows) + 16
    body = [axis(scale, start, end, report.now, height)]
    body += [bar(c, TOP + i * ROW_HEIGHT, scale, report.thresholds.warn_before)
             for i, c in enumerate(rows)]  # fmt: skip
    width = LABEL_WIDTH + CHART_WIDTH + 50  # room for the last date
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="timeline">'
            + "\n".join(body) + "</svg>")  # fmt: skip


def checks_table(report) -> str:
    """Every check as an HTML table (host, check, status, detail, ends)."""
    lines = ["<table><tr><th>host</th><th>check</th><th>status</th><th>detail</th>"
             "<th>ends</th></tr>"]  # fmt: skip
    for c in report.checks:
        ends = f"{c.not_after:%Y-%m-%d %H:%M}" if c.not_after else ""
        lines.append(f"<tr><td>{escape(c.host or 'pki')}</td><td>{escape(c.kind)} "
                     f"{escape(c.name)}</td><td class=\"{c.status}\">{c.status}</td>"
                     f"<td>{escape(c.detail)}</td><td>{ends}</td></tr>")  # fmt: skip
    return "\n".join(lines) + "</table>"


def page(report) -> str:
    """The whole page (UTF-8 HTML, no external resource)."""
    from .table import summary

    verdict = summary(report)
    legend = ('<p class="legend"><span>bar: valid life (green ok, yellow warning, red critical)'
              '</span><span>yellow end: within warn_before</span><span>blue ▼: renewal point'
              '</span><span>black line: today</span></p>')  # fmt: skip
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>mtls-deploy status</title><style>{CSS}</style></head><body>"
            f"<h1>mtls-deploy status</h1><p>{escape(verdict)}; read "
            f"{report.now:%Y-%m-%d %H:%M} UTC (today)</p>{legend}{timeline_svg(report)}"
            f"{checks_table(report)}</body></html>\n")  # fmt: skip


def write_page(report, path) -> None:
    """Write the page to ``path`` atomically (a reader sees the old page or the new one)."""
    from ..files import atomic_write

    atomic_write(path, page(report).encode(), durable=False)
