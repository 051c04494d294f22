"""The PKI's lifetimes and thresholds (pki/settings.py), with time compressed to minutes."""

import datetime as dt

import pytest
from cryptography import x509

from mtls_deploy.errors import BadInput
from mtls_deploy.pki import settings
from mtls_deploy.pki.settings import PkiSettings
from mtls_deploy.pki.store import PkiStore

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)
COMPRESSED = PkiSettings(
    client_lifetime=4 * MINUTE,
    server_lifetime=3 * MINUTE,
    crl_lifetime=2 * MINUTE,
    ca_lifetime=60 * MINUTE,
    warn_before=MINUTE,
    client_renew_before=MINUTE,
)


def test_the_defaults_are_those_of_today():
    days = {name: getattr(PkiSettings(), name).days for name in settings.names()}
    assert days == {
        "client_lifetime": 365, "server_lifetime": 365, "crl_lifetime": 180, "ca_lifetime": 3650,
        "warn_before": 30, "client_renew_before": 30,
    }  # fmt: skip


def test_settings_come_from_durations_as_text_and_a_bad_one_is_one_line():
    chosen = PkiSettings.from_values(
        {"crl_lifetime": "2m", "server_name": "x", "warn_before": None}
    )
    assert chosen == PkiSettings(crl_lifetime=2 * MINUTE)
    with pytest.raises(BadInput, match=r"^client_lifetime .365. is not a duration .*: add a unit"):
        PkiSettings.from_values({"client_lifetime": "365"})


@pytest.mark.parametrize(
    "lifetime, back",
    [(dt.timedelta(days=365), dt.timedelta(minutes=5)), (2 * MINUTE, dt.timedelta(seconds=6)),
     (100 * MINUTE, dt.timedelta(minutes=5)), (20 * MINUTE, MINUTE)],
)  # fmt: skip
def test_backdating_is_five_minutes_at_most_a_twentieth_of_the_life(lifetime, back):
    assert settings.backdate(lifetime) == back


@pytest.mark.parametrize(
    "lifetime", [dt.timedelta(days=365), dt.timedelta(days=1), 99 * MINUTE, 4 * MINUTE, MINUTE]
)
def test_signed_lifetime_undoes_the_backdating(lifetime):
    not_before = NOW - settings.backdate(lifetime)
    assert settings.signed_lifetime(not_before, NOW + lifetime) == lifetime


def test_a_third_left_is_measured_in_seconds():
    start, end = NOW, NOW + dt.timedelta(seconds=126)
    assert not settings.third_left(start, end, end - dt.timedelta(seconds=43))
    assert settings.third_left(start, end, end - dt.timedelta(seconds=41))


@pytest.mark.parametrize("days", [0, -1, 1.5, "7", True, dt.timedelta(0)])
def test_a_validity_below_a_second_or_not_whole_days_is_refused(days):
    with pytest.raises(BadInput, match="invalid validity"):
        settings.as_lifetime(days)


@pytest.fixture
def compressed(pki_env):
    """A PKI whose CAs live an hour, CRL two minutes, servers three, clients four."""
    PkiStore(pki_env.pki_dir, settings=COMPRESSED).init(name="Test API", now=NOW)
    store = PkiStore.open(pki_env.pki_dir, settings=COMPRESSED)
    yield store
    store.close()


def test_a_two_minute_crl_is_not_born_due(compressed):
    crl = compressed.crl()
    assert crl.next_update_utc - crl.last_update_utc == dt.timedelta(seconds=126)
    assert not compressed.crl_due(NOW)
    assert not compressed.crl_due(NOW + 70 * dt.timedelta(seconds=1))  # 50 s of 126 left
    assert compressed.crl_due(NOW + 90 * dt.timedelta(seconds=1))  # 30 s of 126 left
    compressed.refresh_crl(now=NOW + 90 * dt.timedelta(seconds=1))
    assert not compressed.crl_due(NOW + 90 * dt.timedelta(seconds=1))


def test_the_cas_live_as_long_as_the_setting_says(compressed, pki_env):
    ca = x509.load_pem_x509_certificate(compressed.client_ca_pem())
    assert ca.not_valid_after_utc == NOW + 60 * MINUTE
    assert ca.not_valid_before_utc == NOW - 3 * MINUTE  # a twentieth of an hour


def test_a_client_lives_four_minutes_and_its_renewal_too(compressed):
    issued = compressed.issue_client("bob", now=NOW)
    cert = x509.load_pem_x509_certificate(issued.cert_path.read_bytes())
    assert cert.not_valid_after_utc - NOW == 4 * MINUTE
    assert NOW - cert.not_valid_before_utc == dt.timedelta(seconds=12)
    renewed = compressed.renew_client("bob", now=NOW + 3 * MINUTE)
    again = x509.load_pem_x509_certificate(renewed.cert_path.read_bytes())
    assert again.not_valid_after_utc - (NOW + 3 * MINUTE) == 4 * MINUTE  # not a whole day


def test_days_override_the_client_lifetime(pki_env):
    PkiStore(pki_env.pki_dir, settings=COMPRESSED).init(name="Test API", ca_days=30, now=NOW)
    store = PkiStore.open(pki_env.pki_dir, settings=COMPRESSED)
    issued = store.issue_client("bob", days=2, now=NOW)
    cert = x509.load_pem_x509_certificate(issued.cert_path.read_bytes())
    assert cert.not_valid_after_utc - NOW == dt.timedelta(days=2)


def test_a_three_minute_server_certificate_is_renewed_at_two_thirds(compressed):
    names = ("api1", ["api1.example.test"], [])
    first = compressed.server_cert(*names, now=NOW)
    cert = x509.load_pem_x509_certificate(first.cert_pem)
    assert cert.not_valid_after_utc - NOW == 3 * MINUTE
    assert not compressed.server_cert(*names, now=NOW + 110 * dt.timedelta(seconds=1)).changed
    late = compressed.server_cert(*names, now=NOW + 130 * dt.timedelta(seconds=1))
    assert late.changed and "seconds left (under a third of its life)" in late.reason


def test_expiring_follows_warn_before(compressed):
    compressed.issue_client("bob", now=NOW)
    reason = compressed.issue_client("bob", now=NOW + 3 * MINUTE + dt.timedelta(seconds=30))
    assert "expires in 30 seconds: run `inv renew-client --name bob`" in reason.reason
