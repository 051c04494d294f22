"""``inv unprovision`` on a host that ran the user's own application: un2-api (SSH 2367, HTTPS
8567, backend php) gets examples/php-orders (``app_shared: [var]``, a secret in
``app_environment``), an order that lands in the shared var/, a second release; then
unprovision, and the host is compared with un2-ref (SSH 2368), a fresh host of the same base.

What the release pipeline wrote (releases/, current, shared/, the app's environment) lives in
the two trees the app role created and the manifest recorded (/srv/api, /etc/mtls-deploy/api):
both go whole, /srv itself stays; the enabled units, ``dpkg --verify`` and /etc are as in
test_unprovision (only the packages differ).

Then the same host with ``backend: proxy`` (a dozen lines of Python's own http.server on the
instance's unix socket: no pip): two releases, so an instance was started and another
retired; unprovision takes every instance of the template unit away (stopped, disabled, its
drop-in directory), and the sockets' directory /run/api-proxy (a tree the role created).
"""

import json
import shutil

import pytest

from mtls_deploy import inventory, lab
from mtls_deploy.facts import MANIFEST

from .conftest import ROOT, ApiHost, inv, make_pki_with_client, needs_lab, pki_environment
from .test_unprovision import (
    ENABLED,
    differences,
    not_of_extra_packages,
    on,
    write_world_inventory,
)

pytestmark = needs_lab

# Their own names and ports (no other module uses 2367, 2368 or 8567).
API = ApiHost("un2-api", 2367, 8567, "php")
REF, REF_PORT = "un2-ref", 2368
TREES = ["/etc/mtls-deploy/api", "/srv/api"]
PROXY_UNIT = "api-proxy"
SERVER = """import os, socketserver, sys
from http.server import BaseHTTPRequestHandler


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = open(os.path.join(os.path.dirname(__file__), "VERSION"), "rb").read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


socketserver.UnixStreamServer(sys.argv[1], Handler).serve_forever()
"""
PROXY_VARS = (
    'backend: proxy\nproxy_command: ["/usr/bin/python3", "{release}/server.py", "{socket}"]\n'
)
# Every trace of the template's instances: loaded units, enabled links, drop-ins, sockets.
INSTANCES = (
    f"systemctl list-units --all --plain --no-legend --full '{PROXY_UNIT}@*' | awk '{{print $1}}'; "
    f"ls -d /etc/systemd/system/*.wants/{PROXY_UNIT}@* /etc/systemd/system/{PROXY_UNIT}@* "
    f"/run/{PROXY_UNIT} 2>/dev/null; true"
)
APP_VARS = (
    "php_front_controller: lib/Request.class.php\napp_shared: [var]\n"
    "app_environment: {ORDERS_SIGNING_KEY: unprovision-test-key}\n"
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Both hosts fresh; un2-api provisioned with php-orders, an order placed, a second release
    deployed; its manifest as it was then."""
    base = tmp_path_factory.mktemp("unprovision-app-world")
    folder = write_world_inventory(base / "inventory", API, (REF, REF_PORT))
    app = base / "php-orders"
    shutil.copytree(ROOT / "examples" / "php-orders", app)
    (folder / "host_vars").mkdir()
    (folder / "host_vars" / f"{API.name}.yml").write_text(f"app_src: {app}\n{APP_VARS}")
    with pki_environment(base, "unprovision-app"), pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTLS_DEPLOY_INVENTORY", str(folder))
        make_pki_with_client("Unprovision App Test")
        hosts = lab.hosts_from_inventory(inventory.load(folder).select())
        lab.reset(hosts)
        try:
            inv("provision", "--host", API.name)
            on(folder, API.name, "echo '[]' > /srv/api/shared/var/orders.json")  # the app's state
            (app / "VERSION").write_text("2\n")
            inv("deploy", "--host", API.name)
            manifest = json.loads(on(folder, API.name, f"cat {MANIFEST}"))["roles"]
            yield {"inventory": folder, "manifest": manifest}
        finally:
            lab.down(hosts)


def test_the_app_s_trees_are_recorded_as_ours(world):
    folder = world["inventory"]
    assert world["manifest"]["app"]["trees"] == TREES
    releases = on(folder, API.name, "ls /srv/api/releases").split()
    assert len(releases) == 2 and on(folder, API.name, "ls /srv/api/shared/var") == "orders.json\n"


def test_unprovision_leaves_no_release_shared_state_or_environment(world):
    folder = world["inventory"]
    done = inv("unprovision", "--host", API.name)
    assert "failed=0" in done.stdout, done.stdout
    for tree in TREES:
        assert f"tree {tree}" in done.stdout or tree in done.stdout, done.stdout
    assert on(folder, API.name, "ls -A /srv; ls -A /run/lock") == on(
        folder, REF, "ls -A /srv; ls -A /run/lock"
    )
    assert on(folder, API.name, "test -e /etc/mtls-deploy || echo gone") == "gone\n"
    kept = json.loads(on(folder, API.name, f"cat {MANIFEST}"))["roles"]
    assert all(not e.get("trees") for e in kept.values()) and kept  # only packages stay


def test_then_only_the_packages_differ_from_a_fresh_host(world):
    folder = world["inventory"]
    assert on(folder, API.name, ENABLED) == on(folder, REF, ENABLED)
    assert on(folder, API.name, "dpkg --verify; true") == ""
    unexplained = not_of_extra_packages(folder, differences(folder, API.name, REF), API.name, REF)
    assert unexplained == [], "\n".join(unexplained)


def test_a_proxy_app_s_instances_go_with_its_template_unit(world, tmp_path):
    folder = world["inventory"]
    (tmp_path / "server.py").write_text(SERVER)
    (tmp_path / "VERSION").write_text("1\n")
    (folder / "host_vars" / f"{API.name}.yml").write_text(f"app_src: {tmp_path}\n{PROXY_VARS}")
    inv("provision", "--host", API.name)
    (tmp_path / "VERSION").write_text("2\n")
    inv("deploy", "--host", API.name)
    traces = on(folder, API.name, INSTANCES).split()
    instance = f"{PROXY_UNIT}@{on(folder, API.name, 'readlink /srv/api/current')[9:].strip()}"
    assert f"{instance}.service" in traces and f"/run/{PROXY_UNIT}" in traces, traces
    assert json.loads(on(folder, API.name, f"cat {MANIFEST}"))["roles"]["backend_proxy"][
        "trees"
    ] == [f"/run/{PROXY_UNIT}"]
    done = inv("unprovision", "--host", API.name)
    assert "failed=0" in done.stdout, done.stdout
    assert on(folder, API.name, INSTANCES) == ""
    assert on(folder, API.name, "ls -A /srv; ls -A /run/lock") == on(
        folder, REF, "ls -A /srv; ls -A /run/lock"
    )
    assert on(folder, API.name, ENABLED) == on(folder, REF, ENABLED)
    assert on(folder, API.name, "dpkg --verify; true") == ""
