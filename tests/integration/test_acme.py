"""server_cert: acme for real, against the lab's Pebble: a fresh API host orders its server
certificate on the host (Debian's certbot, HTTP-01 through the port-80 server), a consumer's
bundle has no api-ca.crt and its smoke test verifies the server with its system store; a second
provision places no order; certbot's renewal replaces the certificate with no failed request;
a refused order (a name Pebble's DNS does not know) leaves the old certificate serving and says
the ACME error in one line, and the next run after the fix succeeds; with acme_ca_bundle (a
private ACME CA) certbot and the clients trust that bundle, not their system stores.

Hosts and ports of its own: acme1 (SSH 2311, its own address 127.0.0.21: HTTPS on :8511 and
the port-80 server on :80, where Pebble checks HTTP-01) and acmec1 (SSH 2312, login dana, a
consumer without sudo). Pebble: the session's ``acme_lab`` (conftest.py).
"""

import http.client
import json
import os
import re
import shlex
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509

from mtls_deploy import inventory, lab
from mtls_deploy.pki.store import PkiStore

from .conftest import ROOT, inv, needs_lab, pki_environment, remote

pytestmark = [*needs_lab, pytest.mark.slow]

API, CONSUMER = "acme1", "acmec1"
ADDRESS, HTTPS_PORT = "127.0.0.21", 8511
NAME = "acme1.lab.test"
ALIAS = "www.acme1.lab.test"
UNKNOWN = "nowhere.acme1.lab.test"  # never in Pebble's DNS until the fix
LIVE = "/etc/letsencrypt/live/api"


@pytest.fixture(scope="module")
def world(tmp_path_factory, acme_lab):
    """The module's PKI and inventory, acme1 and acmec1 fresh; Pebble's DNS knows acme1's
    name; acme1 trusts Pebble's directory and root, acmec1 Pebble's root, as the lab does."""
    base = tmp_path_factory.mktemp("acme-world")
    folder = write_inventory(base / "inventory", acme_lab.directory_url)
    with pki_environment(base, "acme-test"):
        PkiStore().init(name="ACME Test API", key_type="ec")
        hosts = lab.hosts_from_inventory(inventory.load(folder).select())
        lab.reset(hosts)
        try:
            acme_lab.register(NAME, ADDRESS)
            acme_lab.trust(API, roots=True, directory=True)
            acme_lab.trust(CONSUMER)
            yield folder
        finally:
            for host in (API, CONSUMER):
                acme_lab.untrust(host)
            acme_lab.unregister(NAME)
            lab.down(hosts)


def write_inventory(folder: Path, directory: str) -> Path:
    (folder / "group_vars").mkdir(parents=True)
    (folder / "host_vars").mkdir()
    (folder / "hosts.yml").write_text(
        "all:\n"
        "  vars: {ansible_host: 127.0.0.1, lab: true}\n"
        "  children:\n"
        "    api:\n      hosts:\n"
        f"        {API}: {{ansible_port: 2311, ansible_user: deploy, ansible_become: true}}\n"
        "    consumers:\n      hosts:\n"
        f"        {CONSUMER}: {{ansible_port: 2312, ansible_user: dana}}\n"
    )
    (folder / "host_vars" / f"{API}.yml").write_text(
        f"server_name: {NAME}\nhttps_listen: {ADDRESS}\nhttps_port: {HTTPS_PORT}\n"
        f"server_cert: acme\nacme_directory: {directory}\nacme_email: ops@example.test\n"
    )
    (folder / "group_vars" / "all.yml").write_text(
        f"ansible_ssh_private_key_file: {ROOT}/.lab/id_ed25519\n"
        f"ssh_known_hosts_file: {ROOT}/.lab/known_hosts\n"
    )
    return folder


def set_api_vars(world: Path, **values) -> None:
    """Rewrite acme1's host_vars with ``values`` on top of the module's (None: unset)."""
    path = world / "host_vars" / f"{API}.yml"
    current = dict(line.split(": ", 1) for line in path.read_text().splitlines())
    current.update({k: v for k, v in values.items() if v is not None})
    for key in [k for k, v in values.items() if v is None]:
        current.pop(key, None)
    path.write_text("".join(f"{k}: {v}\n" for k, v in current.items()))


def provision(world: Path):
    return inv("provision", "--host", API, check=False, env=inventory_env(world))


