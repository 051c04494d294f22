"""The lab's ACME world for real: Debian's Pebble answers its directory over HTTPS signed by the
lab's listener CA; its DNS answers the names the lab registers and nothing else; Debian's
certbot on a lab host orders a certificate from it (HTTP-01 on the host's own 127.0.0.56:80)
once the lab gave the host the listener CA; a consumer trusts that certificate only after the
lab put Pebble's root in its system store, and follows Pebble's new root when the lab restarts
it; ``inv lab.up --with-acme`` maps and trusts from an inventory; ``inv lab.down`` leaves no
Pebble running.

Hosts and ports of its own: acme-srv (SSH 2256, ACME address 127.0.0.56, a test HTTPS server
on 127.0.0.56:8456) and acme-cli (SSH 2257, login carol without sudo). Their roots stay between
sessions (``lab.up``, never reset) so certbot is installed once per machine. Pebble: the
session's ``acme_lab`` (conftest.py).
"""

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from mtls_deploy import inventory, lab
from mtls_deploy.lab.services import stop_service

from .conftest import ROOT, inv, needs_lab, remote

pytestmark = [*needs_lab, pytest.mark.slow]

SERVER, CONSUMER = "acme-srv", "acme-cli"
PROBE_NAME = "acme-probe.lab.test"
PROBE_ADDRESS = "127.0.0.56"  # acme-srv's own: Pebble checks HTTP-01 on port 80 of it
PROBE_HTTPS = f"{PROBE_ADDRESS}:8456"
CERTBOT = "/tmp/acme-probe"  # certbot's config, work and log dirs: fresh for every run
WAIT_FOR_PROBE = f"""
import socket, time
for _ in range(100):
    try:
        socket.create_connection(("{PROBE_ADDRESS}", 8456), 1).close()
        break
    except OSError:
        time.sleep(0.1)
else:
    raise SystemExit("the probe server does not listen")
"""


@pytest.fixture(scope="module")
def acme_hosts(tmp_path_factory):
    """The module's inventory (acme-srv with server_cert acme, acme-cli a consumer), both
    hosts up and certbot on acme-srv; stopped after the module."""
    folder = tmp_path_factory.mktemp("acme") / "inventory"
    write_acme_inventory(folder)
    hosts = lab.hosts_from_inventory(inventory.load(folder).select())
    lab.up(hosts, ROOT / ".lab")
    try:
        install_certbot(folder)
        yield folder
    finally:
        lab.down(hosts)


def write_acme_inventory(folder: Path) -> None:
    """hosts.yml and group_vars/all.yml for acme-srv and acme-cli."""
    (folder / "group_vars").mkdir(parents=True)
    (folder / "hosts.yml").write_text(
        "all:\n"
        "  vars: {ansible_host: 127.0.0.1, lab: true}\n"
        "  children:\n"
        "    api:\n      hosts:\n"
        f"        {SERVER}: {{ansible_port: 2256, ansible_user: deploy, ansible_become: true,\n"
        f"                   server_cert: acme, server_name: {PROBE_NAME},\n"
        f"                   https_listen: {PROBE_ADDRESS}, https_port: 8456}}\n"
        "    consumers:\n      hosts:\n"
        f"        {CONSUMER}: {{ansible_port: 2257, ansible_user: carol}}\n"
    )
    (folder / "group_vars" / "all.yml").write_text(
        f"ansible_ssh_private_key_file: {ROOT}/.lab/id_ed25519\n"
        f"ssh_known_hosts_file: {ROOT}/.lab/known_hosts\n"
    )


def install_certbot(folder: Path) -> None:
    """Debian's certbot on acme-srv, once per machine (the host's root is kept)."""
    if run(folder, SERVER, "command -v certbot")[0] != 0:
        script = (
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq certbot"
        )
        code, out, err = run(folder, SERVER, script, sudo=True, timeout=1800)
        assert code == 0, out + err


