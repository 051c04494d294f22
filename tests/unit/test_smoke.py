"""The smoke test's pure parts: the case table, judging curl results and CRLs, a host that cannot
be reached, the test certificates; and its script, run here with sh and a stand-in curl that
records its arguments."""

import base64
import datetime as dt
import io
import json
import os
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mtls_deploy import pki, smoke
from mtls_deploy.runner import HostResult
from mtls_deploy.smoke import ApiTarget, Case, Client, ConsumerHost, CurlResult, Expect

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
API = ApiTarget(
    "api1", "api1.lab.test", 8441, "127.0.0.1", "127.0.0.1", "on", "/etc/nginx/mtls/crl.pem"
)
BOB = ConsumerHost("bob", ".mtls/api", (Client("bob", "valid", "0A1B"),))


def by_row(cases):
    return [(c.number, c.source, c.target, c.expected) for c in cases]


# --- the case table -----------------------------------------------------------------------------


def test_every_case_once_with_client_verify_on():
    cases = smoke.plan_cases([API], [BOB])
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
    cases = smoke.plan_cases([smoke_replace(API, client_verify="optional")], [BOB])
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
    first = [c for c in smoke.plan_cases([API], [consumer]) if c.number == 1]
    assert [c.expected for c in first] == ["revoked → rejected", "expired → rejected", "not issued"]
    assert first[0].expect == Expect("rejected", 400, words=("revoked",))
    assert first[2].result == "skip" and first[2].request is None


def test_without_consumers_the_api_host_curls_itself():
    cases = smoke.plan_cases([API], [])
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
        cases = smoke.plan_cases([smoke_replace(API, client_verify=verify)], consumers)
        revoked = [c for c in cases if c.number == 3]
        assert len(revoked) == 1 and revoked[0].result == "" and revoked[0].request is not None
        assert revoked[0].request.cert == '"$d/revoked.crt"'


def test_each_number_names_one_case_and_each_case_one_number():
    consumer = ConsumerHost("box", ".mtls/api", (Client("bob", "valid"), Client("eve", "revoked")))
    for verify in ("on", "optional"):
        cases = smoke.plan_cases([smoke_replace(API, client_verify=verify)], [consumer])
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


# --- judging curl results -----------------------------------------------------------------------

WHOAMI = json.dumps({"verified": "SUCCESS", "subject": {"CN": "bob"}, "serial": "0a1b"})
REVOKED = json.dumps({"error": "client certificate rejected", "reason": "certificate revoked"})
NO_CERT = json.dumps(
    {"error": "client certificate required", "reason": "no client certificate was sent"}
)
TLS_ALERT = "curl: (35) OpenSSL/3.0.20: error:0A00042E:SSL routines::tlsv1 alert protocol version"


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
    assert smoke.judge(expect, result) == (passed, got)


def test_serials_compare_as_numbers():
    assert smoke.same_serial("0A1B", "a1b") and not smoke.same_serial("0A1B", "0A1C")
    assert not smoke.same_serial("", "0A")


def test_a_missing_bundle_fails_only_while_the_index_says_valid():
    valid = smoke.plan_cases([API], [BOB])[0]
    assert smoke.judge_missing(valid).result == "fail"
    assert "inv issue-client --name bob" in valid.got
    revoked = Case(
        1,
        "bundle bob",
        "bob",
        "api1",
        "revoked → rejected",
        Expect("rejected", 400, words=("revoked",)),
    )
    assert smoke.judge_missing(revoked).result == "skip"


# --- parsing the script's output --------------------------------------------------------------


def encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_parse_results():
    output = "\n".join(
        [
            "@@result 1-bob@bob>api1 0 200 resolve",
            f"@@body {encoded(WHOAMI)}",
            "@@err ",
            "@@missing 1-eve@bob>api1",
            "@@result 7-old-tls@bob>api1 35 000 dns",
            "@@body ",
            f"@@err {encoded(TLS_ALERT)}",
        ]
    )
    results, has_curl = smoke.parse_results(output)
    assert has_curl
    assert results["1-bob@bob>api1"] == CurlResult("1-bob@bob>api1", 0, 200, WHOAMI, "", "resolve")
    assert results["1-eve@bob>api1"].missing
    assert results["7-old-tls@bob>api1"] == CurlResult(
        "7-old-tls@bob>api1", 35, 0, "", TLS_ALERT, "dns"
    )
    assert smoke.parse_results("@@nocurl\n") == ({}, False)


# --- the script, run with sh and a stand-in curl ---------------------------------------------

FAKE_CURL = """#!/bin/sh
# Records its arguments; answers 200 with them as the body, as if the server echoed them.
out=
while [ $# -gt 0 ]; do
  case "$1" in -o) out=$2; shift;; esac
  printf '%s\\n' "$1" >> "$CURL_LOG"
  shift
done
printf '{"ok":true}' > "$out"
printf 200
"""