def inventory_env(world: Path) -> dict:
    return {"MTLS_DEPLOY_INVENTORY": str(world)}


def sudo(world: Path, host: str, command: str, timeout=300, root=True) -> str:
    """``command``'s stdout on ``host`` (as root, or as the login user); it must succeed."""
    with remote(world, host) as connection:
        result = connection.run(command, sudo=root, timeout=timeout)
    assert result.exit_status == 0, (command, result.stdout, result.stderr)
    return result.stdout


def served_certificate() -> x509.Certificate:
    """The certificate nginx sends on acme1's HTTPS port (no client certificate needed to see it)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    raw = socket.create_connection((ADDRESS, HTTPS_PORT), timeout=10)
    with context.wrap_socket(raw, server_hostname=NAME) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def names_of(cert: x509.Certificate) -> set[str]:
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(alt.get_values_for_type(x509.DNSName))


def pebble_orders(acme_lab) -> int:
    """New orders Pebble has received since it started (its log: one POST per order)."""
    return len(re.findall(r"POST /order-plz", acme_lab.pebble_log.read_text()))


def lineage_state(world: Path) -> str:
    """mtime and serial of the lineage's files: a new order changes both."""
    return sudo(world, API, f"stat -L -c '%n %Y' {LIVE}/*.pem /etc/letsencrypt/renewal/api.conf; "
                            f"openssl x509 -noout -serial -in {LIVE}/cert.pem")  # fmt: skip


def smoke(world: Path):
    return inv(
        "smoke-test", "--host", API, "--from", CONSUMER, check=False, env=inventory_env(world)
    )


# --- (1) a fresh host gets Pebble's certificate; the consumer needs no --cacert ----------------


def test_a_fresh_host_gets_a_pebble_certificate_and_the_consumer_trusts_it_with_its_store(
    world, acme_lab
):
    done = provision(world)
    assert done.returncode == 0, done.stdout + done.stderr
    served = served_certificate()
    assert "Pebble Intermediate CA" in served.issuer.rfc4514_string()
    assert names_of(served) == {NAME}
    site = sudo(world, API, "cat /etc/nginx/conf.d/api.conf")
    assert f"ssl_certificate {LIVE}/fullchain.pem;" in site
    assert "ssl_client_certificate /etc/nginx/mtls/client-ca.crt;" in site
    assert sudo(world, API, "systemctl is-enabled certbot.timer").strip() == "enabled"

    issued = inv("issue-client", "--name", CONSUMER, env=inventory_env(world))
    assert issued.returncode == 0, issued.stdout + issued.stderr
    listing = sudo(world, CONSUMER, "ls .mtls/api; cat .mtls/api/README.txt", root=False)
    assert "api-ca.crt" not in listing and "--cacert" not in listing, listing
    assert f"curl --cert {CONSUMER}.crt --key {CONSUMER}.key https://" in listing
    checked = smoke(world)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_port_80_server_serves_challenges_and_redirects_the_rest(world):
    connection = http.client.HTTPConnection(ADDRESS, 80, timeout=10)
    connection.request("GET", "/whoami?x=1", headers={"Host": NAME})
    answer = connection.getresponse()
    assert answer.status == 301
    assert answer.getheader("Location") == f"https://{NAME}:{HTTPS_PORT}/whoami?x=1"
    answer.read()
    connection.request("GET", "/.well-known/acme-challenge/none", headers={"Host": NAME})
    assert connection.getresponse().status == 404  # served from the webroot, not redirected


# --- (2) a second provision places no order -----------------------------------------------------


def test_a_second_provision_places_no_new_order(world, acme_lab):
    orders, before = pebble_orders(acme_lab), lineage_state(world)
    done = provision(world)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\bchanged=0\b", done.stdout), done.stdout
    assert pebble_orders(acme_lab) == orders
    assert lineage_state(world) == before


# --- (4) certbot's renewal: a new certificate, and no failed request -----------------------------


