"""The smoke test's report (mtls_deploy/smoke/report.py): the table and the JSON say the same."""

import io
import json

from mtls_deploy.smoke.cases import plan_cases
from mtls_deploy.smoke.report import SmokeReport, print_report, rows, table_lines
from mtls_deploy.smoke.run import CRL_PUSH_NOTE
from tests.unit.smoke_world import API, BOB

# --- output ------------------------------------------------------------------------------------


def test_table_and_json_say_the_same():
    cases = plan_cases([API], [BOB])
    for case in cases:
        case.settle(case.number != 5, "x" * 100 if case.number == 4 else "ok")
    report = SmokeReport(cases, 1.23)
    lines = table_lines(report)
    assert lines[0].split() == ["case", "from", "to", "expected", "got", "result"]
    assert any("…" in line for line in lines) and max(len(line) for line in lines) < 200
    assert lines[-1] == "9 cases: 8 passed, 1 failed, 0 skipped in 1.2 s: FAILED"
    table_rows = rows(report)
    assert table_rows[0] == {"case": 1, "name": "bundle bob", "from": "bob", "to": "api1",
                       "expected": "valid → 200 CN=bob", "got": "ok", "result": "pass"}  # fmt: skip
    assert len(table_rows[3]["got"]) == 100  # cut in the table only
    assert report.failed


def test_the_table_numbers_the_tls_cases_apart():
    cases = plan_cases([API], [BOB])
    lines = table_lines(SmokeReport(cases))
    assert [line.split("  ")[0] for line in lines[2:-2]] == [
        "1 bundle bob", "2 no certificate", "3 revoked certificate", "4 foreign certificate",
        "5 expired certificate", "6 identity headers", "7 TLS 1.0/1.1", "8 server certificate",
        "9 CRL on host",
    ]  # fmt: skip


def test_the_note_to_push_the_crl_follows_the_table_and_is_in_the_json():
    report = SmokeReport(plan_cases([API], []), notes=[CRL_PUSH_NOTE])
    table, document = io.StringIO(), io.StringIO()
    print_report(report, stream=table)
    print_report(report, as_json=True, stream=document)
    assert table.getvalue().splitlines()[-1] == CRL_PUSH_NOTE
    assert "run `inv pki.crl --push`" in CRL_PUSH_NOTE
    assert json.loads(document.getvalue())["notes"] == [CRL_PUSH_NOTE]
