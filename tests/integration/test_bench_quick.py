"""`inv bench --quick` on the fleet lab hosts: every benchmark writes its result file with sane
figures. This keeps the benchmarks from rotting; it asserts no timing goal (the machine is
shared and noisy), only that each figure was measured and means what it says."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import needs_lab

pytestmark = [*needs_lab, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["provision-noop", "fleet", "provision-fresh", "mtls-handshakes", "api-throughput",
         "deploy-noop", "deploy-under-load", "pki-bulk"]  # fmt: skip
COMMITTED = ROOT / "bench" / "results" / "pki-bulk.json"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """One quick run of every benchmark, into a directory of the test's own."""
    out = tmp_path_factory.mktemp("bench-results")
    committed = COMMITTED.read_bytes() if COMMITTED.exists() else None
    run = subprocess.run(
        [sys.executable, "-m", "invoke", "bench", "--quick", "--results", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert (COMMITTED.read_bytes() if COMMITTED.exists() else None) == committed
    return {name: json.loads((out / f"{name}.json").read_text()) for name in NAMES}


def test_every_result_names_the_machine_and_versions(results):
    for name in NAMES[:-1]:
        doc = results[name]
        assert doc["benchmark"] == name and doc["quick"] is True
        assert doc["machine"]["nproc"] >= 1 and doc["machine"]["memory_mb"] > 0
        assert doc["versions"]["python"] and doc["versions"]["cryptography"]
        assert any(k.startswith("nginx") for k in doc["versions"]["hosts"])


def test_provision_noop_counts_one_connection_and_one_round_trip(results):
    f = results["provision-noop"]["figures"]
    assert 0 < f["wall_s"]["min"] <= f["wall_s"]["median"] <= f["wall_s"]["max"]
    assert f["ssh_channels"] == [1] and f["command_round_trips"] == 1
    assert f["channel_what"] == ["facts (system and resources)"]
    assert 5 <= f["network_turns"]["median"] <= 40
    assert 0 < f["in_process_s"]["median"] < f["wall_s"]["median"] + 1
    assert results["provision-noop"]["goals"][0]["target"] == 1.0


def test_fleet_ratios_are_against_one_host(results):
    f = results["fleet"]["figures"]
    assert f["parallel"]["1"]["ratio"] == 1.0
    assert set(f["parallel"]) == {"1", "2"} and f["serial"]["hosts"] == 2
    for row in [*f["parallel"].values(), f["serial"]]:
        assert row["wall_s"]["median"] > 0 and row["cpu_s"]["median"] > 0


def test_provision_fresh_splits_packages_from_the_rest(results):
    f = results["provision-fresh"]["figures"]
    assert f["total_s"]["median"] > f["packages_s"]["median"] > 0
    assert f["rest_s"]["median"] > 0 and f["reset_s"]["median"] > 0
    assert any("nginx" in p for p in f["packages"])
    assert f["changed_steps"] > 5


def test_handshakes_use_the_keys_they_claim_and_resume(results):
    f = results["mtls-handshakes"]["figures"]
    assert f["ecdsa-p256"]["keys"] == {"client": "EC secp256r1", "server_ca": "EC secp256r1"}
    assert f["rsa-tutorial"]["keys"] == {"client": "RSA 2048", "server_ca": "RSA 4096"}
    assert f["rsa-tutorial"]["session"]["server_key_bits"] == "2048"
    assert f["rsa-3072"]["keys"]["client"] == "RSA 3072"
    for config in f.values():
        assert config["session"]["verify"] == "0 (ok)"  # s_time's peer verified the server too
        assert config["new"]["per_s"] > 0 and config["new"]["resumed_share"] == 0
        assert config["reuse_tls12"]["resumed_share"] > 0.9
        assert config["new"]["nginx_cpu_ms_each"] > 0


def test_throughput_rows_are_clean_and_memory_fits_the_vps(results):
    doc = results["api-throughput"]
    assert len(doc["figures"]) == 8  # 3 targets x 1 and 8 connections, PHP's floor and
    # php-orders at 8 (quick)
    assert doc["figures"]["php bare script (floor) c=8"]["turns"] == doc["rounds"] == 1
    assert doc["figures"]["php-orders GET /orders c=8"]["host"] == "apps-php"
    for row in doc["figures"].values():
        assert row["complete"] > 0 and row["failed"] == 0 and row["non_2xx"] == 0
        assert row["keep_alive"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"]
    assert set(doc["memory"]) == {"fleet1", "fleet2", "apps-php"}
    for host in doc["memory"].values():
        assert 1 < host["rss_mb"] < 256 and 0 < host["pss_mb"] <= host["rss_mb"]
    assert set(doc["ceiling_ratios"]) == {
        "php /whoami",
        "python /whoami",
        "php bare script (floor)",
    }
    assert all(0 < share < 1 for share in doc["ceiling_ratios"].values())
    assert 0 < doc["php_whoami_over_floor"] < 2  # the floor answers "{}" through the same pool


def test_deploy_noop_changes_nothing_in_one_connection(results):
    f = results["deploy-noop"]["figures"]["apps-php"]
    assert 0 < f["wall_s"]["min"] <= f["wall_s"]["median"] <= f["wall_s"]["max"]
    assert f["ssh_channels"] and all(n >= 1 for n in f["ssh_channels"])
    assert results["deploy-noop"]["goals"][0]["target"] == 1.0


def test_deploy_under_load_fails_no_request(results):
    f = results["deploy-under-load"]["figures"]["apps-php"]
    for phase in ("before", "during"):
        for client in ("ab", "keep-alive"):
            row = f[phase][client]
            assert row["complete"] > 0 and (row["failed"], row["non_2xx"]) == (0, 0), row
    assert f["switches"] == 1 and f["switch_seconds"] > 0


def test_pki_bulk_is_run_and_moved_to_the_results(results):
    assert results["pki-bulk"]["figures"]
