"""Delivery to bob and revocation on api1, through the commands users type: `inv issue-client`
(SFTP delivery, unchanged re-delivery, drift repair, --csr) and `inv revoke-client` (rejected
at once). Then api1 holds no client key and no CA key anywhere.

A PKI of this module's own (in a temporary directory); api1 is provisioned against it first.
"""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtls_deploy import inventory
from mtls_deploy.connection import Remote, SshTarget
from mtls_deploy.pki_store import PkiStore
from mtls_deploy.provision import RunOptions, provision_host

from .conftest import needs_lab

pytestmark = [*needs_lab, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ".mtls/api"  # bob's default bundle_dir, relative to his home
CURL_WHOAMI = (
    f"cd {BUNDLE} && curl -sS --max-time 10 -w ' %{{http_code}}' --resolve api1.lab.test:8441:127.0.0.1 "
    "--cacert api-ca.crt --cert bob.crt --key bob.key https://api1.lab.test:8441/whoami"
)


@pytest.fixture(scope="module")
def world(lab_inventory, tmp_path_factory):
    """This module's PKI and dist/, api1 provisioned against it, bob without a bundle."""
    base = tmp_path_factory.mktemp("deliver")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTLS_DEPLOY_PKI_DIR", str(base / "pki"))
        patch.setenv("MTLS_DEPLOY_DIST_DIR", str(base / "dist"))
        patch.setenv("MTLS_DEPLOY_CA_PASSPHRASE", "integration-deliver")
        patch.chdir(ROOT)
        PkiStore().init(name="Deliver API")
        result = provision_host(inventory.load("inventory").host("api1"), RunOptions())
        assert not result.failed, [s for s in result.steps if s.status == "failed"] or result.error
        run_on("bob", "rm -rf ~/.mtls")
        yield base


def inv(*args, check=True) -> subprocess.CompletedProcess:
    """The real command line, with this module's environment."""
    done = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=dict(os.environ),
                          capture_output=True, text=True)  # fmt: skip
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def remote(name) -> Remote:
    host = inventory.load(ROOT / "inventory").host(name)
    return Remote(SshTarget.from_vars(host.name, host.vars))


def run_on(name, command, sudo=False) -> str:
    with remote(name) as connection:
        return connection.run(command, sudo=sudo, check=True).stdout


def stat_bundle() -> dict[str, str]:
    out = run_on("bob", f"cd {BUNDLE} && stat -c '%n %a %U:%G' . * && sha256sum *")
    lines = out.splitlines()
    modes = {
        line.split()[0]: " ".join(line.split()[1:]) for line in lines if len(line.split()) == 3
    }
    hashes = {line.split()[1]: line.split()[0] for line in lines if len(line.split()) == 2}
    return {"modes": modes, "hashes": hashes}


def test_issue_client_delivers_the_bundle_to_bob(world):
    done = inv("issue-client", "--name", "bob")
    assert (
        "changed  bob  bundle bob  (/home/bob/.mtls/api/: 6 files written, sha256 checked"
        in done.stdout
    )
    found = stat_bundle()
    assert found["modes"]["."] == "700 bob:bob"
    assert found["modes"]["bob.key"] == "600 bob:bob"
    assert found["modes"]["bob.p12"] == "600 bob:bob"
    assert all(owner.endswith("bob:bob") for owner in found["modes"].values())
    dist = world / "dist" / "bob"
    assert found["hashes"] == {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in dist.iterdir()
    }
    answer = run_on("bob", CURL_WHOAMI)
    assert '"subject":{"CN":"bob"}' in answer and answer.endswith(" 200")


def test_delivering_again_changes_nothing(world):
    before = run_on("bob", f"stat -c '%i %Y' {BUNDLE}/*")
    done = inv("issue-client", "--name", "bob")
    assert (
        "ok       bob  bundle bob  (unchanged in /home/bob/.mtls/api/: sha256 of 6 files match)"
        in done.stdout
    )
    assert run_on("bob", f"stat -c '%i %Y' {BUNDLE}/*") == before


def test_drift_on_bob_is_repaired(world):
    run_on(
        "bob",
        f"chmod 644 {BUNDLE}/bob.key && chmod 755 {BUNDLE} && echo tampered > {BUNDLE}/bob.crt",
    )
    done = inv("issue-client", "--name", "bob")
    assert (
        "directory mode 0755 -> 0700; bob.crt content differs; bob.key mode 0644 -> 0600"
        in done.stdout
    )
    found = stat_bundle()
    assert (found["modes"]["."], found["modes"]["bob.key"]) == ("700 bob:bob", "600 bob:bob")
    assert not run_on("bob", f"ls -A {BUNDLE} | grep mtls-tmp || true").strip()  # no temporary left


