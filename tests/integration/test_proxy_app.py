"""backend: proxy on the lab (issue 12): examples/fastapi-orders under uvicorn behind nginx,
deployed by the real `inv provision` / `inv deploy` / `inv rollback` onto px-api (SSH
127.0.0.1:2350, HTTPS 8550; no other port). Identity reaches the app as headers only nginx sets;
a redeploy starts the new instance beside the old one and switches without an nginx reload; a
proxy_command that exits at once switches nothing; the sandbox's exposure score.

The module shares one world: provisioned once, then redeployed and re-provisioned in file
order (each test says what state it leaves)."""

import http.client
import json
import re
import shutil
import ssl
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from mtls_deploy import inventory, lab
from mtls_deploy.pki.bundle import write_client_bundle
from mtls_deploy.pki.store import PkiStore

from .conftest import CLIENT, ROOT, ApiHost, World, inv, lab_world, needs_lab

pytestmark = needs_lab

PX_API = ApiHost("px-api", 2350, 8550, "proxy")
EXAMPLE = ROOT / "examples" / "fastapi-orders"
SECOND = "bob"  # a second client, for orders kept per client
UNIT = "api-proxy"
RELEASES = "/srv/api/releases"
# Exits at once, with a reason on stderr, as a mistyped option would.
EXITS_AT_ONCE = ["{venv}/bin/python", "-c", "import sys; sys.exit('no such option: --uds-typo')"]


@dataclass
class Px:
    """The world, the app's tree (a copy this module changes) and the provision's output."""

    world: World
    app: Path
    provisioned: subprocess.CompletedProcess

    @property
    def env(self) -> dict:
        return {"MTLS_DEPLOY_INVENTORY": str(self.world.inventory)}

    def host_vars(self, **values) -> None:
        """px-api's host_vars file: the app, its shared dir, anonymous requests let through
        (to see what reaches the app without a certificate), and ``values``."""
        base = {"app_src": str(self.app), "app_shared": ["var"], "client_verify": "optional"}
        folder = self.world.inventory / "host_vars"
        folder.mkdir(exist_ok=True)
        (folder / f"{PX_API.name}.yml").write_text(yaml.safe_dump({**base, **values}))

    def inv(self, *args, check=True) -> subprocess.CompletedProcess:
        return inv(*args, "--host", PX_API.name, check=check, env=self.env)

    def sudo(self, command: str) -> str:
        return self.world.sudo(PX_API.name, command).stdout

    def instance(self) -> str:
        """The instance the current release's socket link points at."""
        target = self.sudo("readlink /srv/api/current/.proxy.sock").strip()
        return target.removesuffix("/app.sock").rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def px(tmp_path_factory):
    """px-api fresh, provisioned by `inv provision` with app_src set (which deploys it)."""
    app = tmp_path_factory.mktemp("app") / "orders"
    shutil.copytree(EXAMPLE, app, ignore=shutil.ignore_patterns("__pycache__", "var"))
    with lab_world(tmp_path_factory, [PX_API], name="Proxy Test API", passphrase="px-test") as w:
        store = PkiStore.open()
        store.issue_client(SECOND)
        write_client_bundle(store, SECOND)
        world = Px(w, app, subprocess.CompletedProcess([], 0))
        world.host_vars()
        world.provisioned = world.inv("provision", check=False)
        yield world


def call(px: Px, path: str, client: str | None = CLIENT, method="GET", body=None, headers=()):
    """(status, JSON body) of an HTTPS request from this machine, as ``client`` (None: no
    certificate)."""
    bundle = px.world.bundle.parent
    command = ["curl", "-sS", "--max-time", "20", "-w", "\n%{http_code}", "-X", method,
               "--resolve", f"{PX_API.server_name}:{PX_API.https_port}:127.0.0.1",
               "--cacert", str(px.world.bundle / "api-ca.crt")]  # fmt: skip
    if client:
        command += ["--cert", str(bundle / client / f"{client}.crt")]
        command += ["--key", str(bundle / client / f"{client}.key")]
    if body is not None:
        command += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
    for header in headers:
        command += ["-H", header]
    url = f"https://{PX_API.server_name}:{PX_API.https_port}{path}"
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    text, _, code = out.rpartition("\n")
    return int(code), json.loads(text) if text.startswith("{") else text


