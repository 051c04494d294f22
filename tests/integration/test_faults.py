"""Faults survived on a real lab host: a connection cut mid-provision, a reboot, a CRL near
its end. The faults are real (sshd killed, systemctl reboot); only their timing is fixed."""

import time

import pytest

from mtls_deploy import apply as applying
from mtls_deploy.lab import ssh_banner
from mtls_deploy.pki.store import PkiStore

from .conftest import ApiHost, lab_world, needs_lab

pytestmark = [*needs_lab, pytest.mark.slow]

HOST = ApiHost("fault-api", 2221, 8481, "php")
TLS_FILES = [
    "/etc/nginx/mtls/server.crt",
    "/etc/nginx/mtls/server.key",
    "/etc/nginx/conf.d/api.conf",
]
# Kill this session's sshd processes (the host has no pkill): the connection drops for real.
CUT_CONNECTION = (
    "for p in /proc/[0-9]*; do case \"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\" in "
    "'sshd: deploy'*) kill -KILL ${p#/proc/} ;; esac; done; sleep 1"
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with lab_world(tmp_path_factory, [HOST]) as made:
        made.provision(HOST.name)
        yield made


def file_hashes(world) -> dict[str, str]:
    with world.remote(HOST.name) as remote:
        out = remote.run("sha256sum " + " ".join(TLS_FILES), sudo=True, check=True).stdout
    return {line.split()[1]: line.split()[0] for line in out.splitlines()}


def wait_for_orphaned_script(world) -> None:
    """The cut script ends at its next write to the dead connection; wait until it has."""
    probe = "grep -l '^sh.-s' /proc/[0-9]*/cmdline 2>/dev/null | wc -l"
    deadline = time.monotonic() + 15
    with world.remote(HOST.name) as remote:
        while remote.run(probe, sudo=True).stdout.strip() != "0":
            assert time.monotonic() < deadline, "the orphaned apply script is still running"
            time.sleep(0.2)


def leftovers(world) -> str:
    with world.remote(HOST.name) as remote:
        return remote.run(
            "find /etc/nginx -name '.*.tmp' -o -name '.*.mtls-prev'", sudo=True
        ).stdout


def test_connection_cut_mid_provision_leaves_old_files_and_nginx_serving(world, monkeypatch):
    before = file_hashes(world)
    original = applying.build_script

    def cut_after_first_step(steps, handlers, validators=None):
        return original(steps, handlers, validators).replace(
            "echo '@@done ", CUT_CONNECTION + "\necho '@@done ", 2
        )

    monkeypatch.setattr(applying, "build_script", cut_after_first_step)
    change = {"server_aliases": ["alt.fault-api.lab.test"], "client_verify": "optional"}
    cut = world.provision(HOST.name, **change)
    assert cut.count("failed") > 0  # the run knows it did not finish
    monkeypatch.undo()
    wait_for_orphaned_script(world)
    assert file_hashes(world) == before  # every validated file is the old one again
    assert leftovers(world) == ""  # no temporary file or backup left behind
    assert world.curl(HOST.name)[0] == 200  # nginx still serves the old configuration
    assert world.provision(HOST.name, **change).count("changed") > 0
    assert world.provision(HOST.name, **change).count("changed") == 0  # converged
    assert world.curl(HOST.name, cert=False)[0] == 401  # the new configuration is live
    world.provision(HOST.name)


def test_host_comes_back_serving_after_a_reboot(world):
    with world.remote(HOST.name) as remote:
        remote.run("systemctl reboot", sudo=True)
    deadline = time.monotonic() + 30
    while ssh_banner("127.0.0.1", HOST.ssh_port) and time.monotonic() < deadline:
        time.sleep(0.2)  # going down
    deadline = time.monotonic() + 90
    while not ssh_banner("127.0.0.1", HOST.ssh_port):
        assert time.monotonic() < deadline, "the host did not come back within 90 s"
        time.sleep(0.5)
    deadline = time.monotonic() + 30
    while True:  # nginx and php-fpm start on their own; give them their boot time
        try:
            code, body = world.curl(HOST.name)
            break
        except Exception:
            assert time.monotonic() < deadline, "nginx did not answer within 30 s of boot"
            time.sleep(0.5)
    assert code == 200 and body["subject"]["CN"] == "alice"
    with world.remote(HOST.name) as remote:
        states = remote.run("systemctl is-active nginx php8.2-fpm").stdout.split()
        assert states == ["active", "active"]
        assert remote.run("cat /proc/1/comm; uptime -s").ok
    assert world.provision(HOST.name).count("changed") == 0


def test_a_crl_near_its_end_is_resigned_and_pushed_by_provision(world, tmp_path, monkeypatch):
    """A PKI made 175 days ago has a CRL with 5 of its 180 days left: provision re-signs it."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509

    now = datetime.now(UTC)
    monkeypatch.setenv("MTLS_DEPLOY_PKI_DIR", str(tmp_path / "old-pki"))
    PkiStore().init(name="Old API", now=now - timedelta(days=175))
    assert PkiStore.open().crl_next_update() < now + timedelta(days=6)
    result = world.provision(HOST.name)
    assert next(s for s in result.steps if s.name == "/etc/nginx/mtls/crl.pem").status == "changed"
    with world.remote(HOST.name) as remote:
        pushed = remote.run("cat /etc/nginx/mtls/crl.pem", sudo=True, check=True).stdout.encode()
    assert x509.load_pem_x509_crl(pushed).next_update_utc > now + timedelta(days=179)
    assert world.provision(HOST.name).count("changed") == 0
    monkeypatch.undo()
    world.provision(HOST.name)


def test_an_expired_crl_on_a_host_is_named_as_the_cause(world):
    """A host whose CRL ran out (nobody touched it for months): nginx refuses every client; the
    400 says why, the smoke test names it, and `pki.crl --push` ends it."""

    from mtls_deploy import inventory
    from mtls_deploy.rollout import push_crl
    from mtls_deploy.smoke import CRL_CASE, run_smoke

    store = PkiStore.open()
    pem = store.stale_crl_pem().decode()  # ran out a day ago
    with world.remote(HOST.name) as remote:
        remote.run(
            f"printf '%s' '{pem}' > /etc/nginx/mtls/crl.pem && systemctl reload nginx",
            sudo=True,
            check=True,
        )
    time.sleep(1)  # the reload's new workers
    code, body = world.curl(HOST.name)
    assert (code, body["reason"]) == (400, "CRL has expired"), body
    assert "revocation list has expired" in body["hint"]
    loaded = inventory.load(world.inventory)
    report = run_smoke([HOST.name], [], loaded=loaded, store=store)
    crl_row = next(c for c in report.cases if c.number == CRL_CASE)
    assert crl_row.result == "fail" and crl_row.got.startswith("EXPIRED"), crl_row.got
    store.refresh_crl()
    assert not push_crl(store, loaded=loaded).failed
    assert world.curl(HOST.name)[0] == 200
    assert not run_smoke([HOST.name], [], loaded=loaded, store=store).failed
