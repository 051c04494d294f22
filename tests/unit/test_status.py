"""inv status, the pure parts: verdicts and exit codes, the rows the hosts' files make, the
table, the JSON document, and the parsing of the host scripts' output."""

import base64
import dataclasses
import datetime as dt
import io

import pytest
from cryptography import x509

from mtls_deploy.inventory import role_defaults
from mtls_deploy.pki.store import PkiStore
from mtls_deploy.runner import HostResult
from mtls_deploy.status import gather, judge, table, verdicts
from mtls_deploy.status.run import StatusReport, Thresholds, pki_snapshot

NOW = dt.datetime(2026, 11, 30, 6, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
WARN = 30 * DAY


def check(status, **kw):
    return verdicts.Check(kw.pop("kind", "crl"), kw.pop("name", "crl.pem"), status, "x", **kw)


@pytest.mark.parametrize(
    ("statuses", "code"),
    [([], 0), (["ok", "ok"], 0), (["ok", "warning"], 1), (["warning", "critical", "ok"], 2)],
)
def test_the_worst_check_is_the_exit_code(statuses, code):
    assert verdicts.exit_code([check(s) for s in statuses]) == code


@pytest.mark.parametrize(
    ("left", "status"),
    [
        (-DAY, "critical"),
        (dt.timedelta(0), "critical"),
        (WARN, "warning"),
        (WARN + DAY, "ok"),
    ],  # fmt: skip
)
def test_a_date_is_critical_once_past_and_a_warning_within_warn_before(left, status):
    assert verdicts.dated(NOW + left, NOW, WARN) == status


def test_time_left_in_words():
    assert verdicts.left_text(NOW + 12 * DAY, NOW) == "expires in 12 d"
    assert verdicts.left_text(NOW + dt.timedelta(hours=5), NOW) == "expires in 5 h"
    assert verdicts.left_text(NOW - 3 * DAY, NOW) == "expired 3 d ago"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    store = PkiStore(tmp_path_factory.mktemp("pki"), passphrase=b"unit-test")
    store.init(name="Unit API")
    store.server_cert("api1", ["api1.example.test"], [])
    store.issue_client("bob")
    return store


def api_reading(store, **overrides):
    """api1's script output as read from a host that holds exactly the PKI's files."""
    cert = (store.path / "servers/api1/api1.crt").read_bytes()
    files = {"server-cert": cert, "client-ca": store.client_ca_pem(), "crl": store.crl_pem()}
    data = {"files": {**files, **overrides}, "units": {"nginx.service": "active"},
            "roles": ["tls", "nginx"], "drift": {"changed": []}}  # fmt: skip
    return HostResult("api1", data=data)


def by_kind(rows):
    return {r.kind: r for r in rows}


def test_a_host_with_the_pkis_files_is_all_ok(pki):
    rows = judge.api_host_checks("api1", api_reading(pki), pki_snapshot(pki), NOW, WARN)
    assert {r.kind: r.status for r in rows} == dict.fromkeys(
        ["host", "server-cert", "client-ca", "crl", "services", "drift"], "ok"
    )
    assert by_kind(rows)["server-cert"].renew_at is not None


def test_another_crl_on_the_host_is_critical(pki):
    stale = pki.stale_crl_pem()
    rows = by_kind(judge.api_host_checks("api1", api_reading(pki, crl=stale), pki_snapshot(pki),
                                         NOW, WARN))  # fmt: skip
    assert rows["crl"].status == "critical" and "not the PKI's" in rows["crl"].detail


def test_a_missing_client_ca_a_stopped_unit_and_drift(pki):
    reading = api_reading(pki, **{"client-ca": None})
    reading.data["units"] = {"nginx.service": "active", "php8.2-fpm.service": "failed"}
    reading.data["drift"] = {"changed": ["file /etc/nginx/conf.d/api.conf"]}
    rows = by_kind(judge.api_host_checks("api1", reading, pki_snapshot(pki), NOW, WARN))
    assert rows["client-ca"].status == "critical"
    assert (
        rows["services"].status == "critical"
        and "php8.2-fpm.service failed" in rows["services"].detail
    )
    assert rows["drift"].status == "warning" and "1 changed" in rows["drift"].detail


def test_an_unreachable_host_is_one_critical_row(pki):
    rows = judge.api_host_checks("api1", HostResult("api1", error="connection refused"),
                                 pki_snapshot(pki), NOW, WARN)  # fmt: skip
    assert [(r.kind, r.status) for r in rows] == [("host", "critical")]


def test_a_client_delivered_elsewhere_than_the_pki_says_is_critical(pki):
    snapshot = pki_snapshot(pki)
    current = pki.client_material("bob").cert_pem
    good = HostResult("bob", data={"clients": {"bob": current}})
    row = judge.client_check(
        "bob", snapshot["clients"]["bob"], ["bob"], {"bob": good}, NOW, WARN, WARN
    )
    assert row.status == "ok" and row.facts["delivered"] == {"bob": "current"}
    foreign = HostResult(
        "bob", data={"clients": {"bob": (pki.path / "smoke/expired.crt").read_bytes()}}
    )
    row = judge.client_check(
        "bob", snapshot["clients"]["bob"], ["bob"], {"bob": foreign}, NOW, WARN, WARN
    )
    assert row.status == "critical" and "not the PKI's" in row.detail
    missing = HostResult("bob", data={"clients": {"bob": None}})
    row = judge.client_check(
        "bob", snapshot["clients"]["bob"], ["bob"], {"bob": missing}, NOW, WARN, WARN
    )
    assert row.status == "critical" and "missing" in row.detail


def test_the_cas_are_rows_with_their_dates(pki):
    rows = judge.ca_checks(pki_snapshot(pki), NOW, WARN)
    assert [r.name for r in rows] == ["Unit API client CA", "Unit API server CA"]
    assert all(r.status == "ok" and r.not_after > NOW for r in rows)


def sample_report():
    checks = [
        verdicts.Check("host", "ssh", "ok", "reachable", "api1"),
        verdicts.Check(
            "crl",
            "crl.pem",
            "warning",
            "expires in 9 d",
            "api1",
            NOW - DAY,
            NOW + 9 * DAY,
            NOW + 2 * DAY,
        ),
        verdicts.Check("client", "bob", "ok", "expires in 300 d", None, NOW - DAY, NOW + 300 * DAY),
    ]
    return StatusReport(checks, NOW, Thresholds(WARN, WARN))


def test_table_rows_and_the_plain_table():
    report = sample_report()
    assert table.rows(report) == [("api1", "host", "ok", "reachable"),
                                  ("api1", "crl crl.pem", "warning", "expires in 9 d"),
                                  ("pki", "client bob", "ok", "expires in 300 d")]  # fmt: skip
    text = table.plain(report)
    assert text.splitlines()[0] == "STATUS WARNING: 1 warning, 0 critical (3 checks)"
    assert text.splitlines()[1].split() == ["host", "check", "status", "detail"]


def test_rich_draws_the_table_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    table.print_table(sample_report(), out)
    assert "┃" in out.getvalue() or "│" in out.getvalue()
    assert "STATUS WARNING" in out.getvalue()


def test_the_json_document():
    document = sample_report().as_json()
    assert (document["format"], document["status"], document["exit_code"]) == (1, "warning", 1)
    assert document["warn_before_seconds"] == 30 * 86400
    crl = document["checks"][1]
    assert crl["days_left"] == 9 and crl["not_after"] == (NOW + 9 * DAY).isoformat()
    assert set(crl) == {"kind", "name", "status", "detail", "host", "not_before", "not_after",
                        "renew_at", "facts", "days_left"}  # fmt: skip


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_the_api_script_reads_each_file_and_the_units():
    script = gather.api_script({"crl": "/etc/nginx/mtls/crl.pem"})
    assert "mtls_file crl /etc/nginx/mtls/crl.pem" in script
    assert "mtls_file manifest /var/lib/mtls-deploy/manifest.json" in script
    output = (
        f"@@crl {b64(b'CRL')}\n@@manifest -\n@@units\nnginx.service loaded active running nginx\n"
    )
    files, units = gather.parse_output(output)
    assert files == {"crl": b"CRL", "manifest": None}
    assert gather.unit_states(units) == {"nginx.service": "active"}


def test_units_come_from_the_manifest_entries_of_the_hosts_roles():
    manifest = {"nginx": {"units": ["nginx"]}, "backend_python": {"units": ["api.socket", "api.service"]},
                "gone": {"units": ["old"]}}  # fmt: skip
    states = {"nginx.service": "active", "api.socket": "active"}
    assert gather.wanted_units(manifest, ["tls", "backend_python", "nginx"], states) == {
        "api.socket": "active",
        "api.service": "absent",
        "nginx.service": "active",
    }
    assert gather.unit_name("php8.2-fpm") == "php8.2-fpm.service"


def test_the_consumer_script_quotes_the_folder_and_names():
    script = gather.consumer_script(".mtls/my api", ["bob"])
    assert "mtls_file client:bob '.mtls/my api/bob.crt' '.mtls/my api/current/bob.crt'" in script


def test_the_file_function_reads_the_first_readable_path(tmp_path):
    import subprocess

    (tmp_path / "b").write_bytes(b"second")
    script = (
        gather.FILE_FUNCTION
        + f"\nmtls_file x {tmp_path}/a {tmp_path}/b\nmtls_file y {tmp_path}/a\n"
    )
    output = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    assert gather.parse_output(output)[0] == {"x": b"second", "y": None}


def test_crl_facts_of_garbage_is_none(pki):
    assert gather.crl_facts(b"not a crl") is None and gather.crl_facts(None) is None
    facts = gather.crl_facts(pki.crl_pem())
    assert facts["number"] >= 1 and isinstance(facts["next_update"], dt.datetime)
    assert x509.load_der_x509_crl(facts["der"])


# --- the command line: bad input is one line; exit 3 for status, 2 for doctor ------------------


@pytest.fixture
def command_line(capsys, tmp_path, monkeypatch):
    """``run(*argv)`` -> (exit code, stdout, stderr) through Invoke's Program, with an empty
    PKI directory (no PKI) unless a test sets another."""
    from invoke import Collection, Program
    from invoke.loader import FilesystemLoader

    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    monkeypatch.setenv("MTLS_DEPLOY_PKI_DIR", str(tmp_path / "no-pki"))
    module, _ = FilesystemLoader(start=str(root)).load("tasks")
    program = Program(namespace=Collection.from_module(module), binary="inv")

    def run(*argv):
        try:
            program.run(["inv", *argv])
            code = 0
        except SystemExit as stop:
            code = stop.code or 0
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["status"], "no PKI in"),
        (["status", "--host", "nosuchhost"], "unknown host 'nosuchhost'"),
        (["status", "--warn-before", "30"], "--warn-before '30' is not a duration"),
    ],
)
def test_status_bad_input_is_one_line_and_exit_3(command_line, argv, words):
    code, _, err = command_line(*argv)
    assert code == 3 and words in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["doctor"], 2, "give --name CLIENT or --cert FILE"),
        (["doctor", "--name", "bob", "--cert", "x.crt"], 2, "give --name CLIENT or --cert FILE"),
        (["doctor", "--cert", "/nonexistent/bob.crt"], 2, "cannot read the certificate"),
        (["doctor", "--name", "bob"], 1, "no PKI in"),
    ],
)
def test_doctor_bad_input_is_one_line(command_line, argv, code, words):
    got, _, err = command_line(*argv)
    assert got == code and words in err and err.count("\n") == 1, err