def run(folder: Path, host: str, command: str, sudo=False, timeout=120) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``command`` on a lab host, whatever its status."""
    with remote(folder, host) as connection:
        result = connection.run(command, sudo=sudo, timeout=timeout)
    return result.exit_status, result.stdout, result.stderr


def certbot_order() -> str:
    """certbot's standalone HTTP-01 order for the probe name on acme-srv's own address, from
    Pebble, into a fresh config dir (an account of an earlier Pebble would be unknown to it)."""
    dirs = f"--config-dir {CERTBOT}/etc --work-dir {CERTBOT}/work --logs-dir {CERTBOT}/log"
    return (
        f"rm -rf {CERTBOT} && certbot certonly --non-interactive --agree-tos "
        f"--register-unsafely-without-email --server https://127.0.0.1:14000/dir {dirs} "
        f"--standalone --http-01-address {PROBE_ADDRESS} --http-01-port 80 "
        f"-d {PROBE_NAME} --cert-name acme-probe"
    )


def serve_probe() -> str:
    """A TLS server on acme-srv with the issued certificate and its chain (a transient unit)."""
    live = f"{CERTBOT}/etc/live/acme-probe"
    server = (
        f"openssl s_server -quiet -www -accept {PROBE_HTTPS} -cert {live}/cert.pem "
        f"-cert_chain {live}/chain.pem -key {live}/privkey.pem"
    )
    return (
        "systemctl stop acme-probe-https.service 2>/dev/null; "
        f"systemd-run --quiet --collect --unit=acme-probe-https {server} && "
        f"python3 -c {shlex.quote(WAIT_FOR_PROBE)}"
    )


def consumer_curl(folder: Path) -> tuple[int, str, str]:
    """curl from acme-cli (no sudo) to the probe server: no --cacert, no -k: the system store."""
    url = f"https://{PROBE_NAME}:8456/"
    resolve = f"{PROBE_NAME}:8456:{PROBE_ADDRESS}"
    command = f"curl -sS -o /dev/null -w '%{{http_code}}' --max-time 10 --resolve {resolve} {url}"
    return run(folder, CONSUMER, command)


def pebble_processes() -> list[str]:
    """Live (not zombie) pebble and pebble-challtestsrv processes on this machine."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            argv = lab.read_cmdline(int(entry.name)).split(b"\0")
            if os.path.basename(argv[0]) in (b"pebble", b"pebble-challtestsrv"):
                found.append(f"{entry.name} {b' '.join(argv).decode()}")
    return found


# --- Pebble and its DNS ------------------------------------------------------------------------


