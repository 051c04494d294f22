"""CA rollover on a lab world of its own: API host ro-api (SSH 2287, HTTPS 8487) and consumer
ro-bob (SSH 2288), own PKI. Client CA: while the old CA is still trusted (ro-bob's delivery
failed: it was down), its old bundle gets 200, a client of the new CA 200, a revoked client of
the old CA 400 (the old CA's CRL is there); ro-bob moved to the new CA gets 200; finish leaves
one CA and one CRL on the host. Server CA: ro-bob's api-ca.crt gets both roots, then the server
certificate switches, and ro-bob verifies it (no -k) all along; finish leaves one root."""

import json
import shutil
import ssl
import subprocess
import time

import pytest
from cryptography import x509

from mtls_deploy import inventory, lab
from mtls_deploy.pki.store import PkiStore

from .conftest import (
    ApiHost,
    inv,
    needs_lab,
    pki_environment,
    provision_cleanly,
    run_on,
    write_api_consumer_inventory,
)

pytestmark = needs_lab

API = ApiHost("ro-api", 2287, 8487)
CONSUMER, CONSUMER_PORT = "ro-bob", 2288
URL = f"https://{API.server_name}:{API.https_port}/whoami"
RESOLVE = f"{API.server_name}:{API.https_port}:127.0.0.1"
# ro-bob's bundle: the directory, or its current/ version (an atomically switched bundle)
IN_BUNDLE = "cd .mtls/api && { [ -d current ] && cd current || true; } && "


def write_world_inventory(folder):
    """ro-api in group api, ro-bob in group consumers, the lab's key and known_hosts."""
    return write_api_consumer_inventory(folder, API, CONSUMER, CONSUMER_PORT)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The world provisioned, ro-bob's bundle delivered; hosts stopped afterwards."""
    base = tmp_path_factory.mktemp("rollover-world")
    folder = base / "inventory"
    write_world_inventory(folder)
    with pki_environment(base, "rollover-test"), pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTLS_DEPLOY_INVENTORY", str(folder))
        PkiStore().init(name="Rollover API", key_type="ec")
        hosts = lab.hosts_from_inventory(inventory.load(folder).select())
        lab.reset(hosts)
        try:
            provision_cleanly(folder, API.name)
            inv("issue-client", "--name", CONSUMER)
            yield base
        finally:
            lab.down(hosts)


def from_consumer(world) -> str:
    """ro-bob calls /whoami with the bundle it holds, verifying the server: the status code
    (or curl's error, which the failing assertion then shows)."""
    command = (f"{IN_BUNDLE}curl -sS -o /dev/null -w '%{{http_code}}' --max-time 10 "
               f"--resolve {RESOLVE} --cacert api-ca.crt --cert {CONSUMER}.crt "
               f"--key {CONSUMER}.key {URL} 2>&1 || true")  # fmt: skip
    return run_on(world / "inventory", CONSUMER, command)


def from_here(bundle, name: str) -> str:
    """The status code of /whoami with ``bundle``'s certificate, verifying the server with it."""
    command = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
               "--resolve", RESOLVE, "--cacert", str(bundle / "api-ca.crt"),
               "--cert", str(bundle / f"{name}.crt"), "--key", str(bundle / f"{name}.key"), URL]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    return done.stdout + (
        f" (curl exit {done.returncode}: {done.stderr})" if done.returncode else ""
    )


def on_api(world, file: str) -> bytes:
    return run_on(world / "inventory", API.name, f"cat /etc/nginx/mtls/{file}", sudo=True).encode()


def consumer_roots(world) -> list[x509.Certificate]:
    pem = run_on(world / "inventory", CONSUMER, f"{IN_BUNDLE}cat api-ca.crt")
    return x509.load_pem_x509_certificates(pem.encode())


def served_issuer() -> str:
    pem = ssl.get_server_certificate(("127.0.0.1", API.https_port))
    return x509.load_pem_x509_certificate(pem.encode()).issuer.rfc4514_string()


def only_new_crl(world) -> None:
    """ro-api's crl.pem cut down to its first CRL (the new client CA's), nginx reloaded."""
    end = "-----END X509 CRL-----"
    first = on_api(world, "crl.pem").decode().split(end)[0] + end + "\n"
    command = f"printf '%s' '{first}' > /etc/nginx/mtls/crl.pem && systemctl reload nginx"
    run_on(world / "inventory", API.name, command, sudo=True)