def certificate(px: Px, client: str = CLIENT) -> x509.Certificate:
    bundle = px.world.bundle.parent / client / f"{client}.crt"
    return x509.load_pem_x509_certificate(bundle.read_bytes())


# --- the first deploy ----------------------------------------------------------------------------


def test_provision_deploys_the_app_which_answers_through_nginx(px):
    assert px.provisioned.returncode == 0, px.provisioned.stdout + px.provisioned.stderr
    first = re.search(
        r"release (\d{8}T\d{6}Z-[0-9a-f]{12})\s+\(first release\)", px.provisioned.stdout
    )
    assert first, px.provisioned.stdout
    code, body = call(px, "/health")
    assert code == 200 and body == {"status": "ok", "release": first.group(1)}
    assert px.instance() == body["release"]  # the first instance is named after its release
    assert call(px, "/orders") == (200, {"client": CLIENT, "orders": []})


def test_identity_headers_reach_the_app_as_nginx_sets_them(px):
    cert = certificate(px)
    code, body = call(px, "/whoami")
    assert code == 200 and body["client"] == CLIENT
    claims = {name.lower(): value for name, value in body["identity_headers"].items()}
    assert claims["x-client-verify"] == "SUCCESS"
    assert claims["x-client-dn"] == "O=Example\\, Inc.,CN=alice"  # RFC 2253, escapes kept
    assert claims["x-client-issuer-dn"] == "O=Proxy Test API,CN=Proxy Test API client CA"
    assert int(claims["x-client-serial"], 16) == cert.serial_number
    assert claims["x-client-serial"] == claims["x-client-serial"].upper()
    assert claims["x-client-fingerprint"] == cert.fingerprint(hashes.SHA1()).hex()
    end = datetime.strptime(claims["x-client-not-after"], "%b %d %H:%M:%S %Y GMT")
    assert end.replace(tzinfo=UTC) == cert.not_valid_after_utc
    assert sorted(claims) == sorted(
        ["x-client-verify", "x-client-dn", "x-client-issuer-dn", "x-client-serial",
         "x-client-fingerprint", "x-client-not-after"]
    )  # fmt: skip


FORGED = [
    "X-Client-DN: CN=mallory",
    "x-client-verify: SUCCESS",
    "X-CLIENT-SERIAL: 01",
    "X_Client_DN: CN=mallory",  # WSGI would read it as X-Client-DN: nginx drops it
    "X-Client-Extra: CN=mallory",
]


def test_identity_a_client_sends_is_never_believed(px):
    code, body = call(px, "/whoami", headers=FORGED)
    assert code == 200 and body["client"] == CLIENT
    claims = {name.lower(): value for name, value in body["identity_headers"].items()}
    assert claims["x-client-dn"] == "O=Example\\, Inc.,CN=alice"
    assert claims["x-client-serial"] != "01"
    assert "x_client_dn" not in claims
    assert "mallory" not in json.dumps(claims).replace(claims.get("x-client-extra", ""), "")


def test_without_a_certificate_the_app_sees_only_verify_none(px):
    code, body = call(px, "/whoami", client=None, headers=FORGED[:4])
    assert code == 200 and body == {"client": None, "identity_headers": {"x-client-verify": "NONE"}}
    assert call(px, "/orders", client=None, headers=FORGED)[0] == 401