def run_script(tmp_path: Path, script: str) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "curl").write_text(FAKE_CURL)
    (bin_dir / "curl").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CURL_LOG": str(tmp_path / "log"),
           "TMPDIR": str(tmp_path), "HOME": str(tmp_path)}  # fmt: skip
    return subprocess.run(
        ["sh", "-s"], input=script, cwd=tmp_path, env=env, capture_output=True, text=True
    )


def test_the_script_runs_every_request_verifying_the_server_and_cleans_up(tmp_path):
    cases = smoke.plan_cases([API], [BOB])
    requests = [c.request for c in cases if c.request and c.request.source == "bob"]
    (tmp_path / ".mtls/api").mkdir(parents=True)
    for ext in ("crt", "key"):
        (tmp_path / f".mtls/api/bob.{ext}").write_text("x")
    done = run_script(tmp_path, smoke.script_for(requests, {"server-ca.crt": b"CA PEM"}))
    assert done.returncode == 0, done.stderr
    results, _ = smoke.parse_results(done.stdout)
    assert sorted(results) == sorted(r.id for r in requests)
    assert all(r.status == 200 and r.via == "resolve" for r in results.values())
    log = (tmp_path / "log").read_text().splitlines()
    assert "-k" not in log and "--insecure" not in log
    assert log.count("--cacert") == len(requests)
    assert log.count("--resolve") == len(requests) and "api1.lab.test:8441:127.0.0.1" in log
    assert "DN: CN=admin" in log and "--tls-max" in log
    assert not list(tmp_path.glob("mtls-smoke.*"))  # the temporary directory is gone


def test_a_missing_bundle_is_reported_not_curled(tmp_path):
    request = smoke.plan_cases([API], [BOB])[0].request
    done = run_script(tmp_path, smoke.script_for([request], {"server-ca.crt": b"CA"}))
    assert smoke.parse_results(done.stdout)[0][request.id].missing
    assert not (tmp_path / "log").exists()


def test_throwaway_files_are_written_private_and_removed(tmp_path):
    request = next(c.request for c in smoke.plan_cases([API], []) if c.number == 4)
    files = {"server-ca.crt": b"CA", "foreign.crt": b"CERT", "foreign.key": b"KEY"}
    peek = '\nls -l "$d" >&2\n'
    script = smoke.script_for([request], files).replace(
        "\nmtls_curl() {", peek + "mtls_curl() {", 1
    )
    done = run_script(tmp_path, script)
    assert "-rw------- " in done.stderr and "foreign.key" in done.stderr
    assert not list(tmp_path.glob("mtls-smoke.*"))


# --- CRL and throwaway certificates -------------------------------------------------------------


@pytest.fixture(scope="module")
def client_ca():
    key = pki.generate_key("ec")
    return pki.make_ca(key, "Test client CA", NOW - dt.timedelta(days=30)), key


def crl_pem(ca, days=180, now=NOW, revoked=()) -> bytes:
    crl = pki.sign_crl(*ca, revoked, 1, now, days)
    return crl.public_bytes(serialization.Encoding.PEM)


def test_judge_crl(client_ca):
    good = crl_pem(client_ca)
    cert = client_ca[0]
    assert smoke.judge_crl(good, good, cert, NOW) == (True, "valid 180 more days, = PKI's (CRL #1)")
    newer = pki.sign_crl(*client_ca, [], 2, NOW, 180).public_bytes(serialization.Encoding.PEM)
    assert smoke.judge_crl(good, newer, cert, NOW) == (
        False,
        "CRL #1 but the PKI has #2: run `inv pki.crl --push`",
    )
    passed, got = smoke.judge_crl(good, good, cert, NOW + dt.timedelta(days=175))
    assert not passed and got.startswith("EXPIRES IN 5 DAYS")
    passed, got = smoke.judge_crl(good, good, cert, NOW + dt.timedelta(days=181))
    assert not passed and got.startswith("EXPIRED")
    foreign = (pki.make_ca(pki.generate_key("ec"), "other", NOW), None)
    assert "not signed by this PKI's client CA" in smoke.judge_crl(good, good, foreign[0], NOW)[1]
    assert smoke.judge_crl(None, good, cert, NOW)[0] is False
    assert smoke.judge_crl(b"garbage", good, cert, NOW)[0] is False


def test_the_foreign_certificate_is_not_ours(client_ca):
    ca_cert, _ = client_ca
    files = smoke.foreign_certificate(NOW)
    cert = x509.load_pem_x509_certificate(files["foreign.crt"])
    with pytest.raises(ValueError):
        cert.verify_directly_issued_by(ca_cert)
    assert serialization.load_pem_private_key(files["foreign.key"], None).public_key() == (
        cert.public_key()
    )


# --- output ------------------------------------------------------------------------------------