def eventually(call, expected: str, seconds: float = 10) -> bool:
    """Whether ``call()`` returns ``expected`` within ``seconds`` (a reload takes a moment)."""
    deadline = time.monotonic() + seconds
    while call() != expected:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True


def consumer_hosts(world):
    return lab.hosts_from_inventory(inventory.load(world / "inventory").select([CONSUMER]))


def test_client_ca_rollover_never_locks_anybody_out(world, tmp_path):
    assert from_consumer(world) == "200"
    inv("issue-client", "--name", "ro-gone", "--no-deliver")
    inv("revoke-client", "--name", "ro-gone")
    inv("issue-client", "--name", "ro-ext", "--no-deliver")  # a bundle the operator hands over
    old_bundle = shutil.copytree(world / "dist" / CONSUMER, tmp_path / "old", symlinks=False)
    lab.down(consumer_hosts(world))  # ro-bob cannot take its new bundle: its old one stays valid
    try:
        started = inv("pki.rollover", "--ca", "client", "--start", check=False)
    finally:
        lab.up(consumer_hosts(world))
    assert started.returncode == 2, started.stdout + started.stderr
    assert "client CA rollover started: new CA" in started.stdout
    assert f"{CONSUMER}: previous serial" in started.stdout and "stays valid" in started.stdout
    assert "ro-ext: the old certificate stays valid until you hand over dist/ro-ext/" in (
        started.stdout
    )
    assert len(x509.load_pem_x509_certificates(on_api(world, "client-ca.crt"))) == 2
    assert on_api(world, "crl.pem").count(b"BEGIN X509 CRL") == 2
    assert from_here(old_bundle, CONSUMER) == "200"  # the old CA is still trusted, with its CRL
    only_new_crl(world)  # why a CRL per CA: nginx refuses the clients of a CA without one
    assert eventually(lambda: from_here(old_bundle, CONSUMER), "400")
    inv("pki.crl", "--push")
    assert from_here(old_bundle, CONSUMER) == "200"
    inv("issue-client", "--name", "ro-new", "--no-deliver")
    assert from_here(world / "dist" / "ro-new", "ro-new") == "200"  # the new CA
    assert from_here(world / "dist" / "ro-gone", "ro-gone") == "400"  # revoked by the old CA

    refused = inv("pki.rollover", "--ca", "client", "--finish", check=False)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert f"valid client certificates: {CONSUMER} (serial" in refused.stderr
    assert ", ro-ext (serial" in refused.stderr

    inv("issue-client", "--name", CONSUMER)  # delivers the new bundle, revokes the old one
    inv("issue-client", "--name", "ro-ext")  # handed over: its old certificate is revoked
    assert from_consumer(world) == "200"
    assert from_here(old_bundle, CONSUMER) == "400"  # into the old CA's CRL
    status = inv("status", "--json", "--host", API.name, check=False)
    rows = [c for c in json.loads(status.stdout)["checks"] if c["kind"] == "rollover"]
    assert [r["name"] for r in rows] == ["client CA"] and "waiting for" in rows[0]["detail"]

    inv("pki.rollover", "--ca", "client", "--finish")
    assert len(x509.load_pem_x509_certificates(on_api(world, "client-ca.crt"))) == 1
    assert on_api(world, "crl.pem").count(b"BEGIN X509 CRL") == 1
    assert from_consumer(world) == "200"


def test_server_ca_rollover_adds_the_root_first_then_switches(world):
    old_issuer = served_issuer()
    assert len(consumer_roots(world)) == 1
    started = inv("pki.rollover", "--ca", "server", "--start")
    assert "every consumer trusts the new server CA" in started.stdout
    roots = consumer_roots(world)
    assert len(roots) == 2
    new_issuer = served_issuer()
    assert new_issuer != old_issuer
    assert new_issuer == roots[1].subject.rfc4514_string()  # the switch came after the roots
    assert from_consumer(world) == "200"  # verified with ro-bob's api-ca.crt, no -k
    inv("pki.rollover", "--ca", "server", "--finish")
    assert [r.subject.rfc4514_string() for r in consumer_roots(world)] == [new_issuer]
    assert from_consumer(world) == "200"