def test_orders_are_kept_per_client_in_the_shared_directory(px):
    assert call(px, "/orders", method="POST", body={"item": "tea", "quantity": 2})[0] == 201
    assert call(px, "/orders", SECOND, "POST", {"item": "cake", "quantity": 1})[0] == 201
    assert call(px, "/orders", method="POST", body={"item": "", "quantity": 0})[0] == 422
    code, mine = call(px, "/orders")
    assert code == 200 and [o["item"] for o in mine["orders"]] == ["tea"]
    assert [o["item"] for o in call(px, "/orders", SECOND)[1]["orders"]] == ["cake"]
    code, stats = call(px, "/admin/stats")
    assert code == 200 and stats["orders"] == 2
    assert stats["clients"] == {
        CLIENT: {"orders": 1, "quantity": 2},
        SECOND: {"orders": 1, "quantity": 1},
    }
    listing = px.sudo("ls -l /srv/api/shared/var/")
    assert "orders.sqlite3" in listing and " api-proxy " in listing


# --- switches -------------------------------------------------------------------------------


def nginx_processes(px: Px) -> str:
    """nginx's master and worker pids: a reload would replace the workers."""
    return px.sudo("pgrep -d, nginx").strip()


def get_on(connection: http.client.HTTPSConnection, path: str) -> dict:
    connection.request("GET", path, headers={"Host": PX_API.server_name})
    response = connection.getresponse()
    assert response.status == 200
    return json.loads(response.read())


def test_redeploy_starts_the_new_instance_beside_the_old_and_needs_no_reload(px):
    """A keep-alive connection opened before the deploy gets the new release's answers after
    it; nginx's processes are the same (no reload); the old instance is stopped and disabled."""
    connection = http.client.HTTPSConnection(
        "127.0.0.1", PX_API.https_port, context=client_context(px)
    )
    old = get_on(connection, "/health")["release"]
    port = connection.sock.getsockname()[1]
    before = nginx_processes(px)
    (px.app / "VERSION").write_text("2\n")
    deployed = px.inv("deploy")
    assert re.search(rf"release \S+ \(was {old}\)|was {old}", deployed.stdout), deployed.stdout
    new = get_on(connection, "/health")["release"]
    assert connection.sock.getsockname()[1] == port  # the same TCP and TLS connection
    connection.close()
    assert new != old and px.instance() == new
    assert nginx_processes(px) == before
    states = px.sudo(f"systemctl is-active {UNIT}@{new}.service {UNIT}@{old}.service; true")
    assert states.split() == ["active", "inactive"]
    enabled = px.sudo(f"systemctl is-enabled {UNIT}@{new}.service {UNIT}@{old}.service; true")
    assert enabled.split()[0] == "enabled" and enabled.split()[1] != "enabled"
    assert [o["item"] for o in call(px, "/orders")[1]["orders"]] == ["tea"]  # shared state kept
    same_venv = px.sudo(f"readlink {RELEASES}/{old}/.venv {RELEASES}/{new}/.venv").split()
    assert same_venv[0] == same_venv[1]  # same requirements.txt: the virtualenv reused


def client_context(px: Px) -> ssl.SSLContext:
    bundle = px.world.bundle
    context = ssl.create_default_context(cafile=str(bundle / "api-ca.crt"))
    context.load_cert_chain(bundle / f"{CLIENT}.crt", bundle / f"{CLIENT}.key")
    context.check_hostname = False  # connected by address; the name goes in Host
    return context


def test_rollback_starts_the_previous_release_again(px):
    current = call(px, "/health")[1]["release"]
    releases = px.sudo(f"ls {RELEASES}").split()
    back = px.inv("rollback")
    previous = [r for r in releases if r != current][-1]
    assert call(px, "/health")[1]["release"] == previous, back.stdout
    assert px.sudo(f"systemctl is-active {UNIT}@{current}.service; true").strip() == "inactive"
    px.inv("deploy")  # forward again: the newest tree (already on the host, not rebuilt)
    assert call(px, "/health")[1]["release"] == current


SLOW_ROUTE = """

@app.get("/slow")
async def slow() -> dict:
    import asyncio

    await asyncio.sleep(8)  # longer than a deploy takes to reach the old instance's stop
    return {"slept": 8, "release": Path.cwd().name}
"""


