"""``inv maintain`` on a lab world of its own, with time compressed: API host mt-api (SSH 2285,
HTTPS 8485) and consumer mt-bob (SSH 2286), own PKI; lifetimes in seconds (group_vars/all). Each
kind is renewed when it is due and not before: the CRL alone first, then the server certificate
(the serial mt-bob sees changes) and mt-bob's certificate (its new bundle works, the old
certificate is revoked afterwards); a run with nothing due changes nothing; a host that is down
fails alone (exit 2); ``inv status`` exits 0 at the end. Unattended: the CA passphrase comes from
MTLS_DEPLOY_CA_PASSPHRASE_FILE only. Ports 2285, 2286 and 8485 are this module's (2299: nothing listens)."""

import datetime as dt
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest
from cryptography import x509

from mtls_deploy import inventory, lab
from mtls_deploy.pki.settings import PkiSettings
from mtls_deploy.pki.store import PkiStore

from .conftest import (
    ROOT,
    ApiHost,
    inv,
    needs_lab,
    pki_environment,
    provision_cleanly,
    run_on,
    write_api_consumer_inventory,
)

pytestmark = [*needs_lab, pytest.mark.slow]

API = ApiHost("mt-api", 2285, 8485)
CONSUMER, CONSUMER_PORT = "mt-bob", 2286
GONE_PORT = 2299  # nothing listens there (as in test_smoke, test_connection): a host that is down
PASSPHRASE = "maintain-test"
LIFETIMES = {"crl_lifetime": "45s", "server_lifetime": "60s", "client_lifetime": "66s",
             "client_renew_before": "24s", "warn_before": "8s"}  # fmt: skip
BUNDLE = ".mtls/api"


