"""``inv status`` and ``inv doctor`` on a lab world of their own: API host st-api (SSH 2283,
HTTPS 8483) and consumer st-bob (SSH 2284), own PKI; client st-bob delivered to st-bob."""

import json

import pytest

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

API = ApiHost("st-api", 2283, 8483)
CONSUMER, CONSUMER_PORT = "st-bob", 2284


def write_world_inventory(folder):
    """st-api in group api, st-bob in group consumers, the lab's key and known_hosts."""
    return write_api_consumer_inventory(folder, API, CONSUMER, CONSUMER_PORT)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The world provisioned, st-bob's bundle delivered; hosts stopped afterwards."""
    base = tmp_path_factory.mktemp("status-world")
    folder = base / "inventory"
    write_world_inventory(folder)
    env = {"MTLS_DEPLOY_INVENTORY": str(folder)}
    with pki_environment(base, "status-test"), pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTLS_DEPLOY_INVENTORY", str(folder))
        PkiStore().init(name="Status API", key_type="ec")
        hosts = lab.hosts_from_inventory(inventory.load(folder).select())
        lab.reset(hosts)
        try:
            provision_cleanly(folder, API.name)
            inv("issue-client", "--name", CONSUMER, env=env)
            yield folder
        finally:
            lab.down(hosts)


def status_json(*args):
    done = inv("status", "--json", *args, check=False)
    return done.returncode, json.loads(done.stdout) if done.stdout.startswith("{") else done


def test_status_is_0_on_a_healthy_lab(world):
    code, document = status_json()
    assert code == 0, document
    kinds = {(c["host"], c["kind"]) for c in document["checks"]}
    for kind in ("server-cert", "client-ca", "crl", "services", "drift"):
        assert (API.name, kind) in kinds
    client = next(c for c in document["checks"] if c["kind"] == "client")
    assert client["facts"]["delivered"] == {CONSUMER: "current"}
    units = next(c for c in document["checks"] if c["kind"] == "services")["facts"]["units"]
    assert units.get("nginx.service") == "active", units
    table = inv("status", check=False)
    assert table.returncode == 0, table.stdout + table.stderr
    assert table.stdout.startswith("STATUS OK: 0 warning, 0 critical"), table.stdout


def test_status_html_names_every_host_and_certificate(world, tmp_path):
    page = tmp_path / "status.html"
    done = inv("status", "--html", str(page), check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    text = page.read_text()
    for name in (API.name, CONSUMER, f"client {CONSUMER}", "Status API client CA", ">today<"):
        assert name in text, name


def test_status_warns_when_the_crl_ends_within_warn_before(world):
    inv("pki.crl", "--days", "10", "--push")
    code, document = status_json()
    crl = next(c for c in document["checks"] if c["kind"] == "crl")
    assert (code, crl["status"]) == (1, "warning"), crl
    inv("pki.crl", "--push")  # back to 180 days


def test_status_is_critical_when_the_hosts_crl_differs(world):
    store = PkiStore.open()
    stale = store.stale_crl_pem()
    run_on(world, API.name, f"printf '%s' '{stale.decode()}' > /etc/nginx/mtls/crl.pem", sudo=True)
    try:
        code, document = status_json("--host", API.name)
        crl = next(c for c in document["checks"] if c["kind"] == "crl")
        assert (code, crl["status"]) == (2, "critical"), crl
        assert "not the PKI's" in crl["detail"]
    finally:
        inv("pki.crl", "--push")


def test_status_is_critical_when_a_host_is_down(world):
    hosts = lab.hosts_from_inventory(inventory.load(world).select([CONSUMER]))
    lab.down(hosts)
    try:
        code, document = status_json()
        host = next(c for c in document["checks"] if c["host"] == CONSUMER)
        assert (code, host["kind"], host["status"]) == (2, "host", "critical"), host
        assert "unreachable" in host["detail"]
    finally:
        lab.up(hosts)


def test_status_of_an_unknown_host_is_unknown(world):
    done = inv("status", "--host", "nosuchhost", check=False)
    assert done.returncode == 3
    assert done.stderr.strip().count("\n") == 0 and "unknown host" in done.stderr


def call_from_consumer(world) -> str:
    """st-bob calls /whoami with the bundle it holds (curl exits 0 on a 400 too)."""
    bundle = ".mtls/api"
    return run_on(world, CONSUMER,
                  f"curl -sS --resolve {API.server_name}:{API.https_port}:127.0.0.1 "
                  f"--cacert {bundle}/api-ca.crt --cert {bundle}/{CONSUMER}.crt "
                  f"--key {bundle}/{CONSUMER}.key https://{API.server_name}:{API.https_port}/whoami")  # fmt: skip


def test_doctor_names_revoked_and_the_fix(world):
    inv("revoke-client", "--name", CONSUMER)
    try:
        assert "revoked" in call_from_consumer(world)
        done = inv("doctor", "--name", CONSUMER, check=False)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "verify=FAILED:certificate revoked" in done.stdout
        assert "cause: the client's certificate was revoked" in done.stdout
        assert f"fix:   inv issue-client --name {CONSUMER} --reissue" in done.stdout
    finally:
        inv("issue-client", "--name", CONSUMER, "--reissue")
    assert CONSUMER in call_from_consumer(world)
    healthy = inv("doctor", "--name", CONSUMER, check=False)
    assert healthy.returncode == 0 and "last request was accepted" in healthy.stdout, healthy.stdout


def test_doctor_cert_on_an_expired_certificate(world):
    pki = PkiStore.open().path
    done = inv("doctor", "--cert", str(pki / "smoke" / "expired.crt"),
               "--key", str(pki / "smoke" / "expired.key"), check=False)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL expired" in done.stdout
    # the smoke test's own certificate: no command would renew it (its name is reserved)
    assert "fix:   none: the smoke test's own certificate is meant to be refused" in done.stdout
    assert (
        f"live: from {CONSUMER} to {API.name}: refused (400): certificate has expired"
        in done.stdout
    )


def test_doctor_with_an_unknown_name_or_file_is_one_line_exit_2(world):
    for args in (["--name", "nobody"], ["--cert", "/nonexistent.crt"]):
        done = inv("doctor", *args, check=False)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
