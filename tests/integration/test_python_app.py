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
import shlex
import shutil
import subprocess

import pytest

from mtls_deploy.pki.bundle import write_client_bundle
from mtls_deploy.pki.store import PkiStore
from mtls_deploy.release.instances import INSTANCES

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


def instance_unit(world) -> str:
    """The unit of the current release's instance: its socket link names it."""
    socket = on_host(world, f"readlink {APP_ROOT}/current/.python.sock")
    assert socket.startswith("/run/api-python/") and socket.endswith("/app.sock"), socket
    return f"api-python@{socket.split('/')[3]}.service"


def main_pid(world) -> str:
    return on_host(world, f"systemctl show -p MainPID --value {instance_unit(world)}")


def test_the_app_runs_sandboxed_as_before(world):
    unit = instance_unit(world)
    report = on_host(world, f"systemd-analyze security --no-pager {unit} | tail -1")
    assert float(report.split(":")[1].split()[0]) <= 2.0, report
    assert on_host(world, "ps -o user= -C uwsgi-core | sort -u") == "api-python"
    # the built-in app's socket-activated service is not there
    assert on_host(world, "systemctl is-active api-python.socket api-python.service || true") in (
        "inactive\ninactive"
    )


# Four threads calling /admin/stats over the FastCGI socket for $1 seconds (as nginx would,
# one connection per request), then "ok <n> bad <n> unread <n>": run as root on the host.
# "unread": the connection reset before any byte of the answer, which on a unix socket means
# the worker closed it with the request still unread in its queue (uWSGI's reload race: nginx
# sends such a GET once more); a request cut short after the worker read it ends in EOF: bad.
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
counts = {"ok": 0, "bad": 0, "unread": 0}
stop = time.time() + float(sys.argv[1])

def call():
    out = b""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(sys.argv[2])
        try:
            s.sendall(REQUEST)
            while chunk := s.recv(65536):
                out += chunk
        except (ConnectionResetError, BrokenPipeError):
            if not out:
                return "unread"
            raise
    return "ok" if b"Status: 200" in out and b'"release"' in out else "bad"

def loop():
    while time.time() < stop:
        try:
            counts[call()] += 1
        except OSError:
            counts["bad"] += 1

