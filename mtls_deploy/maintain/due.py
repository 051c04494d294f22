"""What ``inv maintain`` must do now, decided from dates alone: pure, no PKI, no host.

- the CRL: re-signed when less than a third of its life is left (``settings.third_left``);
- a server certificate of our server CA: renewed at two thirds of its life (the same rule);
- a client certificate: renewed when it ends within ``client_renew_before``;
- a CA: a warning when it ends within a year, or within a third of ``ca_lifetime`` when that is
  shorter (so a PKI whose time is compressed to minutes warns in minutes too);
- a server certificate of another CA (``acme``, ``files``): reported, never renewed by us; a
  warning within ``warn_before`` of its end.

Example::

    due = decide(PkiDates(crl=Span(a, b), clients={"bob": Span(c, d)}), PkiSettings(), now)
    [action.line() for action in due]
"""

import datetime as dt
from dataclasses import dataclass, field

from ..pki.settings import PkiSettings, third_left

YEAR = dt.timedelta(days=365)
RENEW, WARN, OK = "renew", "warning", "ok"


@dataclass(frozen=True)
class Span:
    """When something starts and ends (notBefore/notAfter, thisUpdate/nextUpdate)."""

    start: dt.datetime
    end: dt.datetime


@dataclass(frozen=True)
class PkiDates:
    """The dates ``decide`` reads: the CRL, our server certificates by host, the valid client
    certificates by name, the CAs by name, and other CAs' server certificates by host."""

    crl: Span | None = None
    servers: dict[str, Span] = field(default_factory=dict)
    clients: dict[str, Span] = field(default_factory=dict)
    cas: dict[str, Span] = field(default_factory=dict)
    foreign: dict[str, Span] = field(default_factory=dict)


@dataclass(frozen=True)
class Due:
    """One decision: ``kind`` (crl, server, client, ca, foreign), its name, ``what`` (renew,
    warning, ok) and why, in words."""

    kind: str
    name: str
    what: str
    why: str


def decide(dates: PkiDates, settings: PkiSettings, now: dt.datetime) -> list[Due]:
    """Every decision, CRL first, then servers, clients, foreign certificates and CAs."""
    found = [crl_due(dates.crl, now)] if dates.crl else [Due("crl", "crl.pem", RENEW, "missing")]
    found += [server_due(host, span, now) for host, span in sorted(dates.servers.items())]
    renew_before = settings.client_renew_before
    found += [client_due(n, s, now, renew_before) for n, s in sorted(dates.clients.items())]
    found += [
        foreign_due(h, s, now, settings.warn_before) for h, s in sorted(dates.foreign.items())
    ]
    found += [
        ca_due(name, span, now, settings.ca_lifetime) for name, span in sorted(dates.cas.items())
    ]
    return found


def crl_due(span: Span, now: dt.datetime) -> Due:
    """Re-sign the CRL when less than a third of its life is left."""
    if third_left(span.start, span.end, now):
        return Due("crl", "crl.pem", RENEW, f"{left(span.end, now)} left of {length(span)}")
    return Due("crl", "crl.pem", OK, f"{left(span.end, now)} left")


def server_due(host: str, span: Span, now: dt.datetime) -> Due:
    """Renew a server certificate of ours at two thirds of its life."""
    if third_left(span.start, span.end, now):
        return Due("server", host, RENEW, f"{left(span.end, now)} left of {length(span)}")
    return Due("server", host, OK, f"{left(span.end, now)} left")


def client_due(name: str, span: Span, now: dt.datetime, renew_before: dt.timedelta) -> Due:
    """Renew a client certificate that ends within ``renew_before``."""
    if span.end - now < renew_before:
        return Due(
            "client",
            name,
            RENEW,
            f"{left(span.end, now)} left (renew within {short(renew_before)})",
        )
    return Due("client", name, OK, f"{left(span.end, now)} left")


def foreign_due(host: str, span: Span, now: dt.datetime, warn_before: dt.timedelta) -> Due:
    """Another CA's server certificate (acme, files): its renewal is not ours; warn near its end."""
    what = WARN if span.end - now < warn_before else OK
    return Due(
        "foreign", host, what, f"{left(span.end, now)} left; renewed by its own CA, not by us"
    )


def ca_warning_point(ca_lifetime: dt.timedelta) -> dt.timedelta:
    """How long before a CA's end maintain warns: a year, or a third of ``ca_lifetime`` if less."""
    return min(YEAR, ca_lifetime / 3)


def ca_due(name: str, span: Span, now: dt.datetime, ca_lifetime: dt.timedelta) -> Due:
    """A warning when a CA ends within ``ca_warning_point``: plan a rollover."""
    if span.end - now < ca_warning_point(ca_lifetime):
        fix = f"plan a rollover: inv pki.rollover --ca {name.split()[0]} --start"
        return Due("ca", name, WARN, f"{left(span.end, now)} left: {fix}")
    return Due("ca", name, OK, f"{left(span.end, now)} left")


def left(end: dt.datetime, now: dt.datetime) -> str:
    """``3d 4h`` left until ``end``, or ``expired``."""
    return short(end - now) if end > now else "none (expired)"


def length(span: Span) -> str:
    """The whole life of ``span``: ``3m``."""
    return short(span.end - span.start)


def short(delta: dt.timedelta) -> str:
    """``delta`` in its two largest units: ``2d 3h``, ``4m 10s``, ``12s``."""
    seconds = max(0, int(delta.total_seconds()))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts[:2])
