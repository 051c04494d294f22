"""The smoke test's script (mtls_deploy/smoke/remote.py): parsing its output, and the script run
here with sh and a stand-in curl that records its arguments."""

import base64
import os
import subprocess
from pathlib import Path

from mtls_deploy.smoke import ApiTarget, CurlResult
from mtls_deploy.smoke.cases import plan_cases
from mtls_deploy.smoke.remote import parse_results, script_for
from tests.unit.smoke_world import API, BOB, TLS_ALERT, WHOAMI

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
    results, has_curl = parse_results(output)
    assert has_curl
    assert results["1-bob@bob>api1"] == CurlResult("1-bob@bob>api1", 0, 200, WHOAMI, "", "resolve")
    assert results["1-eve@bob>api1"].missing
    assert results["7-old-tls@bob>api1"] == CurlResult(
        "7-old-tls@bob>api1", 35, 0, "", TLS_ALERT, "dns"
    )
    assert parse_results("@@nocurl\n") == ({}, False)


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
    cases = plan_cases([API], [BOB])
    requests = [c.request for c in cases if c.request and c.request.source == "bob"]
    (tmp_path / ".mtls/api").mkdir(parents=True)
    for ext in ("crt", "key"):
        (tmp_path / f".mtls/api/bob.{ext}").write_text("x")
    done = run_script(tmp_path, script_for(requests, {"server-ca.crt": b"CA PEM"}))
    assert done.returncode == 0, done.stderr
    results, _ = parse_results(done.stdout)
    assert sorted(results) == sorted(r.id for r in requests)
    assert all(r.status == 200 and r.via == "resolve" for r in results.values())
    log = (tmp_path / "log").read_text().splitlines()
    assert "-k" not in log and "--insecure" not in log
    assert log.count("--cacert") == len(requests)
    assert log.count("--resolve") == len(requests) and "api1.lab.test:8441:127.0.0.1" in log
    assert "DN: CN=admin" in log and "--tls-max" in log
    assert not list(tmp_path.glob("mtls-smoke.*"))  # the temporary directory is gone


def test_a_missing_bundle_is_reported_not_curled(tmp_path):
    request = plan_cases([API], [BOB])[0].request
    done = run_script(tmp_path, script_for([request], {"server-ca.crt": b"CA"}))
    assert parse_results(done.stdout)[0][request.id].missing
    assert not (tmp_path / "log").exists()


def test_throwaway_files_are_written_private_and_removed(tmp_path):
    request = next(c.request for c in plan_cases([API], []) if c.number == 4)
    files = {"server-ca.crt": b"CA", "foreign.crt": b"CERT", "foreign.key": b"KEY"}
    peek = '\nls -l "$d" >&2\n'
    script = script_for([request], files).replace("\nmtls_curl() {", peek + "mtls_curl() {", 1)
    done = run_script(tmp_path, script)
    assert "-rw------- " in done.stderr and "foreign.key" in done.stderr
    assert not list(tmp_path.glob("mtls-smoke.*"))


def test_a_public_api_is_verified_with_the_system_store_not_a_cacert(tmp_path):
    """server_cert acme (or files) with a public CA: no --cacert, never -k."""
    public = ApiTarget(*list(API.__dict__.values())[:7], ca_file=None)
    request = next(c.request for c in plan_cases([public], [BOB]) if c.number == 8)
    done = run_script(tmp_path, script_for([request], {}))
    assert done.returncode == 0, done.stderr
    log = (tmp_path / "log").read_text().splitlines()
    assert "--cacert" not in log and "-k" not in log and "--insecure" not in log


def test_an_api_of_a_private_acme_ca_is_verified_with_its_roots(tmp_path):
    private = ApiTarget(*list(API.__dict__.values())[:7], ca_file="api-ca-1.crt")
    request = next(c.request for c in plan_cases([private], [BOB]) if c.number == 8)
    done = run_script(tmp_path, script_for([request], {"api-ca-1.crt": b"PEBBLE"}))
    assert done.returncode == 0, done.stderr
    log = (tmp_path / "log").read_text().splitlines()
    assert log[log.index("--cacert") + 1].endswith("/api-ca-1.crt")