class Caller(threading.Thread):
    """Calls /whoami with the consumer's certificate every 0.2 s, verifying the server with
    Pebble's root, until stopped; counts requests and failures."""

    def __init__(self, bundle: Path, roots: Path):
        super().__init__(daemon=True)
        self.context = ssl.create_default_context(cafile=str(roots))
        self.context.load_cert_chain(bundle / f"{CONSUMER}.crt", bundle / f"{CONSUMER}.key")
        self.requests, self.failures, self.stopping = 0, [], threading.Event()

    def run(self):
        while not self.stopping.is_set():
            self.requests += 1
            try:
                self.call()
            except (OSError, AssertionError) as error:
                self.failures.append(repr(error))
            time.sleep(0.2)

    def call(self):
        raw = socket.create_connection((ADDRESS, HTTPS_PORT), timeout=5)
        connection = http.client.HTTPSConnection(NAME, HTTPS_PORT, context=self.context)
        connection.sock = self.context.wrap_socket(raw, server_hostname=NAME)
        connection.request("GET", "/whoami")
        answer = connection.getresponse()
        assert answer.status == 200, answer.status
        connection.close()


def test_certbots_renewal_replaces_the_certificate_without_a_failed_request(
    world, acme_lab, tmp_path
):
    roots = tmp_path / "pebble-root.pem"
    roots.write_bytes(acme_lab.roots_pem())
    bundle = Path(os.environ["MTLS_DEPLOY_DIST_DIR"]) / CONSUMER
    old = served_certificate().serial_number
    caller = Caller(bundle, roots)
    caller.start()
    try:
        time.sleep(1)
        sudo(world, API, "certbot renew --force-renewal --no-random-sleep-on-renew", timeout=600)
        time.sleep(1.5)
    finally:
        caller.stopping.set()
        caller.join(10)
    assert served_certificate().serial_number != old
    assert caller.requests >= 10 and caller.failures == [], (caller.requests, caller.failures)


# --- (5) a refused order: the old certificate keeps serving, one line says why ------------------


def test_a_refused_order_keeps_the_old_certificate_and_says_the_acme_error(world, acme_lab):
    old = served_certificate().serial_number
    set_api_vars(world, server_aliases=f"[{UNKNOWN}]")
    done = provision(world)
    assert done.returncode != 0
    said = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if "urn:ietf:params:acme:error:" in line
    ]
    assert len(said) == 1 and UNKNOWN in said[0], done.stdout + done.stderr
    assert re.search(r"urn:ietf:params:acme:error:\w+: \S", said[0]), said
    assert "Traceback" not in done.stderr
    assert served_certificate().serial_number == old
    assert f"server_name {NAME};" in sudo(world, API, "cat /etc/nginx/conf.d/api.conf")

    acme_lab.register(UNKNOWN, ADDRESS)  # the fix: the name now resolves
    try:
        again = provision(world)
        assert again.returncode == 0, again.stdout + again.stderr
        assert names_of(served_certificate()) == {NAME, UNKNOWN}  # the same lineage, expanded
        assert sudo(world, API, "ls /etc/letsencrypt/live").split() == ["README", "api"]
    finally:
        set_api_vars(world, server_aliases=None)
        acme_lab.unregister(UNKNOWN)


# --- (3) a private ACME CA: acme_ca_bundle, for certbot and in the bundles ----------------------


def test_a_private_acme_ca_bundle_is_what_certbot_and_the_clients_trust(world, acme_lab, tmp_path):
    bundle_pem = tmp_path / "private-acme-ca.pem"
    bundle_pem.write_bytes(acme_lab.roots_pem() + acme_lab.listener_ca.read_bytes())
    for host in (API, CONSUMER):  # no system store trusts Pebble now: only the bundle does
        acme_lab.untrust(host)
    acme_lab.register(ALIAS, ADDRESS)
    set_api_vars(world, acme_ca_bundle=str(bundle_pem), server_aliases=f"[{ALIAS}]")
    try:
        done = provision(world)  # the alias: an order, trusting the directory through the bundle
        assert done.returncode == 0, done.stdout + done.stderr
        assert names_of(served_certificate()) == {NAME, ALIAS}
        drop_in = sudo(world, API, "cat /etc/systemd/system/certbot.service.d/mtls-deploy-ca.conf")
        assert "REQUESTS_CA_BUNDLE=/etc/mtls-deploy/acme/ca-bundle.pem" in drop_in

        renewed = inv("renew-client", "--name", CONSUMER, env=inventory_env(world))
        assert renewed.returncode == 0, renewed.stdout + renewed.stderr
        shipped = sudo(world, CONSUMER, "cat .mtls/api/api-ca.crt", root=False)
        assert shipped.encode() == bundle_pem.read_bytes()
        checked = smoke(world)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        acme_lab.trust(API, roots=True, directory=True)
        acme_lab.trust(CONSUMER)
        acme_lab.unregister(ALIAS)


