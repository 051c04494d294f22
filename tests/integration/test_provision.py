"""Provisioning on fresh lab hosts, one per backend: the API answers, re-runs change nothing,
check mode reports drift without touching it, a broken site is refused and the old one serves."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mtls_deploy import inventory, lab
from mtls_deploy.bundle import write_client_bundle
from mtls_deploy.connection import Remote, SshTarget
from mtls_deploy.pki_store import PkiStore
from mtls_deploy.provision import RunOptions, provision_host

from .conftest import needs_lab

pytestmark = [*needs_lab, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BROKEN_SITE = Path(__file__).parent / "fixtures" / "broken-site.conf.j2"
# One fresh host per backend, on ports of their own (the default lab keeps 2201/2202, 8441).
HOSTS = {"php": ("itest-php", 2211, 8451), "python": ("itest-py", 2212, 8452)}


def write_inventory(folder: Path) -> Path:
    hosts = "\n".join(
        f"        {name}: {{ansible_port: {ssh}, https_port: {https}, backend: {backend}, "
        f"server_name: {name}.lab.test}}"
        for backend, (name, ssh, https) in HOSTS.items()
    )
    (folder / "group_vars").mkdir(parents=True)
    (folder / "hosts.yml").write_text(textwrap.dedent("""\
        all:
          vars: {ansible_host: 127.0.0.1, ansible_user: deploy, ansible_become: true, lab: true,
                 https_listen: 127.0.0.1}
          children:
            api:
              hosts:
        """) + hosts + "\n")
    (folder / "group_vars" / "all.yml").write_text(
        f"ansible_ssh_private_key_file: {ROOT}/.lab/id_ed25519\n"
        f"ssh_known_hosts_file: {ROOT}/.lab/known_hosts\n"
    )
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A PKI, an inventory and two freshly reset lab hosts, all of this module's own."""
    base = tmp_path_factory.mktemp("provision")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTLS_DEPLOY_PKI_DIR", str(base / "pki"))
        patch.setenv("MTLS_DEPLOY_DIST_DIR", str(base / "dist"))
        patch.setenv("MTLS_DEPLOY_CA_PASSPHRASE", "integration-test")
        patch.chdir(ROOT)
        inv_dir = write_inventory(base / "inventory")
        hosts = lab.hosts_from_inventory(inventory.load(inv_dir).select())
        lab.reset(hosts)
        PkiStore().init(name="Integration API", key_type="ec")
        store = PkiStore.open()
        store.issue_client("alice", org="Example, Inc.")
        bundle = write_client_bundle(store, "alice")
        try:
            yield {"inventory": inv_dir, "bundle": bundle}
        finally:
            lab.down(hosts)


@pytest.fixture(params=sorted(HOSTS), scope="module")
def backend(request):
    return request.param


def provision(world, backend, check=False, diff=False, **extra):
    host = inventory.load(world["inventory"], extra).host(HOSTS[backend][0])
    result = provision_host(host, RunOptions(check=check, diff=diff))
    assert result.error is None, result.error
    return result


def curl(world, backend, path="/whoami", cert=True, headers=()):
    name, _, https = HOSTS[backend]
    bundle = world["bundle"]
    command = ["curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}",
               "--resolve", f"{name}.lab.test:{https}:127.0.0.1", "--cacert", str(bundle / "api-ca.crt")]
    if cert:
        command += ["--cert", str(bundle / "alice.crt"), "--key", str(bundle / "alice.key")]
    for header in headers:
        command += ["-H", header]
    out = subprocess.run([*command, f"https://{name}.lab.test:{https}{path}"],
                         capture_output=True, text=True, check=True).stdout
    body, _, code = out.rpartition("\n")
    return int(code), json.loads(body) if body.startswith("{") else body


def remote(world, backend) -> Remote:
    host = inventory.load(world["inventory"]).host(HOSTS[backend][0])
    return Remote(SshTarget.from_vars(host.name, host.vars))


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
    assert result.data["ssh_channels"] <= 2  # system facts + resource facts, nothing else


def test_check_mode_after_a_clean_run_reports_nothing(world, backend):
    assert provision(world, backend, check=True).count("changed") == 0


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
        "/etc/nginx/conf.d/api.conf", "reload nginx"]
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
        step = next(s for s in provision(world, backend, check=True, diff=True).steps if s.name == key)
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


def test_unreachable_host_fails_alone_with_a_nonzero_exit(world):
    (world["inventory"] / "host_vars").mkdir(exist_ok=True)
    (world["inventory"] / "host_vars" / "itest-py.yml").write_text("ansible_port: 2299\n")
    try:
        run = subprocess.run(
            [sys.executable, "-m", "invoke", "provision", "--group", "api"],
            capture_output=True, text=True, cwd=ROOT,
            env={**os.environ, "MTLS_DEPLOY_INVENTORY": str(world["inventory"])},
        )
    finally:
        (world["inventory"] / "host_vars" / "itest-py.yml").unlink()
    assert run.returncode == 2, run.stdout + run.stderr
    assert "itest-php : ok=" in run.stdout and "failed=0" in run.stdout.split("itest-php : ")[1]
    assert "itest-py  : ok=0 changed=0 failed=1" in run.stdout
    assert "cannot reach deploy@127.0.0.1:2299: connection refused" in run.stdout