class CountingRemote:
    """A stand-in for ``Remote``: answers every script with ``output``, records who was sent one."""

    sent: list = []

    def __init__(self, target, output=""):
        self.target, self.output = target, output

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def run_script(self, script, sudo=False, timeout=None, check=False):
        from mtls_deploy.connection import CommandResult

        CountingRemote.sent.append((self.target.host, sudo))
        return CommandResult(self.output, "", 0)


@dataclasses.dataclass(frozen=True)
class FakeHost:
    name: str
    vars: dict


# what an inventory host carries below its own variables: every role's defaults.yml
DEFAULTS = {k: v for layer in role_defaults() for k, v in layer.values.items()}
MANIFEST = b'{"format": 1, "roles": {"nginx": {"units": ["nginx"]}}}'


def test_one_script_per_host(monkeypatch, pki):
    cert = (pki.path / "servers/api1/api1.crt").read_bytes()
    output = (f"@@server-cert {b64(cert)}\n@@manifest {b64(MANIFEST)}\n@@units\n"
              "nginx.service loaded active running x\n")  # fmt: skip
    CountingRemote.sent = []
    monkeypatch.setattr(gather, "Remote", lambda target: CountingRemote(target, output))
    monkeypatch.setattr(gather, "drift", lambda host: {"changed": []})  # its own round trip
    api = FakeHost("api1", {**DEFAULTS, "tls_dir": "/etc/nginx/mtls", "roles": ["nginx"],
                            "backend": "php", "server_name": "api1.example.test"})  # fmt: skip
    bob = FakeHost("bob", {})
    readings = gather.read_hosts([api], [bob])
    assert sorted(CountingRemote.sent) == [("api1", True), ("bob", False)]
    assert readings["api1"].data["files"]["server-cert"] == cert
    assert readings["api1"].data["units"] == {"nginx.service": "active"}
    assert readings["bob"].data["clients"] == {"bob": None}
