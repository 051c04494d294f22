"""`inv smoke-test` on the lab, api1 with each backend and bob as the consumer: all pass with bob
valid, all pass again right after `inv revoke-client` with case 1 "revoked → rejected"; it fails
loudly when the host's CRL is about to expire or lags behind the PKI, and passes again after
`inv pki.crl --push`. Revocation reports a host it could not update and exits non-zero.

A PKI of this module's own (in a temporary directory); api1 is provisioned against it first and
left on the php backend.
"""

import json
import textwrap

import pytest

from .conftest import DEFAULT_LAB, ROOT, inv, needs_lab, own_pki, provision_cleanly, run_on

pytestmark = [*needs_lab, pytest.mark.slow]

ALL_CASES = {1, 2, 3, 4, 5, 6, 7, 8}


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
    assert row(report, 8)["result"] == "fail" and row(report, 8)["got"].startswith(
        "EXPIRES IN 2 DAYS"
    )
    done = inv("pki.crl", "--push")
    assert "changed  api1  file /etc/nginx/mtls/crl.pem" in done.stdout
    assert row(smoke(), 8)["got"].startswith("valid 179 more days, = PKI's")


def test_servers_that_disagree_with_the_index_fail(world):
    inv("issue-client", "--name", "bob")
    inv("revoke-client", "--name", "bob", "--no-push")  # the index says revoked, api1 does not know
    report = smoke(check=False)
    assert (row(report, 1)["result"], row(report, 1)["got"]) == ("fail", "200 CN=bob")
    assert row(report, 8)["result"] == "fail" and "but the PKI has" in row(report, 8)["got"]
    inv("pki.crl", "--push")
    assert row(smoke(), 1)["got"] == "400 certificate revoked"


def test_revocation_reports_a_host_it_could_not_update(world, tmp_path):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text(
        (DEFAULT_LAB / "group_vars" / "all.yml").read_text().replace(": .lab/", f": {ROOT}/.lab/")
    )
    (tmp_path / "hosts.yml").write_text(
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
    inv("issue-client", "--name", "dave", "--no-deliver")
    done = inv(
        "revoke-client", "--name", "dave", check=False, env={"MTLS_DEPLOY_INVENTORY": str(tmp_path)}
    )
    assert done.returncode == 2
    assert "changed  api1  handler reload nginx" in done.stdout
    assert (
        "failed   gone  cannot reach deploy@127.0.0.1:2299: connection refused" in done.stdout
    )
    assert "failed on: gone" in done.stderr
