"""`inv smoke-test` on the lab, api1 with each backend and bob as the consumer: case 3 (revoked)
passes on a fresh PKI where no client was ever revoked, and every certificate the run presents
that our client CA signed is in the index; all pass with bob valid, all pass again right after
`inv revoke-client` with case 1 "revoked → rejected"; it fails loudly when the host's CRL is
about to expire or lags behind the PKI, and passes again after `inv pki.crl --push`. An
unreachable host is one failed row. A PKI from before the smoke test had certificates of its own
gets them on the first run, which says to push the CRL. Revocation reports a host it could not
update and exits non-zero.

A PKI of this module's own (in a temporary directory); api1 is provisioned against it first and
left on the php backend.
"""

import json
import os
import re
import shutil
import sqlite3
import textwrap
from pathlib import Path

import pytest

from mtls_deploy.pki.store import PkiStore
from mtls_deploy.smoke import FOREIGN_WORDS

from .conftest import DEFAULT_LAB, ROOT, inv, needs_lab, own_pki, provision_cleanly, run_on

pytestmark = [*needs_lab, pytest.mark.slow]

ALL_CASES = {1, 2, 3, 4, 5, 6, 7, 8, 9}
CRL_CASE = 9
ACCESS_LOG = "/var/log/nginx/api.access.log"


@pytest.fixture(scope="module")
def world(lab_inventory, tmp_path_factory):
    """This module's PKI; api1 provisioned against it (php at the end); bob's bundle delivered."""
    with own_pki(tmp_path_factory, "Smoke API", "integration-smoke") as base:
        try:
            yield base
        finally:
            provision("php")


def provision(backend: str) -> None:
    provision_cleanly(DEFAULT_LAB, "api1", backend=backend)


def smoke(check=True) -> dict:
    done = inv("smoke-test", "--json", check=False)
    report = json.loads(done.stdout)
    assert (done.returncode == 0) == report["passed"]
    if check:
        assert report["passed"], [c for c in report["cases"] if c["result"] != "pass"]
    return report


def row(report: dict, case: int) -> dict:
    return next(c for c in report["cases"] if c["case"] == case)


def index_rows() -> list[tuple]:
    with sqlite3.connect(Path(os.environ["MTLS_DEPLOY_PKI_DIR"]) / "index.sqlite3") as conn:
        return conn.execute(
            "SELECT serial, name, kind, status, subject FROM certificates"
        ).fetchall()


def log_length() -> int:
    return int(run_on(DEFAULT_LAB, "api1", f"wc -l < {ACCESS_LOG}", sudo=True).strip())


def presented_since(lines_before: int) -> list[tuple[str, str, str]]:
    """(verify, client DN, serial) of every request with a client certificate since then."""
    new = run_on(DEFAULT_LAB, "api1", f"tail -n +{lines_before + 1} {ACCESS_LOG}", sudo=True)
    found = re.findall(r'verify="([^"]*)" client="([^"]*)" serial=(\S*)', new)
    return [(verify, dn, serial) for verify, dn, serial in found if serial not in ("", "-")]


def test_case_3_passes_on_a_fresh_pki_and_every_serial_of_our_ca_is_in_the_index(world):
    assert not [r for r in index_rows() if r[2] == "client"]  # no client was ever revoked
    provision("php")
    before, lines = index_rows(), log_length()
    report = smoke()
    assert (row(report, 3)["result"], row(report, 3)["got"]) == ("pass", "400 certificate revoked")
    assert (row(report, 5)["result"], row(report, 5)["got"]) == (
        "pass",
        "400 certificate has expired",
    )
    assert index_rows() == before  # the run signed nothing
    presented = presented_since(lines)
    foreign = [dn for verify, dn, _ in presented if any(w in verify for w in FOREIGN_WORDS)]
    ours = [(dn, serial) for verify, dn, serial in presented if dn not in foreign]
    assert {dn for dn, _ in ours} == {"CN=smoke:revoked", "CN=smoke:expired"}
    assert foreign == ["CN=smoke-foreign"]  # signed by a CA made for it: not ours
    indexed = {int(serial, 16): subject for serial, _, _, _, subject in before}
    for dn, serial in ours:
        assert indexed.get(int(serial, 16)) == dn, f"{dn} serial {serial} is not in the index"


@pytest.mark.parametrize("backend", ["python", "php"])
def test_smoke_test_passes_before_and_right_after_revocation(world, backend):
    provision(backend)
    inv("issue-client", "--name", "bob")  # new, or again after the last round's revocation
    report = smoke()
    assert {c["case"] for c in report["cases"]} == ALL_CASES
    assert row(report, 1) | {"via": None} == {
        "case": 1, "name": "bundle bob", "from": "bob", "to": "api1",
        "expected": "valid → 200 CN=bob", "got": "200 CN=bob", "result": "pass", "via": None,
    }  # fmt: skip
    assert row(report, 4)["got"].startswith("400 ")
    inv("revoke-client", "--name", "bob")
    report = smoke()
    assert (row(report, 1)["expected"], row(report, 1)["got"]) == (
        "revoked → rejected",
        "400 certificate revoked",
    )
    assert (row(report, 3)["result"], row(report, 3)["got"]) == ("pass", "400 certificate revoked")
    assert report["totals"] == {"passed": 9, "failed": 0, "skipped": 0}
    leftovers = run_on(
        DEFAULT_LAB,
        "api1",
        "ls -d /tmp/mtls-smoke.* /var/tmp/mtls-smoke.* 2>/dev/null; true",
        sudo=True,
    )
    assert leftovers.strip() == ""  # the throwaway certificates and keys went with their directory


