"""Judging the smoke test's rows (mtls_deploy/smoke/verdicts.py): curl results, the host's CRL, a
host that cannot be reached. Pure."""

import datetime as dt

import pytest
from cryptography.hazmat.primitives import serialization

from mtls_deploy.pki import profile as pki
from mtls_deploy.runner import HostResult
from mtls_deploy.smoke import ApiTarget, Case, CurlResult, Expect
from mtls_deploy.smoke.cases import plan_cases
from mtls_deploy.smoke.report import SmokeReport, rows, table_lines
from mtls_deploy.smoke.verdicts import (
    collapse_unreachable,
    judge,
    judge_crl,
    judge_missing,
    same_serial,
    settle_cases,
)
from tests.unit.smoke_world import API, BOB, NO_CERT, NOW, REVOKED, TLS_ALERT, WHOAMI, crl_pem

# --- judging curl results -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "expect, result, passed, got",
    [
        (Expect("identity", 200, cn="bob", serial="0A1B"), CurlResult("x", 0, 200, WHOAMI), True, "200 CN=bob"),
        (Expect("identity", 200, cn="bob", serial="FF"), CurlResult("x", 0, 200, WHOAMI), False,
         "200 CN=bob, serial 0a1b but the index has FF: redeliver"),
        (Expect("identity", 200, cn="bob"), CurlResult("x", 0, 400, REVOKED), False, "400 certificate revoked"),
        (Expect("rejected", 400, words=("revoked",)), CurlResult("x", 0, 400, REVOKED), True, "400 certificate revoked"),
        (Expect("rejected", 400, words=("expired",)), CurlResult("x", 0, 400, REVOKED), False, "400 certificate revoked"),
        (Expect("rejected", 400, words=("revoked",)), CurlResult("x", 0, 200, WHOAMI), False, "200 CN=bob"),
        (Expect("status", 400), CurlResult("x", 0, 400, NO_CERT), True, "400 no client certificate was sent"),
        (Expect("unauthenticated", 401), CurlResult("x", 0, 401, '{"error":"client certificate required"}'), True,
         "401 client certificate required"),
        (Expect("unauthenticated", 400), CurlResult("x", 0, 200, WHOAMI), False, "AUTHENTICATED by headers: 200 CN=bob"),
        (Expect("refused"), CurlResult("x", 35, 0, error=TLS_ALERT), True, "refused: (35) tlsv1 alert protocol version"),
        (Expect("refused"), CurlResult("x", 0, 400, NO_CERT), False, "400 no client certificate was sent"),
        (Expect("refused"), CurlResult("x", 7, 0, error="curl: (7) Failed to connect"), False,
         "curl 7: (7) Failed to connect"),
        (Expect("verified"), CurlResult("x", 0, 400, NO_CERT), True, "verified (HTTP 400)"),
        (Expect("verified"), CurlResult("x", 60, 0, error="curl: (60) SSL certificate problem: self-signed certificate"),
         False, "curl 60: (60) SSL certificate problem: self-signed certificate"),
    ],
)  # fmt: skip
def test_judge(expect, result, passed, got):
    assert judge(expect, result) == (passed, got)


def test_serials_compare_as_numbers():
    assert same_serial("0A1B", "a1b") and not same_serial("0A1B", "0A1C")
    assert not same_serial("", "0A")


def test_a_missing_bundle_fails_only_while_the_index_says_valid():
    valid = plan_cases([API], [BOB])[0]
    assert judge_missing(valid).result == "fail"
    assert "inv issue-client --name bob" in valid.got
    revoked = Case(
        1,
        "bundle bob",
        "bob",
        "api1",
        "revoked → rejected",
        Expect("rejected", 400, words=("revoked",)),
    )
    assert judge_missing(revoked).result == "skip"


def test_judge_crl(client_ca):
    good = crl_pem(client_ca)
    cert = client_ca[0]
    assert judge_crl(good, good, cert, NOW) == (True, "valid 180 more days, = PKI's (CRL #1)")
    newer = pki.sign_crl(*client_ca, [], 2, NOW, 180).public_bytes(serialization.Encoding.PEM)
    assert judge_crl(good, newer, cert, NOW) == (
        False,
        "CRL #1 but the PKI has #2: run `inv pki.crl --push`",
    )
    passed, got = judge_crl(good, good, cert, NOW + dt.timedelta(days=175))
    assert not passed and got.startswith("EXPIRES IN 5 DAYS")
    passed, got = judge_crl(good, good, cert, NOW + dt.timedelta(days=181))
    assert not passed and got.startswith("EXPIRED")
    foreign = (pki.make_ca(pki.generate_key("ec"), "other", NOW), None)
    assert "not signed by this PKI's client CA" in judge_crl(good, good, foreign[0], NOW)[1]
    assert judge_crl(None, good, cert, NOW)[0] is False
    assert judge_crl(b"garbage", good, cert, NOW)[0] is False


# --- a host that cannot be reached ------------------------------------------------------------

GONE = ApiTarget("gone", "gone.lab.test", 8499, "127.0.0.1", "127.0.0.1", "on", "/etc/crl.pem")
REFUSED = "gone: cannot reach deploy@127.0.0.1:2299: connection refused"


def test_an_unreachable_api_host_is_one_failed_row_and_the_others_go_on():
    cases = plan_cases([API, GONE], [])
    outputs = {
        "api1": HostResult("api1", data={"results": {}}),
        "gone": HostResult("gone", error=REFUSED),
    }
    collapsed = collapse_unreachable(cases, outputs)
    gone = [c for c in collapsed if "gone" in (c.source, c.target)]
    assert [(c.number, c.name, c.source, c.expected, c.got, c.result) for c in gone] == [
        (None, "unreachable", "gone", "an SSH session (8 cases)", REFUSED[6:], "fail")
    ]
    assert [c for c in collapsed if c.target == "api1"] == [c for c in cases if c.target == "api1"]
    report = SmokeReport(collapsed)
    assert report.failed
    table = "\n".join(table_lines(report))
    assert table.count("cannot reach") == 1 and "- unreachable" in table
    assert table.count("gone") == 1  # the host is named once, in its column
    assert [r["case"] for r in rows(report) if r["from"] == "gone"] == [None]


def test_an_unreachable_consumer_is_one_row_for_all_its_targets():
    cases = plan_cases([API, GONE], [BOB])
    outputs = {"bob": HostResult("bob", error="bob: cannot reach deploy@127.0.0.1:2202: timed out")}
    collapsed = collapse_unreachable(cases, outputs)
    from_bob = [c for c in collapsed if c.source == "bob"]
    assert len(from_bob) == 1 and from_bob[0].expected == "an SSH session (10 cases)"
    assert len(collapsed) == len(cases) - 9  # 5 rows to each API host, said once
    settle_cases(collapsed, outputs, b"", None, NOW)  # the others still get their results
    assert all(c.result == "fail" for c in collapsed)  # (api1 and gone sent nothing here)