def write_world_inventory(folder, gone: bool = False):
    """mt-api in group api (and mt-gone, a host that is down, with ``gone``), mt-bob in group
    consumers, the compressed lifetimes in group_vars/all."""
    extra = (f"        mt-gone: {{ansible_port: {GONE_PORT}, https_port: 8499, "
             "server_name: mt-gone.lab.test}\n")  # fmt: skip
    return write_api_consumer_inventory(
        folder, API, CONSUMER, CONSUMER_PORT, LIFETIMES, extra if gone else ""
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The world provisioned, mt-bob's bundle delivered; a 0600 passphrase file; hosts stopped
    afterwards. Yields the base directory."""
    base = tmp_path_factory.mktemp("maintain-world")
    folder = write_world_inventory(base / "inventory")
    write_world_inventory(base / "inventory-gone", gone=True)
    secret = base / "ca-passphrase"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    with pki_environment(base, PASSPHRASE), pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTLS_DEPLOY_INVENTORY", str(folder))
        PkiStore(settings=PkiSettings.from_values(LIFETIMES)).init(name="Maintain API")
        hosts = lab.hosts_from_inventory(inventory.load(folder).select())
        lab.reset(hosts)
        try:
            provision_cleanly(folder, API.name)
            inv("issue-client", "--name", CONSUMER)
            start_the_clocks(base, folder)
            yield base
        finally:
            lab.down(hosts)


def start_the_clocks(base, folder) -> None:
    """A first provisioning takes longer than these lifetimes: start them all again now, one
    after the other (a new client certificate and CRL, then a new server certificate, pushed),
    so that the CRL falls due first, alone, some seconds before the certificates."""
    inv("renew-client", "--name", CONSUMER)
    shutil.rmtree(base / "pki" / "servers" / API.name)  # the next run issues a new one
    provision_cleanly(folder, API.name)


def maintain(world, inventory_dir=None) -> subprocess.CompletedProcess:
    """``inv maintain`` as cron runs it: the passphrase from the 0600 file only."""
    env = {k: v for k, v in os.environ.items() if k != "MTLS_DEPLOY_CA_PASSPHRASE"}
    env["MTLS_DEPLOY_CA_PASSPHRASE_FILE"] = str(world / "ca-passphrase")
    env["MTLS_DEPLOY_INVENTORY"] = str(inventory_dir or world / "inventory")
    return subprocess.run([sys.executable, "-m", "invoke", "maintain"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def store(world) -> PkiStore:
    return PkiStore.open(world / "pki", settings=PkiSettings.from_values(LIFETIMES))


def crl_number(world) -> int:
    crl = store(world).crl()
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def server_serial_seen_by_consumer(world) -> str:
    """The serial of the certificate mt-api's nginx sends, as mt-bob sees it."""
    command = (f"openssl s_client -connect 127.0.0.1:{API.https_port} -servername "
               f"{API.server_name} </dev/null 2>/dev/null | openssl x509 -noout -serial")  # fmt: skip
    return run_on(world / "inventory", CONSUMER, command).strip().removeprefix("serial=").lower()


def whoami(world, folder: str = BUNDLE) -> str:
    """mt-bob calls /whoami with the bundle in ``folder`` (curl exits 0 on a 400 too)."""
    return run_on(world / "inventory", CONSUMER,
                  f"cd {folder} && curl -sS -w ' %{{http_code}}' --resolve "
                  f"{API.server_name}:{API.https_port}:127.0.0.1 --cacert api-ca.crt "
                  f"--cert {CONSUMER}.crt --key {CONSUMER}.key "
                  f"https://{API.server_name}:{API.https_port}/whoami")  # fmt: skip


def dates(world) -> dict[str, tuple[dt.datetime, dt.datetime]]:
    """When each thing started and ends: the CRL, mt-api's and mt-bob's certificates."""
    pki = store(world)
    crl = pki.crl()
    server = x509.load_pem_x509_certificate(
        (world / "pki" / "servers" / API.name / f"{API.name}.crt").read_bytes()
    )
    client = x509.load_pem_x509_certificate(pki.client_material(CONSUMER).cert_pem)
    return {
        kind: (cert_or_crl[0], cert_or_crl[1])
        for kind, cert_or_crl in {
            "crl": (crl.last_update_utc, crl.next_update_utc),
            "server": (server.not_valid_before_utc, server.not_valid_after_utc),
            "client": (client.not_valid_before_utc, client.not_valid_after_utc),
        }.items()
    }


def due_at(world) -> dict[str, dt.datetime]:
    """When each becomes due: a third of its life left (CRL, server), 24 s left (client)."""
    found = dates(world)
    third = {kind: end - (end - start) / 3 for kind, (start, end) in found.items()}
    return {**third, "client": found["client"][1] - dt.timedelta(seconds=24)}


def sleep_until(moment: dt.datetime) -> None:
    time.sleep(max(0.0, (moment - dt.datetime.now(dt.UTC)).total_seconds()))


def facts(world) -> dict:
    pki = store(world)
    return {"crl": crl_number(world), "server": server_serial_seen_by_consumer(world),
            "client": pki.client_material(CONSUMER).serial}  # fmt: skip


def test_nothing_is_due_right_after_provisioning(world):
    before = facts(world)
    done = maintain(world)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("maintain: OK - "), done.stdout
    assert re.search(r"^ok +crl\.pem: valid", done.stdout, re.M), done.stdout
    assert re.search(rf"^ok +host {API.name}: up to date", done.stdout, re.M), done.stdout
    assert re.search(rf"^ok +client {CONSUMER}: ", done.stdout, re.M), done.stdout
    assert facts(world) == before


def test_the_crl_alone_is_resigned_when_it_is_due(world):
    due = due_at(world)
    assert due["crl"] + dt.timedelta(seconds=8) < min(due["server"], due["client"])  # a window
    sleep_until(due["crl"] + dt.timedelta(seconds=1))
    before = facts(world)
    done = maintain(world)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^changed +crl\.pem: re-signed", done.stdout, re.M), done.stdout
    assert re.search(rf"^changed +host {API.name}: crl\.pem ", done.stdout, re.M), done.stdout
    after = facts(world)
    assert after["crl"] > before["crl"]
    assert (after["server"], after["client"]) == (before["server"], before["client"])


def test_server_and_client_certificates_are_renewed_when_due(world):
    due = due_at(world)
    sleep_until(max(due["server"], due["client"]) + dt.timedelta(seconds=1))
    before = facts(world)
    old_version = run_on(world / "inventory", CONSUMER, f"readlink {BUNDLE}/current").strip()
    done = maintain(world)
    assert done.returncode == 0, done.stdout + done.stderr
    server_line = rf"^changed +host {API.name}: server certificate (renewed|issued): .*left"
    assert re.search(server_line, done.stdout, re.M), done.stdout
    client_line = (
        rf"^changed +client {CONSUMER}: renewed .*delivered to {CONSUMER}; previous serial"
    )
    assert re.search(client_line, done.stdout, re.M), done.stdout
    after = facts(world)
    assert after["server"] != before["server"]  # on the wire, as the client sees it
    assert after["client"] != before["client"]
    answer = whoami(world)
    assert answer.endswith(" 200") and f'"CN":"{CONSUMER}"' in answer, answer
    revoked = store(world).crl().get_revoked_certificate_by_serial_number(int(before["client"], 16))
    assert revoked is not None  # the old certificate, after the new bundle was delivered
    old = whoami(world, f"{BUNDLE}/{old_version}")  # the previous version is kept on mt-bob
    assert old.endswith(" 400") and "revoked" in old, old


def test_a_run_with_nothing_due_changes_nothing(world):
    before = facts(world)
    done = maintain(world)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "changed" not in done.stdout, done.stdout
    assert facts(world) == before


def test_a_host_that_is_down_fails_alone(world):
    with socket.socket() as probe:  # else maintain would write to whatever host listens there
        probe.settimeout(2)
        assert probe.connect_ex(("127.0.0.1", GONE_PORT)) != 0, f"port {GONE_PORT} is in use"
    done = maintain(world, world / "inventory-gone")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout.startswith("maintain: CRITICAL - "), done.stdout
    assert "(host mt-gone)" in done.stdout.splitlines()[0]
    assert re.search(r"^critical host mt-gone: FAILED: .*2299", done.stdout, re.M), done.stdout
    assert re.search(rf"^(ok|changed) +host {API.name}: ", done.stdout, re.M), done.stdout


def test_a_passphrase_file_others_can_read_is_refused_in_one_line(world, tmp_path):
    loose = tmp_path / "passphrase"
    shutil.copy(world / "ca-passphrase", loose)
    loose.chmod(0o644)
    env = {k: v for k, v in os.environ.items() if k != "MTLS_DEPLOY_CA_PASSPHRASE"}
    env["MTLS_DEPLOY_CA_PASSPHRASE_FILE"] = str(loose)
    done = subprocess.run([sys.executable, "-m", "invoke", "maintain"], cwd=ROOT, env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 3 and done.stdout.count("\n") == 1, done.stdout + done.stderr
    assert done.stdout.startswith("maintain: UNKNOWN - MTLS_DEPLOY_CA_PASSPHRASE_FILE")


def test_status_exits_0_at_the_end(world):
    assert maintain(world).returncode == 0  # as the timer keeps it
    done = inv("status", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