threads = [threading.Thread(target=loop) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print("ok", counts["ok"], "bad", counts["bad"], "unread", counts["unread"])
"""


def test_a_blue_green_restart_under_load_loses_no_request_read_or_unread(world):
    """A restart (the handler, after new settings) starts a second instance, points the
    release's link at it once it is ready, then stops the first: the load, connecting through
    the link as nginx does, loses nothing, neither a request a worker had read (die-on-term
    would cut it short) nor one it had not (uWSGI's race on a graceful stop, which the old
    instance never meets: nothing new reaches it)."""
    before = main_pid(world)
    restart = shlex.join(["sh", "-c", INSTANCES, "instances", "restart", ".python.sock",
                          "api-python", "/etc/mtls-deploy/api/api-python.conf", APP_ROOT, "",
                          "60"])  # fmt: skip
    script = (
        f"cat > /tmp/load.py <<'EOF'\n{LOAD}\nEOF\n"
        f"python3 /tmp/load.py 12 {APP_ROOT}/current/.python.sock > /tmp/load.out &\n"
        f"sleep 2; {restart} && sleep 2 && {restart}; status=$?\n"
        "wait; cat /tmp/load.out; exit $status\n"
    )
    with world.remote(PY_API.name) as connection:
        out = connection.run_script(script, sudo=True, check=True, timeout=90).stdout.split()
    ok, bad, unread = int(out[-5]), int(out[-3]), int(out[-1])
    print(f"\nblue/green restarts under load: ok {ok}, bad {bad}, unread {unread}")
    assert (bad, unread, ok > 100) == (0, 0, True), out
    after = instance_unit(world)
    assert main_pid(world) != before  # the name alternates (<release>, <release>.b): its pid not
    running = on_host(world, "systemctl list-units --plain --no-legend 'api-python@*' | wc -l")
    assert running == "1"  # the old instances are gone
    assert on_host(world, f"systemctl is-enabled {after}") == "enabled"


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


# A FastCGI server in uWSGI's place for the race's consequence, as root on the host: it closes
# each connection whose number is in $2 (1, 3: comma-separated) with the request unread in its
# queue, which resets it (what a uWSGI worker does when a graceful stop reaches it between
# accept() and reading), and answers the others {"attempt": <n>}. Each connection's number and
# fate goes to stdout.
RESETTING_SERVER = r"""
import os, socket, struct, sys

path, resets = sys.argv[1], {int(n) for n in sys.argv[2].split(",")}
if os.path.exists(path):
    os.unlink(path)
server = socket.socket(socket.AF_UNIX)
server.bind(path)
os.chmod(path, 0o666)
server.listen(8)
print("listening", flush=True)

def records(conn):
    buffer = b""
    while True:
        while len(buffer) < 8:
            buffer += conn.recv(65536)
        _, kind, _, length, padding = struct.unpack("!BBHHB", buffer[:7])
        while len(buffer) < 8 + length + padding:
            buffer += conn.recv(65536)
        buffer = buffer[8 + length + padding:]
        if kind == 5 and length == 0:  # the end of STDIN: the whole request is read
            return

def record(kind, content):
    return struct.pack("!BBHHBx", 1, kind, 1, len(content), 0) + content

number = 0
while True:
    conn, _ = server.accept()
    number += 1
    if number in resets:
        conn.recv(1, socket.MSG_PEEK)  # the request has arrived, and stays unread
        conn.close()
        print(number, "reset", flush=True)
        continue
    records(conn)
    body = b'{"attempt": %d}' % number
    conn.sendall(record(6, b"Status: 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)
                 + record(6, b"") + record(3, b"\0" * 8))
    conn.close()
    print(number, "answered", flush=True)
"""


def test_nginx_sends_a_get_once_more_when_the_backend_reset_it_unread_but_never_a_post(world):
    """uWSGI's reload race (see roles/backend_python/README.md), provoked on purpose: the
    backend resets the first connection with the request unread. nginx sends the GET once more
    on a new connection and the client gets the answer; a POST it never sends twice: 503."""
    link, fake = f"{APP_ROOT}/current/.python.sock", "/run/api-python/resetting.sock"
    start = (
        f"cat > /tmp/resetting.py <<'EOF'\n{RESETTING_SERVER}\nEOF\n"
        f"cp -P {link} /tmp/resetting.link\n"
        f"setsid python3 /tmp/resetting.py {fake} 1,3 < /dev/null > /tmp/resetting.out 2>&1 &\n"
        "for i in $(seq 50); do grep -q listening /tmp/resetting.out && break; sleep 0.1; done\n"
        f"grep -q listening /tmp/resetting.out && ln -sfn {fake} {link}\n"
    )
    restore = (
        f"mv -T /tmp/resetting.link {link}; pkill -f /tmp/resetting.py\n"
        f"cat /tmp/resetting.out; rm -f /tmp/resetting.* {fake}\n"
    )
    with world.remote(PY_API.name) as connection:
        connection.run_script(start, sudo=True, check=True, timeout=30)
    try:
        get = call(world, "GET", "/orders")
        post = call(world, "POST", "/orders", {"item": "tea", "quantity": 1})
    finally:
        with world.remote(PY_API.name) as connection:
            seen = connection.run_script(restore, sudo=True, check=True, timeout=60).stdout
    assert get == (200, {"attempt": 2}), (get, seen)
    assert post[0] == 503 and post[1]["error"] == "backend unavailable", (post, seen)
    assert seen.split()[1:] == ["1", "reset", "2", "answered", "3", "reset"], seen
    assert call(world, "GET", "/admin/stats")[0] == 200  # uWSGI's instance serves again
