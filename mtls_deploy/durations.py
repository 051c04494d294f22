"""Durations as the inventory writes them: ``365d``, ``12h``, ``10m``, ``90s`` (also ``2w``, ``10y``).

One parser for every lifetime and threshold (``pki_settings``, the schema type ``duration``), so
time can be compressed in tests: a CRL of ``2m`` is as valid a setting as one of ``180d``.

Example::

    parse_duration("12h") == timedelta(hours=12)
    format_duration(timedelta(days=365)) == "365d"
"""

import datetime as dt
import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
DURATION = re.compile(r"([0-9]{1,9})([smhdwy])")
FORMAT = "a duration such as 365d, 12h, 10m or 90s"
LONGEST = dt.timedelta(days=100 * 365)  # beyond any X.509 date a PKI can use


def parse_duration(text) -> dt.timedelta:
    """``"90s"`` -> ``timedelta(seconds=90)``; ``ValueError`` in words for anything else.

    A bare number is refused (``180``: days? seconds?), and so are zero and more than 100 years.
    """
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise ValueError(f"must be {FORMAT}, not {_shown(text)}")
    match = DURATION.fullmatch(str(text))
    if match is None:
        unit = ": add a unit (s, m, h, d, w or y)" if str(text).strip().isdigit() else ""
        raise ValueError(f"{_shown(text)} is not {FORMAT}{unit}")
    delta = dt.timedelta(seconds=int(match[1]) * UNITS[match[2]])
    if not dt.timedelta(0) < delta <= LONGEST:
        raise ValueError(f"{_shown(text)} is out of range: from 1s to 100y")
    return delta


def format_duration(delta: dt.timedelta) -> str:
    """The shortest exact text for ``delta``: ``timedelta(hours=36)`` -> ``"36h"``."""
    seconds = int(delta.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds >= UNITS[unit] and seconds % UNITS[unit] == 0:
            return f"{seconds // UNITS[unit]}{unit}"
    return f"{seconds}s"


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
