"""Provisioning on fresh lab hosts, one per backend: the API answers, re-runs change nothing,
check mode reports drift without touching it, a broken site is refused and the old one serves."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, ApiHost, lab_world, needs_lab

pytestmark = [*needs_lab, pytest.mark.slow]

BROKEN_SITE = Path(__file__).parent / "fixtures" / "broken-site.conf.j2"
# One fresh host per backend, on ports of their own (the default lab keeps 2201/2202, 8441).
HOSTS = {
    "php": ApiHost("itest-php", 2211, 8451, "php"),
    "python": ApiHost("itest-py", 2212, 8452, "python"),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with lab_world(tmp_path_factory, list(HOSTS.values())) as made:
        yield made


@pytest.fixture(params=sorted(HOSTS), scope="module")
def backend(request):
    return request.param


def provision(world, backend, check=False, diff=False, **extra):
    return world.provision(HOSTS[backend].name, check=check, diff=diff, **extra)


def curl(world, backend, path="/whoami", cert=True, headers=()):
    return world.curl(HOSTS[backend].name, path, cert, headers)


def remote(world, backend):
    return world.remote(HOSTS[backend].name)


def test_fresh_host_is_provisioned_and_serves_whoami(world, backend):
    result = provision(world, backend)
    assert result.count("failed") == 0, [s for s in result.steps if s.status == "failed"]
    assert result.count("changed") > 5
    code, body = curl(world, backend)
    assert code == 200, body
    assert body["verified"] == "SUCCESS"
    assert body["subject"] == {"CN": "alice", "O": "Example, Inc."}  # RFC 2253 escaped comma


def test_second_run_changes_nothing(world, backend):
    result = provision(world, backend)
    assert result.recap() == {"ok": len(result.steps), "changed": 0, "failed": 0, "skipped": 0}
    # the first run of this test had no fact cache (a fresh HOME): facts, then the paths the
    # roles want given those facts; with the cache filled, a no-op is one round trip
    assert result.data["ssh_channels"] == 2
    assert provision(world, backend).data["ssh_channels"] == 1


def test_check_mode_after_a_clean_run_reports_nothing(world, backend):
    assert provision(world, backend, check=True).count("changed") == 0


def pki_files(folder: Path) -> dict[str, bytes]:
    """Every file under the PKI directory (index.sqlite3 included), with its content."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_check_mode_on_a_converged_host_writes_nothing_in_the_pki(world, backend):
    """The plan is pure: `inv provision --check` shows the prepare step's lines and signs
    nothing (every file under pki/, index.sqlite3 included, byte-identical)."""
    before = pki_files(world.pki)
    name = HOSTS[backend].name
    run = subprocess.run(
        [sys.executable, "-m", "invoke", "provision", "--host", name, "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "MTLS_DEPLOY_INVENTORY": str(world.inventory)},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"ok       {name}  pki server certificate  (up to date)" in run.stdout, run.stdout
    assert f"ok       {name}  pki crl  (valid " in run.stdout
    assert "changed=0 failed=0" in run.stdout
    assert pki_files(world.pki) == before


def test_a_new_name_is_issued_in_prepare_and_would_be_in_check_mode(world, backend):
    """An alias added: check mode says it would issue and signs nothing; the run issues once,
    as its own recap line."""
    alias = f"alias-{backend}.lab.test"
    before = pki_files(world.pki)
    checked = provision(world, backend, check=True, server_aliases=[alias])
    line = next(s for s in checked.steps if s.name == "server certificate")
    assert line.status == "changed" and line.reason.startswith("would issue: names changed")
    assert pki_files(world.pki) == before
    done = provision(world, backend, server_aliases=[alias])
    line = next(s for s in done.steps if s.name == "server certificate")
    assert line.status == "changed" and line.reason.startswith("issued: names changed")
    assert done.count("failed") == 0
    restored = provision(world, backend)  # back to the inventory's names: issued again
    assert restored.count("failed") == 0


def test_api_with_client_verify_on(world, backend):
    code, body = curl(world, backend, cert=False)
    assert code == 400 and body["reason"] == "no client certificate was sent"
    code, body = curl(world, backend, "/health")
    assert (code, body) == (200, {"status": "ok"})
    code, body = curl(world, backend, headers=["DN: CN=admin", "Verified: SUCCESS"])
    assert body["subject"]["CN"] == "alice"  # headers never override the certificate


def test_api_with_client_verify_optional(world, backend):
    changed = provision(world, backend, client_verify="optional")
    assert [s.name for s in changed.steps if s.status == "changed"] == [
        "/etc/nginx/conf.d/api.conf",
        "reload nginx",
    ]
    try:
        assert curl(world, backend, "/health", cert=False) == (200, {"status": "ok"})
        assert curl(world, backend, cert=False)[0] == 401
        spoofed = ["Verified: SUCCESS", "X-SSL-Client-Verify: SUCCESS", "DN: CN=admin"]
        code, body = curl(world, backend, cert=False, headers=spoofed)
        assert (code, body) == (401, {"error": "client certificate required"})
        assert curl(world, backend)[1]["subject"]["CN"] == "alice"
    finally:
        provision(world, backend)


def test_check_mode_reports_drift_with_a_diff_and_changes_nothing(world, backend):
    site = "/etc/nginx/conf.d/api.conf"
    with remote(world, backend) as r:
        r.run(f"echo '# edited by hand' >> {site}", sudo=True, check=True)
        drifted = r.run(f"sha256sum {site}", sudo=True).stdout
    checked = provision(world, backend, check=True, diff=True)
    step = next(s for s in checked.steps if s.name == site)
    assert step.status == "changed" and step.reason.startswith("content differs")
    assert "-# edited by hand" in step.diff and step.diff.startswith(f"--- before: {site}")
    with remote(world, backend) as r:
        assert r.run(f"sha256sum {site}", sudo=True).stdout == drifted  # check changed nothing
    fixed = provision(world, backend)
    assert {s.name for s in fixed.steps if s.status == "changed"} == {site, "reload nginx"}
    assert provision(world, backend).count("changed") == 0


def test_private_key_is_never_diffed(world, backend):
    key = "/etc/nginx/mtls/server.key"
    with remote(world, backend) as r:
        r.run(f"cp -p {key} /root/key.bak && echo junk >> {key}", sudo=True, check=True)
    try:
        step = next(
            s for s in provision(world, backend, check=True, diff=True).steps if s.name == key
        )
        assert step.status == "changed" and "secret, not shown" in step.diff
        assert "PRIVATE KEY" not in step.diff and "junk" not in step.diff
    finally:
        provision(world, backend)


def test_broken_site_is_refused_and_the_old_one_keeps_serving(world, backend):
    result = provision(world, backend, nginx_site_template=str(BROKEN_SITE))
    failed = [s for s in result.steps if s.status == "failed"]
    validate = next(s for s in failed if s.kind == "validate")
    assert 'unknown directive "brokn_directive"' in validate.reason
    assert any(s.name == "/etc/nginx/conf.d/api.conf" and "reverted" in s.reason for s in failed)
    with remote(world, backend) as r:
        site = r.run("cat /etc/nginx/conf.d/api.conf", sudo=True).stdout
        assert "brokn_directive" not in site
        assert r.run("systemctl is-active nginx").stdout.strip() == "active"
    assert curl(world, backend)[0] == 200
    assert provision(world, backend).count("changed") == 0


def test_a_pool_php_fpm_refuses_is_put_back_and_php_keeps_serving(world):
    """backend_php's own validator (php-fpm -t), declared by the role, not the engine."""
    refused = {"php_pm": "dynamic", "php_pm_start_servers": 3, "php_pm_max_spare_servers": 2}
    result = provision(world, "php", **refused)
    validate = next(s for s in result.steps if s.kind == "validate")
    assert validate.status == "failed" and "ERROR" in validate.reason, validate
    assert validate.name == "php-fpm8.2 -t"
    pool = "/etc/php/8.2/fpm/pool.d/api.conf"
    assert any(s.name == pool and s.reason.startswith("reverted") for s in result.steps)
    with remote(world, "php") as r:
        assert "start_servers = 3" not in r.run(f"cat {pool}", sudo=True).stdout
        assert r.run("systemctl is-active php8.2-fpm").stdout.strip() == "active"
    assert curl(world, "php")[0] == 200
    assert provision(world, "php").count("changed") == 0


def test_unreachable_host_fails_alone_with_a_nonzero_exit(world):
    (world.inventory / "host_vars").mkdir(exist_ok=True)
    (world.inventory / "host_vars" / "itest-py.yml").write_text("ansible_port: 2299\n")
    try:
        run = subprocess.run(
            [sys.executable, "-m", "invoke", "provision", "--group", "api"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "MTLS_DEPLOY_INVENTORY": str(world.inventory)},
        )
    finally:
        (world.inventory / "host_vars" / "itest-py.yml").unlink()
    assert run.returncode == 2, run.stdout + run.stderr
    assert "itest-php : ok=" in run.stdout and "failed=0" in run.stdout.split("itest-php : ")[1]
    assert "itest-py  : ok=0 changed=0 failed=1" in run.stdout
    assert "cannot reach deploy@127.0.0.1:2299: connection refused" in run.stdout
