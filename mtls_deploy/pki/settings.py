"""The PKI's lifetimes and thresholds, as one value the caller passes in.

The PKI never reads the inventory: ``clients.pki_settings()`` builds a ``PkiSettings`` from
``group_vars/all`` (``client_lifetime: 365d``, ...) and hands it to ``PkiStore``. Every field is a
``timedelta``, so time compresses for tests: ``PkiSettings(crl_lifetime=timedelta(minutes=2))``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields

from ..durations import parse_duration
from ..errors import BadInput

DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class PkiSettings:
    """Lifetimes of what the PKI signs, and when to warn and renew (defaults as in easy-rsa's
    spirit: a year for leaves, 180 days for the CRL, ten years for the CAs)."""

    client_lifetime: dt.timedelta = 365 * DAY
    server_lifetime: dt.timedelta = 365 * DAY
    crl_lifetime: dt.timedelta = 180 * DAY
    ca_lifetime: dt.timedelta = 3650 * DAY
    warn_before: dt.timedelta = 30 * DAY
    client_renew_before: dt.timedelta = 30 * DAY

    @classmethod
    def from_values(cls, values: dict) -> PkiSettings:
        """Settings from durations as text (``{"crl_lifetime": "2m"}``); keys not given keep
        their default, other keys are ignored. A bad value is one line (``BadInput``)."""
        chosen = {}
        for name in names():
            if values.get(name) is None:
                continue
            try:
                chosen[name] = parse_duration(values[name])
            except ValueError as problem:
                raise BadInput(f"{name} {problem}") from None
        return cls(**chosen)


def names() -> list[str]:
    """The settings' names, as the inventory spells them."""
    return [field.name for field in fields(PkiSettings)]


def backdate(lifetime: dt.timedelta) -> dt.timedelta:
    """How far ``notBefore`` (or a CRL's thisUpdate) goes back for clock skew: 5 minutes, but
    at most a twentieth of ``lifetime``, so a 2-minute CRL is not born a third used up."""
    return min(dt.timedelta(minutes=5), lifetime / 20)


def third_left(not_before: dt.datetime, not_after: dt.datetime, now: dt.datetime) -> bool:
    """Whether less than a third of the life from ``not_before`` to ``not_after`` is left at
    ``now`` (to the microsecond): when a CRL is re-signed and a server certificate renewed."""
    return (not_after - now) * 3 < (not_after - not_before)


def as_lifetime(days) -> dt.timedelta:
    """A validity as a ``timedelta``: ``days`` is a whole number of days (``--days 90``) or a
    ``timedelta`` of at least a second; ``BadInput`` otherwise (0 is refused, not a default)."""
    if isinstance(days, dt.timedelta) and days >= dt.timedelta(seconds=1):
        return days
    if isinstance(days, int) and not isinstance(days, bool) and days >= 1:
        return dt.timedelta(days=days)
    shown = repr(days) if len(repr(days)) <= 40 else repr(days)[:37] + "..."
    raise BadInput(f"invalid validity {shown} days: use a whole number of days, at least 1")


def signed_lifetime(not_before: dt.datetime, not_after: dt.datetime) -> dt.timedelta:
    """The lifetime a certificate or CRL was signed with, back-dating (``backdate``) taken off;
    to the second. Example: a 4-minute certificate spans 4m12s and gives back 4 minutes."""
    span = not_after - not_before
    full = span - dt.timedelta(minutes=5)
    lifetime = full if full / 20 >= dt.timedelta(minutes=5) else span * 20 / 21
    return dt.timedelta(seconds=max(1, round(lifetime.total_seconds())))
