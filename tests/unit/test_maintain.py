"""inv maintain's pure decisions (what is due, with compressed times), its recap and exit codes."""

import datetime as dt

import pytest

from mtls_deploy.maintain import due, recap
from mtls_deploy.maintain.due import PkiDates, Span, decide
from mtls_deploy.maintain.recap import Action
from mtls_deploy.operations import Step
from mtls_deploy.pki.settings import PkiSettings
from mtls_deploy.runner import HostResult

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
COMPRESSED = PkiSettings(
    crl_lifetime=3 * MIN, server_lifetime=4 * MIN, client_lifetime=5 * MIN,
    client_renew_before=2 * MIN, warn_before=MIN, ca_lifetime=30 * MIN,
)  # fmt: skip


def span(minutes: float, start=T0) -> Span:
    return Span(start, start + dt.timedelta(minutes=minutes))


def what(dues, kind, name=None):
    return [d.what for d in dues if d.kind == kind and (name is None or d.name == name)]


@pytest.mark.parametrize(
    ("elapsed", "expected"), [(1.9, "ok"), (2.0, "ok"), (2.01, "renew"), (3.5, "renew")]
)
def test_crl_is_resigned_when_less_than_a_third_of_its_life_is_left(elapsed, expected):
    dues = decide(PkiDates(crl=span(3)), COMPRESSED, T0 + elapsed * MIN)
    assert what(dues, "crl") == [expected]


def test_a_missing_crl_is_due():
    assert what(decide(PkiDates(), COMPRESSED, T0), "crl") == ["renew"]


@pytest.mark.parametrize(("elapsed", "expected"), [(2.6, "ok"), (2.7, "renew"), (5, "renew")])
def test_server_certificates_are_renewed_at_two_thirds_of_their_life(elapsed, expected):
    dates = PkiDates(crl=span(3, T0 + elapsed * MIN), servers={"mt-api": span(4)})
    assert what(decide(dates, COMPRESSED, T0 + elapsed * MIN), "server") == [expected]


@pytest.mark.parametrize(("elapsed", "expected"), [(2.9, "ok"), (3.01, "renew"), (6, "renew")])
def test_client_certificates_are_renewed_within_client_renew_before(elapsed, expected):
    dates = PkiDates(crl=span(3, T0 + elapsed * MIN), clients={"bob": span(5)})
    assert what(decide(dates, COMPRESSED, T0 + elapsed * MIN), "client", "bob") == [expected]


def test_each_kind_is_decided_on_its_own_clock():
    now = T0 + 2.5 * MIN
    dates = PkiDates(crl=span(3), servers={"a": span(4)}, clients={"bob": span(5), "eve": span(4)})
    dues = {(d.kind, d.name): d.what for d in decide(dates, COMPRESSED, now)}
    assert dues == {("crl", "crl.pem"): "renew", ("server", "a"): "ok",
                    ("client", "bob"): "ok", ("client", "eve"): "renew"}  # fmt: skip


def test_a_ca_warns_within_a_third_of_ca_lifetime_when_that_is_shorter_than_a_year():
    dates = PkiDates(crl=span(3), cas={"client CA": span(30)})
    assert what(decide(dates, COMPRESSED, T0 + 19 * MIN), "ca") == ["ok"]
    late = decide(dates, COMPRESSED, T0 + 21 * MIN)
    assert what(late, "ca") == ["warning"]
    assert "inv pki.rollover --ca client --start" in late[-1].why


def test_a_ca_warns_a_year_before_its_end_with_real_lifetimes():
    ten_years = Span(T0, T0 + dt.timedelta(days=3650))
    dates = PkiDates(crl=span(3), cas={"server CA": ten_years})
    settings = PkiSettings()
    assert what(decide(dates, settings, ten_years.end - dt.timedelta(days=366)), "ca") == ["ok"]
    assert what(decide(dates, settings, ten_years.end - dt.timedelta(days=364)), "ca") == [
        "warning"
    ]
    assert due.ca_warning_point(settings.ca_lifetime) == dt.timedelta(days=365)


def test_another_cas_server_certificate_is_reported_never_renewed():
    dates = PkiDates(crl=span(3), foreign={"acme1": span(4)})
    found = decide(dates, COMPRESSED, T0 + 3.5 * MIN)
    assert what(found, "foreign") == ["warning"]
    assert "renewed by its own CA, not by us" in found[-1].why
    assert what(decide(dates, COMPRESSED, T0 + MIN), "foreign") == ["ok"]


def test_durations_read_shortly():
    assert due.short(dt.timedelta(days=2, hours=3, minutes=4)) == "2d 3h"
    assert due.short(dt.timedelta(seconds=70)) == "1m 10s"
    assert due.short(dt.timedelta(0)) == "0s"
    assert due.left(T0, T0 + MIN) == "none (expired)"


# --- recap and exit codes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "code", "label"),
    [([], 0, "OK"), (["ok", "changed"], 0, "OK"), (["changed", "warning"], 1, "WARNING"),
     (["warning", "critical", "ok"], 2, "CRITICAL")],
)  # fmt: skip
def test_exit_code_is_the_worst_action_as_status_gives_it(statuses, code, label):
    actions = [Action(f"x{i}", s, "t") for i, s in enumerate(statuses)]
    assert recap.exit_code(actions) == code
    assert recap.summary(actions).startswith(f"maintain: {label} - ")


def test_the_recap_names_the_failed_hosts_first_then_a_line_per_action():
    actions = [
        Action("crl.pem", "changed", "re-signed"),
        Action("host mt-down", "critical", "FAILED: x"),
    ]
    lines = recap.recap_text(actions).splitlines()
    assert lines[0] == "maintain: CRITICAL - 1 changed, 1 critical (host mt-down)"
    assert lines[1:] == ["changed  crl.pem: re-signed", "critical host mt-down: FAILED: x"]


def test_a_host_line_says_what_changed_or_why_it_failed():
    down = HostResult("mt-down", error="mt-down: cannot reach 127.0.0.1:2299")
    assert recap.host_action(down) == Action(
        "host mt-down", "critical", "FAILED: cannot reach 127.0.0.1:2299"
    )
    changed = HostResult("a", [Step("pki", "server certificate", "changed", "renewed: 1m left"),
                               Step("file", "/etc/t/crl.pem", "changed", "content differs"),
                               Step("file", "/etc/t/server.key", "ok", "")])  # fmt: skip
    line = recap.host_action(changed)
    assert line.status == "changed"
    assert line.text == "server certificate renewed: 1m left; crl.pem content differs"
    assert recap.host_action(HostResult("a", [Step("file", "f", "ok", "")])).status == "ok"
    failed = HostResult("a", [Step("file", "f", "failed", "nginx -t: bad")])
    assert recap.host_action(failed).text == "FAILED: f (nginx -t: bad)"
