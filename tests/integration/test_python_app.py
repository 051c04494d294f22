"""The user's own Flask app behind mTLS (issue 12): examples/flask-orders deployed with
`inv provision` / `inv deploy` onto a python host, served by uWSGI through `current` with a
virtualenv built on the host by pip from the lab's mirrors (mtls_deploy/lab/package_index.py).

Lab host py-api (SSH 127.0.0.1:2340, HTTPS 8540); the caller is client bob of the world's PKI,
from this machine. A redeploy with the same requirements.txt reuses the virtualenv; a release
whose module does not import, or whose pip install fails, is refused in one line with the
Python or pip error, and the running release keeps serving; a rollback switches back."""

import hashlib
import hmac
import json
import shutil
import subprocess

import pytest

from mtls_deploy.pki.bundle import write_client_bundle
from mtls_deploy.pki.store import PkiStore

from .conftest import ROOT, ApiHost, inv, lab_world, needs_lab

pytestmark = needs_lab

PY_API = ApiHost("py-api", 2340, 8540, "python")
SIGNING_KEY = "lab-only-orders-signing-key"
APP_ROOT = "/srv/api"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """py-api provisioned with examples/flask-orders (a copy the tests change), bob's bundle."""
    with lab_world(tmp_path_factory, [PY_API], name="Python App API", passphrase="py-app") as w:
        base = w.inventory.parent
        app = base / "flask-orders"
        shutil.copytree(ROOT / "examples" / "flask-orders", app)
        (w.inventory / "host_vars").mkdir()
        (w.inventory / "host_vars" / "py-api.yml").write_text(
            f"app_src: {app}\npython_wsgi: orders:app\napp_shared: [var]\n"
            "app_environment:\n  ORDERS_SIGNING_KEY: {env: ORDERS_SIGNING_KEY}\n"
        )
        store = PkiStore.open()
        store.issue_client("bob")
        write_client_bundle(store, "bob")
        w.app = app
        w.env = {"MTLS_DEPLOY_INVENTORY": str(w.inventory), "ORDERS_SIGNING_KEY": SIGNING_KEY}
        w.first = inv("provision", "--host", PY_API.name, env=w.env)
        yield w