def test_the_deploy_hook_reloads_only_a_configuration_nginx_t_accepts(world):
    hook = "/etc/letsencrypt/renewal-hooks/deploy/mtls-deploy-nginx"
    pid = sudo(world, API, "cat /run/nginx.pid").strip()
    sudo(world, API, "echo 'broken;' > /etc/nginx/conf.d/zz-broken.conf")
    try:
        with remote(world, API) as connection:
            refused = connection.run(shlex.quote(hook), sudo=True)
        assert refused.exit_status != 0 and "nginx -t failed" in refused.stderr
    finally:
        sudo(world, API, "rm -f /etc/nginx/conf.d/zz-broken.conf")
    assert sudo(world, API, "systemctl is-active nginx").strip() == "active"
    assert sudo(world, API, "cat /run/nginx.pid").strip() == pid


# --- switching server_cert: the site keeps serving ------------------------------------------------


def test_switching_to_private_and_back_keeps_the_site_serving(world, acme_lab, tmp_path):
    store = PkiStore.open()
    trusted = tmp_path / "pebble-and-ours.pem"
    trusted.write_bytes(acme_lab.roots_pem() + store.server_ca_pem())
    ours = x509.load_pem_x509_certificate(store.server_ca_pem()).subject
    orders = pebble_orders(acme_lab)
    caller = Caller(Path(os.environ["MTLS_DEPLOY_DIST_DIR"]) / CONSUMER, trusted)
    caller.start()
    try:
        set_api_vars(world, server_cert="private")
        done = provision(world)
        assert done.returncode == 0, done.stdout + done.stderr
        assert served_certificate().issuer == ours
        assert sudo(world, API, "systemctl is-active certbot.timer || true").strip() == "inactive"
        assert "api-http.conf" not in sudo(world, API, "ls /etc/nginx/conf.d")

        set_api_vars(world, server_cert="acme")
        back = provision(world)
        assert back.returncode == 0, back.stdout + back.stderr
        assert "Pebble Intermediate CA" in served_certificate().issuer.rfc4514_string()
        assert pebble_orders(acme_lab) == orders  # the lineage still fits: no order
    finally:
        caller.stopping.set()
        caller.join(10)
        set_api_vars(world, server_cert="acme")
    assert caller.requests >= 10 and caller.failures == [], (caller.requests, caller.failures)


# --- status, maintain and issue-client --csr follow the ACME certificate -----------------------


def test_status_maintain_and_csr_bundles_follow_the_acme_certificate(world, acme_lab):
    env = inventory_env(world)
    set_api_vars(world, acme_ca_bundle=None)  # the consumers' system store: no api-ca.crt
    done = provision(world)  # a fresh world's first order, else no order (the lineage fits)
    assert done.returncode == 0, done.stdout + done.stderr
    sudo(world, CONSUMER, "rm -f .mtls/api/api-ca.crt .mtls/api/current/api-ca.crt", root=False)
    csr = inv("issue-client", "--name", CONSUMER, "--csr", "--reissue", check=False, env=env)
    assert csr.returncode == 0, csr.stdout + csr.stderr
    listing = sudo(world, CONSUMER, "ls -R .mtls/api", root=False)
    assert f"{CONSUMER}.key" in listing and "api-ca.crt" not in listing, listing

    lineage, orders = lineage_state(world), pebble_orders(acme_lab)
    kept = inv("maintain", check=False, env=env)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    line = next(x for x in kept.stdout.splitlines() if f"server certificate of {API}:" in x)
    assert re.search(r"ok +server certificate of acme1: \d+d( \d+h)? left", line), line
    assert "certbot.timer renews it on the host" in line
    assert lineage_state(world) == lineage and pebble_orders(acme_lab) == orders  # renews nothing

    status = inv("status", "--json", check=False, env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    rows = json.loads(status.stdout)["checks"]
    served = next(r for r in rows if r["kind"] == "server-cert" and r["host"] == API)
    assert "Pebble Intermediate CA" in served["detail"] and served["days_left"] > 30, served
    assert "PKI" not in served["detail"]