def test_a_request_in_flight_at_the_switch_finishes_on_the_old_instance(px):
    """The old instance is stopped only after its in-flight requests finish (SIGTERM: uvicorn
    drains, within proxy_stop_timeout), while new requests already reach the new release."""
    from concurrent.futures import ThreadPoolExecutor

    app = px.app / "app.py"
    example = app.read_text()
    app.write_text(example + SLOW_ROUTE)
    try:
        old = release_of(px.inv("deploy"))
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(lambda: (call(px, "/slow"), time.time()))
            time.sleep(1)  # the request is in the old instance now
            app.write_text(example + SLOW_ROUTE + "\n# the next release\n")
            new = release_of(px.inv("deploy"))
            assert call(px, "/health")[1]["release"] == new != old
            answer, answered_at = slow.result(timeout=30)
        assert answer == (200, {"slept": 8, "release": old})
        journal = px.sudo(f"journalctl -q -o short-unix --no-pager -u {UNIT}@{old}.service")
        stopping = [line for line in journal.splitlines() if "Stopping" in line]
        assert stopping, journal
        stopping_since = float(stopping[-1].split()[0])  # the lab shares this machine's clock
        assert stopping_since < answered_at  # stopped while the request was in flight
        assert px.sudo(f"systemctl is-active {UNIT}@{old}.service; true").strip() == "inactive"
    finally:
        app.write_text(example)
        px.inv("deploy")


def release_of(done: subprocess.CompletedProcess) -> str:
    """The release a deploy switched to, from its output."""
    found = re.search(r"release (\d{8}T\d{6}Z-[0-9a-f]{12})", done.stdout)
    assert found, done.stdout
    return found.group(1)


def test_a_proxy_command_that_exits_at_once_switches_nothing(px):
    """New settings for the current release (a provision): the new instance exits, the run
    fails in one line, the old instance keeps serving; a second run fails again (the staged
    settings went back to the running instance's, so the bad ones are new again)."""
    serving = px.instance()
    px.host_vars(proxy_command=EXITS_AT_ONCE)
    for _ in range(2):
        refused = px.inv("provision", check=False)
        assert refused.returncode != 0, refused.stdout + refused.stderr
        assert re.search(
            r"failed\s+px-api\s+handler restart proxy instances\s+\(api-proxy@\S+\.service exited "
            r"before answering GET /health: no such option: --uds-typo\)",
            refused.stdout,
        ), refused.stdout
        assert "Traceback" not in refused.stdout + refused.stderr
        assert px.instance() == serving and call(px, "/health")[0] == 200
    px.host_vars()
    assert px.inv("provision").returncode == 0
    assert px.instance() == serving


def test_a_server_that_never_answers_is_stopped_after_proxy_start_timeout(px):
    serving = px.instance()
    px.host_vars(proxy_command=["/bin/sleep", "600"], proxy_start_timeout=2)
    refused = px.inv("provision", check=False)
    assert re.search(
        r"\(api-proxy@\S+\.service did not answer GET /health within 2s\)", refused.stdout
    ), refused.stdout
    assert px.instance() == serving and call(px, "/health")[0] == 200
    assert "sleep" not in px.sudo("ps -eo cmd")  # the new instance was stopped
    px.host_vars()
    px.inv("provision")


def test_a_release_whose_server_exits_at_once_is_not_switched(px):
    serving, app = px.instance(), (px.app / "app.py").read_text()
    (px.app / "app.py").write_text('raise SystemExit("orders: DATABASE_URL is not set")\n' + app)
    try:
        refused = px.inv("deploy", check=False)
    finally:
        (px.app / "app.py").write_text(app)
    assert refused.returncode != 0, refused.stdout
    assert re.search(
        r"not switched at start: api-proxy@\S+ exited before answering GET /health: "
        r"orders: DATABASE_URL is not set",
        refused.stdout,
    ), refused.stdout
    assert px.instance() == serving and call(px, "/health")[0] == 200
    assert px.inv("deploy").stdout.count("unchanged") == 1  # the tree that serves is current


