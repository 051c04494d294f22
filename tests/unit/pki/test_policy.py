"""When a stored server certificate must be issued again, and what an unchanged client is told."""

import datetime as dt

import pytest

from mtls_deploy.pki import keys, policy, profile

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def server():
    """(server CA, its key, a server certificate for api1.example.test + 192.0.2.10, its key)."""
    ca_key = profile.generate_key("ec")
    ca = profile.make_ca(ca_key, "Server CA", NOW)
    key = profile.generate_key("ec")
    cert = profile.issue_server_cert(
        ca, ca_key, key.public_key(), ["api1.example.test"], ["192.0.2.10"], 7, NOW
    )
    return ca, ca_key, cert, keys.private_key_pem(key)


def staleness(server, dns=("api1.example.test",), ips=("192.0.2.10",), now=NOW, ca=None):
    ca_cert, _, cert, key_pem = server
    return policy.server_staleness(cert, key_pem, list(dns), list(ips), now, ca or ca_cert)


def test_a_fresh_certificate_with_the_same_names_is_kept(server):
    assert staleness(server).startswith("ok: valid until 2027-03-01, names match")


def test_changed_names_say_what_was_added_and_removed(server):
    reason = staleness(server, dns=("api2.example.test",))
    assert reason == "names changed (added ['api2.example.test'], removed ['api1.example.test'])"


def test_another_server_ca_means_a_new_certificate(server):
    other = profile.make_ca(profile.generate_key("ec"), "Server CA", NOW)  # same name, other key
    assert staleness(server, ca=other) == "signed by another server CA"


def test_a_key_that_does_not_match_means_a_new_certificate(server):
    ca_cert, ca_key, cert, _ = server
    stranger = keys.private_key_pem(profile.generate_key("ec"))
    reason = policy.server_staleness(
        cert, stranger, ["api1.example.test"], ["192.0.2.10"], NOW, ca_cert
    )
    assert reason == "key and certificate do not match"


@pytest.mark.parametrize("days_left, stale", [(123, False), (120, True), (29, True)])
def test_under_a_third_of_its_life_left_means_a_new_certificate(server, days_left, stale):
    not_after = server[2].not_valid_after_utc  # 365 days + 5 minutes: renewed after ~243 days
    reason = staleness(server, now=not_after - dt.timedelta(days=days_left, hours=1))
    assert reason.startswith(f"{max(days_left, 0)} days left (under a third") == stale


def test_an_expired_certificate_says_since_when(server):
    not_after = server[2].not_valid_after_utc
    assert staleness(server, now=not_after + dt.timedelta(days=3, hours=1)) == "expired 3 days ago"


@pytest.mark.parametrize("seconds_left, stale", [(65, False), (60, True)])
def test_a_three_minute_certificate_is_renewed_after_two(server, seconds_left, stale):
    ca_cert, ca_key, _, _ = server
    key = profile.generate_key("ec")
    short = profile.issue_server_cert(
        ca_cert, ca_key, key.public_key(), ["api1.example.test"], [], 8, NOW,
        dt.timedelta(minutes=3),
    )  # fmt: skip
    now = short.not_valid_after_utc - dt.timedelta(seconds=seconds_left)
    pem = keys.private_key_pem(key)
    reason = policy.server_staleness(short, pem, ["api1.example.test"], [], now, ca_cert)
    assert reason.startswith("ok: ") != stale


def test_an_unchanged_client_expiring_soon_is_told_how_to_renew():
    row = {
        "serial": "0A",
        "name": "bob",
        "status": "valid",
        "not_after": "2026-03-20T00:00:00+00:00",
    }
    reason = policy.unchanged_reason(row, NOW)
    assert reason.startswith("unchanged: valid certificate (serial 0A) until 2026-03-20")
    assert "expires in 18 days: run `inv renew-client --name bob`" in reason
    assert reason.endswith("(--reissue to replace it)")