def test_the_directory_answers_over_https_verified_with_the_listener_ca(acme_lab):
    directory = subprocess.run(
        ["curl", "-sS", "--cacert", str(acme_lab.listener_ca), acme_lab.directory_url],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert directory.returncode == 0, directory.stderr
    assert '"newOrder": "https://127.0.0.1:14000/' in directory.stdout
    system_store = subprocess.run(
        ["curl", "-sS", "--cacert", "/etc/ssl/certs/ca-certificates.crt", acme_lab.directory_url],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert system_store.returncode == 60, system_store  # the listener CA is the lab's alone
    assert acme_lab.roots_pem().startswith(b"-----BEGIN CERTIFICATE-----")


def test_the_dns_answers_registered_names_with_their_address_and_nothing_else(acme_lab):
    acme_lab.register("acme-dns-probe.lab.test", "127.0.0.57")
    assert acme_lab.lookup("acme-dns-probe.lab.test") == ["127.0.0.57"]
    assert acme_lab.lookup("never-registered.lab.test") == []
    dig = ["dig", "+short", "@127.0.0.1", "-p", "8053", "acme-dns-probe.lab.test", "A"]
    if os.path.exists("/usr/bin/dig"):  # the same answer through another resolver, over TCP too
        for transport in ("+notcp", "+tcp"):
            answer = subprocess.run([*dig, transport], capture_output=True, text=True, timeout=30)
            assert answer.stdout.split() == ["127.0.0.57"], answer
    acme_lab.unregister("acme-dns-probe.lab.test")
    assert acme_lab.lookup("acme-dns-probe.lab.test") == []


# --- certbot on a lab host, a consumer's trust store -------------------------------------------


def test_certbot_needs_the_listener_ca_then_orders_and_a_consumer_trusts_pebbles_root(
    acme_lab, acme_hosts
):
    for host in (SERVER, CONSUMER):
        acme_lab.untrust(host)
    acme_lab.register(PROBE_NAME, PROBE_ADDRESS)
    refused = run(acme_hosts, SERVER, certbot_order(), sudo=True)
    assert refused[0] != 0 and "CERTIFICATE_VERIFY_FAILED" in refused[1] + refused[2], refused

    acme_lab.trust(SERVER, roots=False, directory=True)
    ordered = run(acme_hosts, SERVER, certbot_order(), sudo=True, timeout=300)
    assert ordered[0] == 0, ordered
    issuer = run(acme_hosts, SERVER, f"openssl x509 -noout -issuer -in {CERTBOT}/etc/live/acme-probe/cert.pem", sudo=True)  # fmt: skip
    assert "Pebble Intermediate CA" in issuer[1], issuer
    assert run(acme_hosts, SERVER, serve_probe(), sudo=True)[0] == 0

    untrusted = consumer_curl(acme_hosts)
    assert untrusted[0] == 60, untrusted  # curl: the peer's certificate is not trusted
    acme_lab.trust(CONSUMER)
    assert consumer_curl(acme_hosts)[:2] == (0, "200")


def test_a_restarted_pebble_gives_the_trusted_consumer_its_new_root_only(acme_lab, acme_hosts):
    acme_lab.wait_for_sole_use()  # another session's orders and roots would go with it
    old_root = acme_lab.roots_pem()
    stop_service(acme_lab.pebble_service())
    assert acme_lab.up(by_tests=True).startswith("started")
    new_root = acme_lab.roots_pem()
    assert new_root != old_root
    stored = run(
        acme_hosts, CONSUMER, "cat /usr/local/share/ca-certificates/mtls-lab-acme-root.crt"
    )
    assert stored[1].encode() == new_root
    # The probe still serves the certificate of the old root: no longer trusted anywhere.
    assert consumer_curl(acme_hosts)[0] == 60


# --- the command line --------------------------------------------------------------------------


def test_inv_lab_up_with_acme_then_lab_down_leaves_no_pebble(acme_lab, acme_hosts):
    env = {"MTLS_DEPLOY_INVENTORY": str(acme_hosts)}  # this module's hosts only, never api1/bob
    acme_lab.wait_for_sole_use()  # lab.down stops Pebble under every session
    acme_lab.unregister(PROBE_NAME)
    out = inv("lab.up", "--with-acme", env=env).stdout
    assert "acme: already running (pebble pid " in out
    assert f"acme: {PROBE_NAME} -> {PROBE_ADDRESS}\n" in out
    assert f"acme: {SERVER} trusts Pebble's root and directory\n" in out
    assert f"acme: {CONSUMER} trusts Pebble's root\n" in out
    assert acme_lab.lookup(PROBE_NAME) == [PROBE_ADDRESS]
    assert "acme " in inv("lab.status", env=env).stdout

    down = inv("lab.down", env=env).stdout
    assert down.endswith("acme: stopped\n"), down
    assert pebble_processes() == []
    assert acme_lab.status() == {"pebble": None, "dns": None}
    assert "acme " not in inv("lab.status", env=env).stdout
    assert inv("lab.down", env=env).stdout.endswith("acme: not running\n")
    acme_lab.up(by_tests=True)  # back for any later module (the fixture stops it at the end)