def test_table_and_json_say_the_same():
    cases = smoke.plan_cases([API], [BOB])
    for case in cases:
        case.settle(case.number != 5, "x" * 100 if case.number == 4 else "ok")
    report = smoke.SmokeReport(cases, 1.23)
    lines = smoke.table_lines(report)
    assert lines[0].split() == ["case", "from", "to", "expected", "got", "result"]
    assert any("…" in line for line in lines) and max(len(line) for line in lines) < 200
    assert lines[-1] == "9 cases: 8 passed, 1 failed, 0 skipped in 1.2 s: FAILED"
    rows = smoke.rows(report)
    assert rows[0] == {"case": 1, "name": "bundle bob", "from": "bob", "to": "api1",
                       "expected": "valid → 200 CN=bob", "got": "ok", "result": "pass"}  # fmt: skip
    assert len(rows[3]["got"]) == 100  # cut in the table only
    assert report.failed


def test_the_table_numbers_the_tls_cases_apart():
    cases = smoke.plan_cases([API], [BOB])
    lines = smoke.table_lines(smoke.SmokeReport(cases))
    assert [line.split("  ")[0] for line in lines[2:-2]] == [
        "1 bundle bob", "2 no certificate", "3 revoked certificate", "4 foreign certificate",
        "5 expired certificate", "6 identity headers", "7 TLS 1.0/1.1", "8 server certificate",
        "9 CRL on host",
    ]  # fmt: skip


# --- a host that cannot be reached ------------------------------------------------------------

GONE = ApiTarget("gone", "gone.lab.test", 8499, "127.0.0.1", "127.0.0.1", "on", "/etc/crl.pem")
REFUSED = "gone: cannot reach deploy@127.0.0.1:2299: connection refused"


def test_an_unreachable_api_host_is_one_failed_row_and_the_others_go_on():
    cases = smoke.plan_cases([API, GONE], [])
    outputs = {
        "api1": HostResult("api1", data={"results": {}}),
        "gone": HostResult("gone", error=REFUSED),
    }
    collapsed = smoke.collapse_unreachable(cases, outputs)
    gone = [c for c in collapsed if "gone" in (c.source, c.target)]
    assert [(c.number, c.name, c.source, c.expected, c.got, c.result) for c in gone] == [
        (None, "unreachable", "gone", "an SSH session (8 cases)", REFUSED[6:], "fail")
    ]
    assert [c for c in collapsed if c.target == "api1"] == [c for c in cases if c.target == "api1"]
    report = smoke.SmokeReport(collapsed)
    assert report.failed
    table = "\n".join(smoke.table_lines(report))
    assert table.count("cannot reach") == 1 and "- unreachable" in table
    assert table.count("gone") == 1  # the host is named once, in its column
    assert [r["case"] for r in smoke.rows(report) if r["from"] == "gone"] == [None]


def test_an_unreachable_consumer_is_one_row_for_all_its_targets():
    cases = smoke.plan_cases([API, GONE], [BOB])
    outputs = {"bob": HostResult("bob", error="bob: cannot reach deploy@127.0.0.1:2202: timed out")}
    collapsed = smoke.collapse_unreachable(cases, outputs)
    from_bob = [c for c in collapsed if c.source == "bob"]
    assert len(from_bob) == 1 and from_bob[0].expected == "an SSH session (10 cases)"
    assert len(collapsed) == len(cases) - 9  # 5 rows to each API host, said once
    smoke.settle_cases(collapsed, outputs, b"", None, NOW)  # the others still get their results
    assert all(c.result == "fail" for c in collapsed)  # (api1 and gone sent nothing here)


# --- the certificates cases 3-5 present ---------------------------------------------------------


def test_cases_3_and_5_present_the_pki_s_own_certificates_and_sign_nothing(pki_store, monkeypatch):
    monkeypatch.delenv("MTLS_DEPLOY_CA_PASSPHRASE")  # no CA key is opened
    files, created = smoke.certificate_files(pki_store, dt.datetime.now(dt.UTC))
    assert not created and sorted(files) == [
        "expired.crt", "expired.key", "foreign.crt", "foreign.key", "revoked.crt", "revoked.key",
    ]  # fmt: skip
    indexed = {r.serial_hex: r for r in pki_store.list()}
    for label in ("revoked", "expired"):
        cert = x509.load_pem_x509_certificate(files[f"{label}.crt"])
        record = indexed[pki.serial_hex(cert.serial_number)]
        assert (record.name, record.kind, record.status) == (f"smoke:{label}", "smoke", label)
        key = serialization.load_pem_private_key(files[f"{label}.key"], None)
        assert key.public_key() == cert.public_key()
    revoked = x509.load_pem_x509_certificate(files["revoked.crt"]).serial_number
    assert pki_store.crl().get_revoked_certificate_by_serial_number(revoked) is not None


def test_the_note_to_push_the_crl_follows_the_table_and_is_in_the_json():
    report = smoke.SmokeReport(smoke.plan_cases([API], []), notes=[smoke.CRL_PUSH_NOTE])
    table, document = io.StringIO(), io.StringIO()
    smoke.print_report(report, stream=table)
    smoke.print_report(report, as_json=True, stream=document)
    assert table.getvalue().splitlines()[-1] == smoke.CRL_PUSH_NOTE
    assert "run `inv pki.crl --push`" in smoke.CRL_PUSH_NOTE
    assert json.loads(document.getvalue())["notes"] == [smoke.CRL_PUSH_NOTE]