def test_a_failing_pip_install_is_refused_before_the_switch(px):
    serving = px.instance()
    requirements = (px.app / "requirements.txt").read_text()
    (px.app / "requirements.txt").write_text(requirements + "no-such-package-mtls-deploy==1.0\n")
    try:
        refused = px.inv("deploy", check=False)
    finally:
        (px.app / "requirements.txt").write_text(requirements)
    assert refused.returncode != 0, refused.stdout
    assert "refused at build: ERROR: No matching distribution found for no-such-package" in (
        refused.stdout
    )
    assert px.instance() == serving and call(px, "/health")[0] == 200


# Writes what it was given to var/, then becomes uvicorn on the socket (argv[1]).
RECORD_AND_SERVE = (
    "import json, os, sys; "
    "open('var/given.json', 'w').write(json.dumps([sys.argv[2:], os.environ.get('GREETING')])); "
    "os.execv(sys.executable, [sys.executable, '-m', 'uvicorn', '--uds', sys.argv[1], 'app:app'])"
)
AWKWARD = ["two words", 'say "hi"', "it's", "$HOME ${PATH}", "50% %i %n", "back\\slash \\n", ";"]


def test_command_arguments_and_environment_reach_the_server_as_written(px):
    """systemd would split, unquote, expand $VARS and %specifiers: the role's quoting undoes
    all of it; {release} is the release's directory."""
    command = ["{venv}/bin/python", "-c", RECORD_AND_SERVE, "{socket}", *AWKWARD, "{release}/x"]
    greeting = 'a "b" 100% $x \\ it\'s'
    px.host_vars(proxy_command=command, proxy_environment={"GREETING": greeting})
    px.inv("provision")
    given, environment = json.loads(px.sudo("cat /srv/api/shared/var/given.json"))
    release = call(px, "/health")[1]["release"]
    assert given == [*AWKWARD, f"{RELEASES}/{release}/x"]
    assert environment == greeting
    verify = px.world.sudo(PX_API.name, f"systemd-analyze verify {UNIT}@{px.instance()}.service")
    assert verify.returncode == 0 and UNIT not in verify.stderr, verify.stderr


def exposure(px: Px) -> tuple[float, str]:
    unit = f"{UNIT}@{px.instance()}.service"
    report = px.sudo(f"systemd-analyze security --no-pager {unit}")
    found = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", report)
    assert found, report
    return float(found.group(1)), report


def test_sandbox_scores_at_most_2_and_relaxations_raise_it(px):
    score, report = exposure(px)
    assert score <= 2.0, report
    assert "✗ MemoryDenyWriteExecute=" not in report
    pid = px.sudo(f"systemctl show -p MainPID --value {UNIT}@{px.instance()}.service").strip()
    status = px.sudo(f"cat /proc/{pid}/status")
    assert re.search(r"^NoNewPrivs:\s+1$", status, re.M) and re.search(
        r"^Seccomp:\s+2$", status, re.M
    )
    px.host_vars(proxy_hardening=["jit", "network"])
    px.inv("provision")
    relaxed, report = exposure(px)
    assert "✗ MemoryDenyWriteExecute=" in report and relaxed > score, report
    assert call(px, "/health")[0] == 200


def test_mtls_routes_guard_the_admin_path_before_the_app(px):
    px.host_vars(mtls_routes=[{"path": "/admin", "allow": {"names": [CLIENT]}}])
    px.inv("provision")
    code, refused = call(px, "/admin/stats", SECOND)
    assert code == 403 and refused["rule"] == "/admin", refused
    assert call(px, "/orders", SECOND)[0] == 200
    assert call(px, "/admin/stats")[0] == 200


def test_the_current_instance_starts_at_boot(px):
    serving = px.instance()
    hosts = lab.hosts_from_inventory(inventory.load(px.world.inventory).select())
    lab.down(hosts)
    lab.up(hosts, ROOT / ".lab")
    for _ in range(100):  # nginx and the instance start in parallel after boot
        if subprocess.run(["curl", "-sf", "-o", "/dev/null", "-k", "--max-time", "2",
                           f"https://127.0.0.1:{PX_API.https_port}/health"]).returncode == 0:  # fmt: skip
            break
        time.sleep(0.2)
    assert call(px, "/health")[0] == 200 and px.instance() == serving