def test_the_table_has_a_row_per_case_and_a_total(world):
    done = inv("smoke-test")
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["case", "from", "to", "expected", "got", "result"]
    assert any("revoked → rejected" in line and line.endswith("PASS") for line in lines)
    assert lines[-1].startswith("9 cases: 9 passed, 0 failed, 0 skipped in ") and lines[
        -1
    ].endswith("all passed")


def test_a_crl_about_to_expire_fails_loudly_until_pushed(world):
    inv("pki.crl", "--days", "3", "--push")
    report = smoke(check=False)
    assert row(report, CRL_CASE)["result"] == "fail" and row(report, CRL_CASE)["got"].startswith(
        "EXPIRES IN 2 DAYS"
    )
    done = inv("pki.crl", "--push")
    assert "changed  api1  file /etc/nginx/mtls/crl.pem" in done.stdout
    assert row(smoke(), CRL_CASE)["got"].startswith("valid 179 more days, = PKI's")


def test_servers_that_disagree_with_the_index_fail(world):
    inv("issue-client", "--name", "bob")
    inv("revoke-client", "--name", "bob", "--no-push")  # the index says revoked, api1 does not know
    report = smoke(check=False)
    assert (row(report, 1)["result"], row(report, 1)["got"]) == ("fail", "200 CN=bob")
    assert row(report, CRL_CASE)["result"] == "fail"
    assert "but the PKI has" in row(report, CRL_CASE)["got"]
    inv("pki.crl", "--push")
    assert row(smoke(), 1)["got"] == "400 certificate revoked"


def with_a_gone_host(folder: Path) -> dict:
    """An inventory of api1 and ``gone`` (nothing listens on its SSH port), as an environment."""
    (folder / "group_vars").mkdir()
    (folder / "group_vars" / "all.yml").write_text(
        (DEFAULT_LAB / "group_vars" / "all.yml").read_text().replace(": .lab/", f": {ROOT}/.lab/")
    )
    (folder / "hosts.yml").write_text(
        textwrap.dedent("""\
        all:
          children:
            api:
              hosts:
                api1: {ansible_host: 127.0.0.1, ansible_port: 2201, ansible_user: deploy,
                       ansible_become: true, server_name: api1.lab.test, https_port: 8441}
                gone: {ansible_host: 127.0.0.1, ansible_port: 2299, ansible_user: deploy,
                       ansible_become: true, server_name: gone.lab.test, https_port: 8499}
        """)
    )
    return {"MTLS_DEPLOY_INVENTORY": str(folder)}


def test_an_unreachable_host_is_one_row_and_the_others_go_on(world, tmp_path):
    provision("php")  # api1 on this module's PKI, whichever tests ran before
    done = inv("smoke-test", "--json", check=False, env=with_a_gone_host(tmp_path))
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    gone = [c for c in report["cases"] if "gone" in (c["from"], c["to"])]
    assert [(c["case"], c["name"], c["result"]) for c in gone] == [(None, "unreachable", "fail")]
    assert gone[0]["got"].startswith("cannot reach deploy@127.0.0.1:2299")
    assert done.stdout.count("cannot reach") == 1
    from_api1 = [c for c in report["cases"] if c["to"] == "api1"]
    assert {c["case"] for c in from_api1} == ALL_CASES - {1}
    assert all(c["result"] == "pass" for c in from_api1), from_api1


def test_revocation_reports_a_host_it_could_not_update(world, tmp_path):
    env = with_a_gone_host(tmp_path)
    inv("issue-client", "--name", "dave", "--no-deliver")
    done = inv("revoke-client", "--name", "dave", check=False, env=env)
    assert done.returncode == 2
    assert "changed  api1  handler reload nginx" in done.stdout
    assert "failed   gone  cannot reach deploy@127.0.0.1:2299: connection refused" in done.stdout
    assert "failed on: gone" in done.stderr


def make_it_old(pki_dir: Path) -> None:
    """The PKI as ``pki.init`` left it before the smoke test had certificates of its own."""
    with sqlite3.connect(pki_dir / "index.sqlite3") as conn:
        conn.execute("DELETE FROM certificates WHERE kind = 'smoke'")
    shutil.rmtree(pki_dir / "smoke")
    PkiStore.open(pki_dir).refresh_crl()


def test_a_pki_from_before_gets_its_smoke_certificates_and_says_to_push_the_crl(world):
    provision("php")
    make_it_old(world / "pki")
    inv("pki.crl", "--push")  # the hosts agree with the old PKI
    done = inv("smoke-test", check=False)
    assert done.returncode == 1
    assert (
        done.stdout.rstrip()
        .splitlines()[-1]
        .endswith(
            "does not list the revoked one yet: run `inv pki.crl --push`, then the smoke test again"
        )
    )
    assert sorted(r[1] for r in index_rows() if r[2] == "smoke") == [
        "smoke:expired",
        "smoke:revoked",
    ]
    inv("pki.crl", "--push")
    report = smoke()
    assert row(report, 3)["got"] == "400 certificate revoked" and report["notes"] == []
