"""The smoke test's case table (mtls_deploy/smoke/cases.py): every case once, from where, and what
it expects. Pure."""

import pytest

from mtls_deploy.smoke import Client, ConsumerHost, Expect
from mtls_deploy.smoke.cases import plan_cases
from tests.unit.smoke_world import API, BOB, by_row

# --- the case table -----------------------------------------------------------------------------


def test_every_case_once_with_client_verify_on():
    cases = plan_cases([API], [BOB])
    assert by_row(cases) == [
        (1, "bob", "api1", "valid → 200 CN=bob"),
        (2, "bob", "api1", "400 certificate required"),
        (3, "api1", "api1", "rejected (revoked)"),
        (4, "api1", "api1", "rejected (unknown issuer)"),
        (5, "api1", "api1", "rejected (expired)"),
        (6, "bob", "api1", "not authenticated (400)"),
        (7, "bob", "api1", "refused"),
        (8, "bob", "api1", "verifies for api1.lab.test"),
        (9, "control", "api1", "valid ≥ 7 days, = PKI's"),
    ]
    assert cases[0].expect == Expect("identity", 200, cn="bob", serial="0A1B")
    assert all(c.result == "" for c in cases)


def test_client_verify_optional_checks_health_and_whoami_without_a_certificate():
    cases = plan_cases([smoke_replace(API, client_verify="optional")], [BOB])
    no_cert = [(c.expected, c.request.path) for c in cases if c.number == 2]
    assert no_cert == [("200 on /health", "/health"), ("401 on /whoami", "/whoami")]
    assert next(c for c in cases if c.number == 6).expect == Expect("unauthenticated", 401)


def smoke_replace(target, **changes):
    import dataclasses

    return dataclasses.replace(target, **changes)


def test_the_index_decides_what_case_1_expects():
    consumer = ConsumerHost(
        "box",
        ".mtls/api",
        (Client("bob", "revoked"), Client("eve", "expired"), Client("new", None)),
    )
    first = [c for c in plan_cases([API], [consumer]) if c.number == 1]
    assert [c.expected for c in first] == ["revoked → rejected", "expired → rejected", "not issued"]
    assert first[0].expect == Expect("rejected", 400, words=("revoked",))
    assert first[2].result == "skip" and first[2].request is None


def test_without_consumers_the_api_host_curls_itself():
    cases = plan_cases([API], [])
    assert {c.source for c in cases if c.number in (2, 6, 7, 8)} == {"api1"}
    assert not [c for c in cases if c.number == 1]


CONSUMER_SETS = {
    "none": [],
    "bob": [BOB],
    "nothing issued": [ConsumerHost("box", ".mtls/api", (Client("new", None),))],
    "all revoked": [ConsumerHost("box", ".mtls/api", (Client("bob", "revoked"),))],
}


@pytest.mark.parametrize("consumers", CONSUMER_SETS.values(), ids=CONSUMER_SETS.keys())
def test_case_3_is_always_planned_never_skipped(consumers):
    """Whether or not a client was ever revoked, case 3 runs: the PKI has its own revoked one."""
    for verify in ("on", "optional"):
        cases = plan_cases([smoke_replace(API, client_verify=verify)], consumers)
        revoked = [c for c in cases if c.number == 3]
        assert len(revoked) == 1 and revoked[0].result == "" and revoked[0].request is not None
        assert revoked[0].request.cert == '"$d/revoked.crt"'


def test_each_number_names_one_case_and_each_case_one_number():
    consumer = ConsumerHost("box", ".mtls/api", (Client("bob", "valid"), Client("eve", "revoked")))
    for verify in ("on", "optional"):
        cases = plan_cases([smoke_replace(API, client_verify=verify)], [consumer])
        names = {}
        for case in cases:
            names.setdefault(case.number, set()).add(case.name.split()[0])
        assert sorted(names) == list(range(1, 10))
        assert all(len(kinds) == 1 for kinds in names.values()), names


def test_the_connect_address():
    assert API.address(from_itself=False) == "127.0.0.1"
    public = smoke_replace(API, listen="*", ssh_address="203.0.113.7")
    assert public.address(from_itself=False) == "203.0.113.7"
    assert public.address(from_itself=True) == "127.0.0.1"
    assert smoke_replace(API, listen="::").address(from_itself=True) == "::1"
