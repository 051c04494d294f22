"""inv doctor, the pure parts: OpenSSL's verify results (as nginx logs them) to a cause and a
fix, the access log's lines, and the checks of a certificate file."""

import datetime as dt

import pytest
from cryptography import x509

from mtls_deploy.doctor import causes, certfile, logs
from mtls_deploy.doctor.run import pki_view
from mtls_deploy.errors import BadInput
from mtls_deploy.pki.store import PkiStore

REISSUE = "inv issue-client --name bob --reissue"
CRL_PUSH = "inv pki.crl --push"


@pytest.mark.parametrize(
    ("verify", "code", "fix"),
    [
        ("FAILED:unable to get issuer certificate", 2, REISSUE),
        ("FAILED:unable to get certificate CRL", 3, CRL_PUSH),
        ("FAILED:certificate is not yet valid", 9, "timedatectl set-ntp true"),
        ("FAILED:certificate has expired", 10, "inv renew-client --name bob"),
        ("FAILED:CRL is not yet valid", 11, CRL_PUSH),
        ("FAILED:CRL has expired", 12, CRL_PUSH),
        ("FAILED:self-signed certificate", 18, REISSUE),
        ("FAILED:self signed certificate", 18, REISSUE),
        ("FAILED:self-signed certificate in certificate chain", 19, REISSUE),
        ("FAILED:unable to get local issuer certificate", 20, REISSUE),
        ("FAILED:unable to verify the first certificate", 21, REISSUE),
        ("FAILED:certificate revoked", 23, REISSUE),
        ("FAILED:unsupported certificate purpose", 26, REISSUE),
        ("NONE", causes.NONE_CODE, "inv issue-client --name bob"),
        ("no required SSL certificate was sent", causes.NONE_CODE, "inv issue-client --name bob"),
    ],
)
def test_every_verify_result_has_its_cause_and_fix(verify, code, fix):
    cause = causes.cause_for(verify)
    assert cause.code == code
    assert fix in cause.fix_for("bob", "api1")
    assert causes.cause_for_code(code) is cause or code == 18


def test_success_is_no_cause_and_an_unknown_text_is_still_explained():
    assert causes.cause_for("SUCCESS") is None
    assert causes.cause_for("FAILED:something new").code == 99


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (
            "2026/11/30 06:00:00 [info] 12#12: *5 client SSL certificate verify error: "
            "(23:certificate revoked) while reading client request headers, client: 127.0.0.1",
            23,
        ),
        (
            "2026/11/30 06:00:00 [info] 12#12: *6 client SSL certificate verify error: "
            "(12:CRL has expired) while reading client request headers",
            12,
        ),
        (
            "2026/11/30 06:00:00 [info] 12#12: *7 client sent no required SSL certificate while "
            "reading client request headers",
            causes.NONE_CODE,
        ),
    ],
)
def test_the_error_logs_info_lines(line, code):
    assert causes.error_log_cause(line).code == code


LINE = ('127.0.0.1 [2026-11-30T06:00:00+00:00] "GET /whoami HTTP/1.1" 400 180 rt=0.000 '
        'tls=TLSv1.3/TLS_AES_256_GCM_SHA384 verify="FAILED:certificate revoked" '
        'client="CN=bob,O=Example\\, Inc." serial=0A1B2C ua="curl/7.88.1"')  # fmt: skip


def test_an_access_log_line_is_parsed():
    request = logs.parse_access("api1", LINE)
    assert (request.status, request.verify, request.serial) == (
        400,
        "FAILED:certificate revoked",
        "0A1B2C",
    )
    assert logs.common_name(request.dn) == "bob"
    assert logs.parse_access("api1", "garbage") is None


def test_a_clients_requests_by_serial_or_cn():
    mine = logs.parse_access("api1", LINE)
    other = logs.parse_access("api1", LINE.replace("CN=bob", "CN=carol").replace("0A1B2C", "FF"))
    assert logs.of_client([mine, other], "bob", set()) == [mine]
    assert logs.of_client([mine, other], "dave", {"a1b2c"}) == [mine]


