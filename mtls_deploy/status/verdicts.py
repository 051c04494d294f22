"""Judging what ``gather`` read: every fact becomes a ``Check`` row (ok, warning or critical),
and the worst row the exit code, as monitoring plugins (Nagios, Icinga) read it. Pure: plain
data in, plain data out; no host, no PKI.
"""

import datetime as dt
from dataclasses import asdict, dataclass, field

OK, WARNING, CRITICAL, UNKNOWN = "ok", "warning", "critical", "unknown"
EXIT_CODES = {OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3}
LEVELS = (OK, WARNING, CRITICAL, UNKNOWN)


@dataclass(frozen=True)
class Check:
    """One row of ``inv status``: what was looked at, where, and the verdict.

    ``kind``: host, server-cert, client-ca, crl, services, drift, client, ca. ``not_before``,
    ``not_after`` and ``renew_at`` place it on the HTML timeline (None: not a dated thing).
    """

    kind: str
    name: str
    status: str
    detail: str
    host: str | None = None
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    renew_at: dt.datetime | None = None
    facts: dict = field(default_factory=dict)

    def days_left(self, now: dt.datetime) -> int | None:
        """Whole days until ``not_after`` (negative once past), or None."""
        if self.not_after is None:
            return None
        return int((self.not_after - now).total_seconds() // 86400)

    def to_dict(self, now: dt.datetime) -> dict:
        """The row as the ``--json`` document has it (ISO 8601 dates, ``days_left``)."""
        data = asdict(self)
        for key in ("not_before", "not_after", "renew_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return {**data, "days_left": self.days_left(now)}


def worst(statuses) -> str:
    """The worst of ``statuses`` (ok < warning < critical < unknown); ok when there are none."""
    return max(statuses, key=LEVELS.index, default=OK)


def exit_code(checks: list[Check]) -> int:
    """0 all fine, 1 a warning, 2 critical: the monitoring-plugin convention."""
    return EXIT_CODES[worst(c.status for c in checks)]


def dated(expires: dt.datetime, now: dt.datetime, warn_before: dt.timedelta) -> str:
    """critical once ``expires`` is past, warning within ``warn_before`` of it, else ok."""
    if expires <= now:
        return CRITICAL
    return WARNING if expires - now <= warn_before else OK


def left_text(expires: dt.datetime, now: dt.datetime) -> str:
    """``"expires in 12 d"``, ``"expires in 5 h"``, ``"expired 3 d ago"``."""
    seconds = (expires - now).total_seconds()
    amount = abs(seconds)
    unit, size = next((u, s) for u, s in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))
                      if amount >= s or u == "s")  # fmt: skip
    figure = int(amount // size)
    return f"expires in {figure} {unit}" if seconds > 0 else f"expired {figure} {unit} ago"


def certificate_check(kind, name, host, facts: dict, now, warn_before, renew_at=None) -> Check:
    """A certificate (server, client, CA) judged by its dates and ``facts['match']``: a
    mismatch with the PKI is critical whatever the dates."""
    status = dated(facts["not_after"], now, warn_before)
    words = [left_text(facts["not_after"], now)]
    if facts.get("match") is False:
        status = CRITICAL
        words.append(facts.get("mismatch") or "differs from the PKI's")
    elif facts.get("note"):
        words.append(facts["note"])
    return Check(kind, name, status, "; ".join(words), host, facts.get("not_before"),
                 facts["not_after"], renew_at, _plain(facts))  # fmt: skip


def crl_check(host, crl: dict | None, pki_crl: dict, now, warn_before) -> Check:
    """The CRL on ``host`` (``crl``: number, this/next update, der) against the PKI's."""
    renew_at = renewal_point(pki_crl["this_update"], pki_crl["next_update"], 2 / 3)
    if crl is None:
        return Check("crl", "crl.pem", CRITICAL, "missing or unreadable on the host", host)
    status = dated(crl["next_update"], now, warn_before)
    words = [f"#{crl['number']}", f"next update {crl['next_update']:%Y-%m-%d %H:%M}",
             left_text(crl["next_update"], now)]  # fmt: skip
    if crl["der"] != pki_crl["der"]:
        status = CRITICAL
        words.append(f"not the PKI's (#{pki_crl['number']}): run `inv pki.crl --push`")
    return Check("crl", "crl.pem", status, "; ".join(words), host, crl["this_update"],
                 crl["next_update"], renew_at, _plain(crl))  # fmt: skip


def bundle_check(host, found: list[str] | None, expected: list[str]) -> Check:
    """The client CA bundle on ``host``: the same fingerprints as the PKI's client CA(s)."""
    if found is None:
        return Check("client-ca", "client-ca.crt", CRITICAL, "missing or unreadable", host)
    facts = {"fingerprints": found, "pki_fingerprints": expected}
    if sorted(found) != sorted(expected):
        why = "not the PKI's client CA: run `inv provision --host " + host + "`"
        return Check("client-ca", "client-ca.crt", CRITICAL, why, host, facts=facts)
    shown = ", ".join(f[:16] for f in found)
    return Check("client-ca", "client-ca.crt", OK, f"the PKI's ({shown}...)", host, facts=facts)


def services_check(host, units: dict[str, str]) -> Check:
    """``units``: {unit: systemctl's active state}; critical unless every one is active."""
    if not units:
        return Check("services", "units", CRITICAL, "none recorded: provision the host", host)
    down = {u: s for u, s in units.items() if s != "active"}
    shown = ", ".join(f"{u} {s}" for u, s in sorted((down or units).items()))
    return Check("services", "units", CRITICAL if down else OK, shown, host, facts={"units": units})


def drift_check(host, changed: list[str] | None, error: str | None = None) -> Check:
    """``provision --check``'s changed steps: any is drift (a warning: nothing is down)."""
    if error is not None:
        return Check("drift", "provision --check", CRITICAL, error, host)
    if not changed:
        return Check("drift", "provision --check", OK, "no changes", host, facts={"changed": []})
    detail = f"{len(changed)} changed: {', '.join(changed[:3])}" + (
        ", ..." if len(changed) > 3 else ""
    )
    return Check("drift", "provision --check", WARNING, detail + " (run `inv provision`)", host,
                 facts={"changed": changed})  # fmt: skip


def unreachable_check(host: str, error: str) -> Check:
    """A host we could not read: critical (the monitoring convention for 'down')."""
    return Check("host", "ssh", CRITICAL, f"unreachable: {error}", host)


def renewal_point(start: dt.datetime, end: dt.datetime, fraction: float) -> dt.datetime:
    """The moment ``fraction`` of the life from ``start`` to ``end`` has passed."""
    return start + (end - start) * fraction


def _plain(facts: dict) -> dict:
    """``facts`` without bytes and with ISO dates: what JSON carries."""
    shown = {}
    for key, value in facts.items():
        if isinstance(value, bytes):
            continue
        shown[key] = value.isoformat() if isinstance(value, dt.datetime) else value
    return shown