def call(world, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """(status, JSON) of a request to py-api as bob, from this machine."""
    bundle = world.pki.parent / "dist" / "bob"
    command = [
        "curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}", "-X", method,
        "--resolve", f"{PY_API.server_name}:{PY_API.https_port}:127.0.0.1",
        "--cacert", str(bundle / "api-ca.crt"),
        "--cert", str(bundle / "bob.crt"), "--key", str(bundle / "bob.key"),
    ]  # fmt: skip
    if body is not None:
        command += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
    url = f"https://{PY_API.server_name}:{PY_API.https_port}{path}"
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    text, _, code = out.rpartition("\n")
    return int(code), json.loads(text)


def on_host(world, command: str) -> str:
    """``command``'s stdout as root on py-api (asserting it succeeded)."""
    done = world.sudo(PY_API.name, command)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def current_release(world) -> str:
    return on_host(world, f"basename $(readlink {APP_ROOT}/current)")


def deploy(world, check=True) -> subprocess.CompletedProcess:
    return inv("deploy", "--host", PY_API.name, check=check, env=world.env)


def venvs(world) -> dict[str, str]:
    """{virtualenv: 'inode mtime' of its completion mark}: a rebuilt one changes both."""
    listing = on_host(world, f"cd {APP_ROOT}/venvs && stat -c '%n %i %Y' */.complete")
    return {line.split("/")[0]: line.split(" ", 1)[1] for line in listing.splitlines()}


def test_bob_orders_and_reads_the_stats(world):
    assert "py-api" in world.first.stdout
    assert call(world, "GET", "/orders") == (200, {"client": "bob", "orders": []})
    status, answer = call(world, "POST", "/orders", {"item": "tea", "quantity": 2})
    assert status == 201
    order = answer["order"]
    assert (order["client"], order["item"], order["quantity"]) == ("bob", "tea", 2)
    signed = hmac.new(SIGNING_KEY.encode(), str(order["id"]).encode(), hashlib.sha256)
    assert order["receipt"] == signed.hexdigest()  # app_environment reached the app
    assert call(world, "GET", "/orders")[1]["orders"] == [order]
    assert call(world, "GET", "/admin/stats") == (
        200,
        {"orders": 1, "clients": 1, "release": current_release(world)},
    )
    # The order lives in the shared directory, the app user's, not in the release.
    assert on_host(world, f"stat -c '%U %a' {APP_ROOT}/shared/var/orders.sqlite3").startswith(
        "api-python"
    )


def test_a_second_provision_would_change_nothing(world):
    done = inv("provision", "--host", PY_API.name, "--check", env=world.env)
    assert "changed=0" in done.stdout and "failed=0" in done.stdout, done.stdout


def test_the_app_runs_sandboxed_as_before(world):
    report = on_host(world, "systemd-analyze security --no-pager api-python.service | tail -1")
    assert float(report.split(":")[1].split()[0]) <= 2.0, report
    assert on_host(world, "ps -o user= -C uwsgi-core | sort -u") == "api-python"


# Four threads calling /admin/stats over the FastCGI socket for $1 seconds (as nginx would,
# one connection per request), then "ok <n> bad <n>": run as root on the host.
LOAD = r"""
import socket, struct, sys, threading, time

def record(kind, content):
    return struct.pack("!BBHHBx", 1, kind, 1, len(content), 0) + content

def pair(name, value):
    return bytes([len(name), len(value)]) + name.encode() + value.encode()

PARAMS = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/admin/stats", "DOCUMENT_URI": "/admin/stats",
          "REQUEST_URI": "/admin/stats", "QUERY_STRING": "", "SERVER_NAME": "x",
          "SERVER_PORT": "443", "SERVER_PROTOCOL": "HTTP/1.1", "VERIFIED": "SUCCESS",
          "DN": "CN=bob"}
REQUEST = (record(1, struct.pack("!HB5x", 1, 0))
           + record(4, b"".join(pair(k, v) for k, v in PARAMS.items()))
           + record(4, b"") + record(5, b""))
counts = {"ok": 0, "bad": 0}
stop = time.time() + float(sys.argv[1])

def call():
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(sys.argv[2])
        s.sendall(REQUEST)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return b"Status: 200" in out and b'"release"' in out

def loop():
    while time.time() < stop:
        try:
            counts["ok" if call() else "bad"] += 1
        except OSError:
            counts["bad"] += 1

threads = [threading.Thread(target=loop) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print("ok", counts["ok"], "bad", counts["bad"])
"""


def test_a_restart_and_a_chain_reload_let_every_request_finish(world):
    """die-on-term would cut in-flight requests short on a stop: the unit's ExecStop asks the
    master for a graceful shutdown first; a chain reload replaces workers one at a time."""
    script = (
        f"cat > /tmp/load.py <<'EOF'\n{LOAD}\nEOF\n"
        "python3 /tmp/load.py 8 /run/api-python.sock > /tmp/load.out &\n"
        "sleep 2; systemctl restart api-python.service; sleep 2\n"
        "printf c > /run/api-python/master.fifo; wait; cat /tmp/load.out\n"
    )
    with world.remote(PY_API.name) as connection:
        out = connection.run_script(script, sudo=True, check=True, timeout=60).stdout.split()
    ok, bad = int(out[1]), int(out[3])
    assert (bad, ok > 100) == (0, True), out


def test_a_redeploy_with_the_same_requirements_reuses_the_virtualenv(world):
    before, release = venvs(world), current_release(world)
    world.app.joinpath("orders.py").write_text(
        world.app.joinpath("orders.py").read_text() + "\nVERSION = 2\n"
    )
    done = deploy(world)
    assert "changed" in done.stdout, done.stdout
    assert current_release(world) != release
    assert venvs(world) == before  # same virtualenv, not built again: no pip run
    status, stats = call(world, "GET", "/admin/stats")
    assert (status, stats["release"], stats["orders"]) == (200, current_release(world), 1)


def test_new_requirements_get_a_virtualenv_of_their_own_that_the_new_workers_use(world):
    before = venvs(world)
    (world.flask_venv,) = before  # the one virtualenv so far: Flask's
    requirements, orders = world.app / "requirements.txt", world.app / "orders.py"
    requirements.write_text(requirements.read_text() + "six==1.17.0\n")
    orders.write_text(orders.read_text() + "\nimport six  # in the new virtualenv only\n")
    deploy(world)
    after = venvs(world)
    assert len(after) == 2 and {k: after[k] for k in before} == before
    # A worker that could not import six would never serve: the chain reload would not end.
    status, stats = call(world, "GET", "/admin/stats")
    assert (status, stats["release"], stats["orders"]) == (200, current_release(world), 1)


def refused(world, reason: str) -> None:
    """The deploy fails in one line naming ``reason``; nothing switched, the app still serves."""
    release, before = current_release(world), venvs(world)
    done = deploy(world, check=False)
    print(done.stdout + done.stderr)  # shown with -s: the lines a user sees
    assert done.returncode == 1, done.stdout + done.stderr
    assert reason in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert current_release(world) == release
    assert venvs(world) == before  # a failed build leaves no virtualenv to reuse
    assert not on_host(world, f"ls -d {APP_ROOT}/releases/*.partial 2>/dev/null || true")
    assert call(world, "GET", "/admin/stats")[1]["release"] == release


def test_a_module_that_does_not_import_is_refused_and_the_old_release_serves(world):
    good = world.app.joinpath("orders.py").read_text()
    world.app.joinpath("orders.py").write_text("import no_such_module_here\n" + good)
    try:
        refused(world, "ModuleNotFoundError: No module named 'no_such_module_here'")
    finally:
        world.app.joinpath("orders.py").write_text(good)


def test_a_failing_pip_install_is_refused_and_the_old_release_serves(world):
    requirements = world.app.joinpath("requirements.txt")
    good = requirements.read_text()
    requirements.write_text(good + "no-such-package-mtls-deploy-lab==1.0\n")
    try:
        refused(world, "No matching distribution found for no-such-package-mtls-deploy-lab")
    finally:
        requirements.write_text(good)


def test_a_rollback_switches_back_with_the_virtualenv_it_had(world):
    releases = on_host(world, f"ls {APP_ROOT}/releases").split()
    assert len(releases) == 3 and current_release(world) == releases[-1]
    done = inv("rollback", "--host", PY_API.name, env=world.env)
    assert releases[-2] in done.stdout
    assert current_release(world) == releases[-2]
    status, stats = call(world, "GET", "/admin/stats")
    assert (status, stats["release"], stats["orders"]) == (200, releases[-2], 1)
    venv = on_host(world, f"readlink {APP_ROOT}/current/.venv")
    assert venv == f"../../venvs/{world.flask_venv}"  # not the one with six