def test_the_log_script_and_its_output():
    script = logs.logs_script("/var/log/nginx/api.access.log", "/var/log/nginx/api.error.log")
    assert "tail -n 5000 /var/log/nginx/api.access.log" in script
    requests, errors = logs.split_output("api1", f"{LINE}\n@@error\nverify error: (23:x)\n")
    assert len(requests) == 1 and errors == ["verify error: (23:x)"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    store = PkiStore(tmp_path_factory.mktemp("pki"), passphrase=b"unit-test")
    store.init(name="Doctor API")
    store.issue_client("bob")
    store.server_cert("api1", ["api1.example.test"], [])
    return store


def findings(store, cert_file, key_file=None, now=None):
    cert = certfile.read_certificate(str(cert_file))
    key = certfile.read_key(str(key_file)) if key_file else None
    return certfile.check_file(cert, key, pki_view(store), now or dt.datetime.now(dt.UTC))


def test_a_good_client_certificate_passes_every_check(pki):
    folder = pki.path / "clients" / "bob"
    found = findings(pki, folder / "bob.crt", folder / "bob.key")
    assert all(f.ok for f in found), found
    assert found[0].text.startswith("signed by the PKI's client CA")


def test_expired_revoked_and_wrong_key(pki):
    smoke = pki.path / "smoke"
    expired = [f for f in findings(pki, smoke / "expired.crt") if not f.ok]
    assert expired[0].cause.code == 10
    revoked = [f for f in findings(pki, smoke / "revoked.crt") if not f.ok]
    assert [f.cause.code for f in revoked] == [23]
    wrong_key = [
        f
        for f in findings(pki, smoke / "revoked.crt", pki.path / "clients/bob/bob.key")
        if not f.ok
    ]
    assert "does NOT match" in wrong_key[-1].text


def test_a_server_certificate_is_the_wrong_purpose_and_ca(pki):
    found = findings(pki, pki.path / "servers/api1/api1.crt")
    assert [f.cause.code for f in found if not f.ok] == [26, 26]


def test_a_certificate_of_another_pki(pki, tmp_path):
    other = PkiStore(tmp_path / "other", passphrase=b"x")
    other.init(name="Other API")
    other.issue_client("bob")
    found = findings(pki, tmp_path / "other/clients/bob/bob.crt")
    assert found[0].cause.code == 20 and "another CA" in found[0].text


def test_a_date_in_the_future(pki):
    cert = x509.load_pem_x509_certificate((pki.path / "clients/bob/bob.crt").read_bytes())
    early = certfile.dates_finding(cert, cert.not_valid_before_utc - dt.timedelta(days=1))
    assert early.cause.code == 9


def test_unreadable_files_are_bad_input(tmp_path):
    with pytest.raises(BadInput, match="cannot read the certificate"):
        certfile.read_certificate(str(tmp_path / "missing.crt"))
    (tmp_path / "junk.crt").write_text("junk")
    with pytest.raises(BadInput, match="holds no certificate"):
        certfile.read_certificate(str(tmp_path / "junk.crt"))


def diagnosis(lines, errors=()):
    from mtls_deploy.doctor.run import host_diagnosis
    from mtls_deploy.runner import HostResult

    requests = [logs.parse_access("api1", line) for line in lines]
    said = []
    code = host_diagnosis(HostResult("api1", data={"requests": requests, "errors": list(errors)}),
                          "bob", {"0A1B2C"}, said.append)  # fmt: skip
    return code, "\n".join(said)


def test_the_clients_last_request_decides():
    accepted = LINE.replace('verify="FAILED:certificate revoked"', 'verify="SUCCESS"').replace(
        " 400 ", " 200 "
    )
    code, said = diagnosis([LINE, accepted])
    assert code == 0 and "bob's last request was accepted" in said
    code, said = diagnosis([accepted, LINE])
    assert code == 1 and f"fix:   {REISSUE}" in said


def test_without_the_clients_requests_the_error_log_then_bare_requests_speak():
    other = LINE.replace("CN=bob", "CN=carol").replace("0A1B2C", "FF")
    code, said = diagnosis(
        [other], ["... client SSL certificate verify error: (12:CRL has expired) ..."]
    )
    assert code == 1 and f"fix:   {CRL_PUSH}" in said
    bare = other.replace('verify="FAILED:certificate revoked"', 'verify="NONE"').replace(
        'client="CN=carol,O=Example\\, Inc."', 'client=""'
    )
    code, said = diagnosis([bare])
    assert (
        code == 1
        and "sent no client certificate" in said
        and "no client certificate was sent" in said
    )
    assert diagnosis([other])[0] == 0


def test_without_any_request_the_pki_says_revoked(monkeypatch, tmp_path):
    from mtls_deploy.doctor import run
    from mtls_deploy.runner import HostResult

    store = PkiStore(tmp_path / "pki", passphrase=b"unit-test")
    store.init(name="Doctor API")
    store.issue_client("bob")
    store.revoke_client("bob")
    empty = HostResult("api1", data={"requests": [], "errors": []})
    monkeypatch.setattr(run, "read_all_logs", lambda hosts: [empty])
    said = []
    assert run.diagnose_name("bob", [], store, said.append) == 1
    assert f"fix:   {REISSUE}" in "\n".join(said)
    with pytest.raises(BadInput, match="unknown client 'carol'"):
        run.diagnose_name("carol", [], store, said.append)


def test_the_smoke_tests_own_certificate_gets_no_fix_that_would_be_refused():
    from mtls_deploy.doctor.causes import cause_for_code

    expired = cause_for_code(10)
    assert expired.fix_for("bob") == "inv renew-client --name bob"
    assert "renew-client" not in expired.fix_for("smoke:expired")
    assert "meant to be refused" in expired.fix_for("smoke:expired")