def test_without_a_consumer_or_with_no_deliver_the_bundle_stays_in_dist(world):
    done = inv("issue-client", "--name", "carol")
    assert "carol: not delivered: no consumer host in the inventory" in done.stdout
    assert f"the bundle is in {world / 'dist' / 'carol'}/" in done.stdout
    done = inv("issue-client", "--name", "bob", "--no-deliver")
    assert "bob: not delivered: --no-deliver" in done.stdout


def test_csr_the_key_is_made_on_bob_and_never_leaves_it(world):
    old_key = run_on("bob", f"sha256sum < {BUNDLE}/bob.key")
    refused = inv("issue-client", "--name", "bob", "--csr", check=False)
    assert (
        refused.returncode == 2
        and "key was made here, not on the consumer: add --reissue" in refused.stdout
    )
    done = inv("issue-client", "--name", "bob", "--csr", "--reissue")
    assert "key made on the consumer, never left it" in done.stdout
    assert (
        "changed  api1  file /etc/nginx/mtls/crl.pem" in done.stdout
    )  # the superseded one is refused
    assert run_on("bob", f"sha256sum < {BUNDLE}/bob.key") != old_key
    assert not (world / "pki" / "clients" / "bob" / "bob.key").exists()
    store = PkiStore.open(world / "pki")
    index_cert = store.client_material("bob").cert_pem
    assert run_on("bob", f"cat {BUNDLE}/bob.crt").encode() == index_cert
    pair = run_on(
        "bob",
        f"cd {BUNDLE} && openssl pkey -in bob.key -pubout && openssl x509 -in bob.crt -noout -pubkey",
    )
    assert (
        pair[: len(pair) // 2] == pair[len(pair) // 2 :]
    )  # the key on bob matches the certificate
    assert stat_bundle()["modes"]["bob.key"] == "600 bob:bob"
    assert "bob.p12" not in stat_bundle()["modes"]  # the old key's .p12 went with it
    assert run_on("bob", CURL_WHOAMI).endswith(" 200")
    again = inv("issue-client", "--name", "bob", "--csr")
    assert "unchanged in /home/bob/.mtls/api/" in again.stdout


def test_revocation_is_refused_as_soon_as_revoke_client_returns(world):
    with remote("bob") as bob:  # connected before, so nothing but the request runs after
        assert bob.run(CURL_WHOAMI).stdout.endswith(" 200")
        done = inv("revoke-client", "--name", "bob")
        answer = bob.run(CURL_WHOAMI).stdout
    assert '"reason":"certificate revoked"' in answer and answer.endswith(" 400")
    assert "changed  api1  file /etc/nginx/mtls/crl.pem" in done.stdout
    assert "changed  api1  handler reload nginx" in done.stdout


def test_api1_holds_no_client_key_and_no_ca_key(world):
    pem_keys = run_on(
        "api1",
        "grep -rlIs -E '^-----BEGIN ([A-Z]+ )?PRIVATE KEY-----' /etc /home /root /tmp /var /srv /opt "
        "/usr/local /run /dev/shm /boot; find / /tmp /run /dev/shm -xdev -type f "
        "\\( -name '*.key' -o -name '*.p12' -o -name '*.pfx' \\); true",
        sudo=True,
    ).split()
    allowed = {"/etc/nginx/mtls/server.key"} | {
        p for p in pem_keys if p.startswith("/etc/ssh/ssh_host_")
    }
    assert set(pem_keys) <= allowed, set(pem_keys) - allowed
    secrets = {hashlib.sha256(p.read_bytes()).hexdigest(): str(p) for p in world.rglob("*")
               if p.is_file() and p.suffix in (".key", ".p12", ".pass") and "servers" not in p.parts}  # fmt: skip
    assert any("client-ca.key" in p for p in secrets.values())
    every_file = run_on(
        "api1",
        "{ find / -xdev -type f -size -64k; find /tmp /var/tmp /run /dev/shm -type f -size -64k; } "
        "2>/dev/null | sort -u | xargs -d '\\n' sha256sum 2>/dev/null; true",
        sudo=True,
    )
    hashes = {line.split()[0] for line in every_file.splitlines() if line.strip()}
    assert len(hashes) > 1000  # the whole filesystem was read
    assert not [secrets[h] for h in hashes & set(secrets)]
