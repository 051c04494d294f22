"""examples/php-orders on a real lab host (issue 12, backend php): deployed by `inv provision`,
called by bob from his own host through curl with his client bundle; a release whose
`composer install` fails is refused in one line while the old one keeps serving; the app's
secret reaches it and no output shows it; open_basedir keeps it out of /etc/passwd; rollback.

One world: php-api (SSH 2330, HTTPS 8530) and the consumer php-bob (SSH 2331, login bob), with a
PKI of the module's own."""

import hashlib
import hmac
import json
import re
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mtls_deploy import inventory, lab
from mtls_deploy.pki.store import PkiStore

from .conftest import (
    ROOT,
    ApiHost,
    inv,
    needs_lab,
    pki_environment,
    run_on,
    write_api_consumer_inventory,
)

pytestmark = [*needs_lab, pytest.mark.slow]

# Its own names and ports (no other module uses 2330, 2331 or 8530).
API = ApiHost("php-api", 2330, 8530, "php")
CONSUMER, CONSUMER_PORT = "php-bob", 2331
SECRET = "orders-key-9d2f7c41-never-printed"
RELEASES = "/srv/api/releases"
EXAMPLE = ROOT / "examples" / "php-orders"
APP_VARS = "app_shared: [var]\napp_environment: {ORDERS_SIGNING_KEY: {env: PHP_APP_SIGNING_KEY}}\n"
FRONT_CONTROLLER = "lib/Request.class.php"
# A front controller that tries what open_basedir must refuse, and shows what it got.
PROBE = """<?php
header('Content-Type: application/json');
if ($_SERVER['DOCUMENT_URI'] === '/slow') {
    sleep(3);
    exit(json_encode(['slept' => 3]));
}
$errors = [];
set_error_handler(function (int $level, string $message) use (&$errors) {
    $errors[] = $message;
    return true;
});
$passwd = file_get_contents('/etc/passwd');
echo json_encode([
    'passwd_read' => $passwd !== false,
    'errors' => $errors,
    'open_basedir' => ini_get('open_basedir'),
    'opcache' => (opcache_get_status(false) ?: [])['opcache_enabled'] ?? false,
    'key_sha256' => hash('sha256', (string) getenv('ORDERS_SIGNING_KEY')),
]);
"""


# The release's own classes under php's CLI on php-api: the answers to FastCGI params that nginx
# would send (a client nginx did not verify cannot reach php with client_verify: on).
HARNESS = """<?php
require '/srv/api/current/lib/Request.class.php';
$api = new Api(new OrderStore('/nonexistent/orders.jsonl', 'k'));
foreach (json_decode($argv[1], true) as $server) {
    $response = $api->handle(new Request($server + ['REQUEST_METHOD' => 'GET'], ''));
    echo json_encode([$response->status, $response->body]), "\\n";
}
"""


@dataclass
class World:
    inventory: Path
    outputs: list = field(default_factory=list)

    def cli(self, *args, check=True):
        """The real ``inv`` on this module's inventory, the secret in its environment; every
        output is kept, to look for the secret in."""
        env = {"MTLS_DEPLOY_INVENTORY": str(self.inventory), "PHP_APP_SIGNING_KEY": SECRET}
        done = inv(*args, check=check, env=env)
        self.outputs.append(done.stdout + done.stderr)
        return done

    def use_app(self, src: Path, front_controller: str = FRONT_CONTROLLER) -> None:
        """Point php-api's app_src at ``src``."""
        text = f"app_src: {src}\nphp_front_controller: {front_controller}\n{APP_VARS}"
        (self.inventory / "host_vars" / f"{API.name}.yml").write_text(text)

    def refused(self, src: Path, front_controller: str = FRONT_CONTROLLER) -> str:
        """``inv deploy`` of ``src``: exit 1, one line saying why; app_src back to the example."""
        self.use_app(src, front_controller)
        try:
            done = self.cli("deploy", "--host", API.name, check=False)
        finally:
            self.use_app(EXAMPLE)
        assert done.returncode == 1, done.stdout + done.stderr
        [line] = [line for line in done.stdout.splitlines() if "refused" in line]
        return line

    def sudo(self, command: str) -> str:
        return run_on(self.inventory, API.name, command, sudo=True).strip()

    def current(self) -> str:
        return self.sudo("readlink /srv/api/current").removeprefix("releases/")

    def bob(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        """(status, JSON) of a request bob makes from php-bob with his bundle."""
        data = ["-H", "Content-Type: application/json", "-d", json.dumps(body)] if body else []
        command = [
            "curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}", "-X", method,
            "--resolve", f"{API.server_name}:{API.https_port}:127.0.0.1",
            "--cacert", "api-ca.crt", "--cert", "bob.crt", "--key", "bob.key", *data,
            f"https://{API.server_name}:{API.https_port}{path}",
        ]  # fmt: skip
        out = run_on(self.inventory, CONSUMER, f"cd .mtls/api && {shlex.join(command)}")
        text, _, code = out.rpartition("\n")
        return int(code), json.loads(text)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """php-api provisioned with examples/php-orders (its first release), bob's bundle on
    php-bob; the hosts are stopped afterwards."""
    base = tmp_path_factory.mktemp("php-app")
    with pki_environment(base, "php-app-test"):
        PkiStore().init(name="PHP Orders API", key_type="ec")
        folder = write_api_consumer_inventory(base / "inventory", API, CONSUMER, CONSUMER_PORT)
        (folder / "host_vars").mkdir()
        (folder / "host_vars" / f"{CONSUMER}.yml").write_text("client_names: [bob]\n")
        hosts = lab.hosts_from_inventory(inventory.load(folder).select())
        lab.reset(hosts)
        try:
            w = World(folder)
            w.use_app(EXAMPLE)
            w.first = w.cli("provision", "--host", API.name)
            w.cli("issue-client", "--name", "bob")
            yield w
        finally:
            lab.down(hosts)


def variant(tmp_path: Path, name: str = "app", **files: str) -> Path:
    """A copy of examples/php-orders in ``tmp_path/name`` with ``files`` (relative path ->
    text) added or replaced."""
    tree = tmp_path / name
    shutil.copytree(EXAMPLE, tree, ignore=shutil.ignore_patterns("vendor", "composer.lock"))
    for name, text in files.items():
        (tree / name).write_text(text)
    return tree


def test_provision_deploys_the_example_and_bob_orders(world):
    assert re.search(r"changed +php-api  app release \S+  \(first release\)", world.first.stdout)
    status, created = world.bob("POST", "/orders", {"item": "green tea", "quantity": 2})
    assert status == 201, created
    order = created["order"]
    assert (order["client"], order["item"], order["quantity"]) == ("bob", "green tea", 2)
    # the receipt is signed with the secret from this machine's environment: it reached the app
    expected = hmac.new(SECRET.encode(), order["id"].encode(), hashlib.sha256).hexdigest()
    assert order["receipt"] == expected
    status, mine = world.bob("GET", "/orders")
    assert status == 200 and mine["client"] == "bob"
    assert [o["id"] for o in mine["orders"]] == [order["id"]]


def test_admin_stats_and_bad_requests(world):
    status, stats = world.bob("GET", "/admin/stats")
    assert status == 200
    assert stats == {"orders": 1, "clients": 1, "release": world.current()}
    assert world.bob("POST", "/orders", {"quantity": 0})[0] == 400
    assert world.bob("DELETE", "/orders")[0] == 405
    assert world.bob("GET", "/nothing")[0] == 404


def test_the_caller_is_the_verified_certificates_cn_and_nobody_else(world):
    cases = [
        {"DOCUMENT_URI": "/orders"},  # no certificate (client_verify: optional)
        {"DOCUMENT_URI": "/orders", "VERIFIED": "FAILED:certificate revoked", "DN": "CN=bob"},
        {"DOCUMENT_URI": "/orders", "HTTP_VERIFIED": "SUCCESS", "HTTP_DN": "CN=bob"},  # headers
        {"DOCUMENT_URI": "/orders", "VERIFIED": "SUCCESS", "DN": "O=No CN"},
        {"DOCUMENT_URI": "/orders", "VERIFIED": "SUCCESS", "DN": "CN=bob\\, jr,O=Example\\, Inc."},
        {"DOCUMENT_URI": "/orders", "VERIFIED": "SUCCESS", "DN": "CN=caf\\C3\\A9,O=X"},
    ]
    script = f"cat > /tmp/harness.php <<'EOF'\n{HARNESS}EOF\n"
    out = world.sudo(script + f"php /tmp/harness.php {shlex.quote(json.dumps(cases))}")
    answers = [json.loads(line) for line in out.splitlines()]
    unverified = [401, {"error": "client certificate required"}]
    assert answers[:4] == [unverified] * 4
    assert answers[4] == [200, {"client": "bob, jr", "orders": []}]
    assert answers[5] == [200, {"client": "café", "orders": []}]


def test_the_release_is_built_by_composer_and_owned_by_root(world):
    release = f"{RELEASES}/{world.current()}"
    assert world.sudo(f"stat -c '%U %a' {release}/vendor/autoload.php") == "root 644"
    assert world.sudo(f"readlink {release}/var") == "/srv/api/shared/var"
    assert world.sudo("stat -c '%U %G %a' /srv/api/shared/var") == "api-php api-php 750"
    assert world.sudo("stat -c '%U %a' /srv/api/shared/var/orders.jsonl").startswith("api-php ")


def test_a_failing_composer_install_is_refused_and_the_old_release_serves(world, tmp_path):
    before = world.current()
    composer = {"require": {"acme/unreachable": "^1.0"}, "autoload": {"classmap": ["lib/"]}}
    line = world.refused(variant(tmp_path, **{"composer.json": json.dumps(composer)}))
    assert "refused at build: composer install failed: " in line and "repo.packagist.org" in line
    assert world.current() == before
    assert world.sudo(f"ls {RELEASES}").split() == [before]  # no .partial left
    assert world.bob("GET", "/orders")[0] == 200


def test_a_front_controller_that_does_not_parse_or_is_missing_is_refused(world, tmp_path):
    before = world.current()
    broken = variant(tmp_path, **{"lib/Request.class.php": "<?php\nfunction ( {\n"})
    line = world.refused(broken)
    assert re.search(r"refused at check: Parse error: syntax error, .* on line 2\)$", line), line
    line = world.refused(variant(tmp_path, "other", NOTE="a new tree"), "lib/Missing.php")
    assert "refused at check: php_front_controller lib/Missing.php is not in the release" in line
    assert world.current() == before
    assert world.bob("GET", "/orders")[0] == 200


def test_open_basedir_keeps_the_app_out_of_etc_passwd(world, tmp_path):
    before = world.current()
    world.use_app(variant(tmp_path, **{"lib/Request.class.php": PROBE}))
    try:
        world.cli("deploy", "--host", API.name)
        status, probe = world.bob("GET", "/anything")
    finally:
        world.use_app(EXAMPLE)
    assert status == 200
    assert probe["passwd_read"] is False
    assert "open_basedir restriction in effect" in probe["errors"][0], probe
    assert probe["open_basedir"] == "/srv/api/releases/:/srv/api/shared/"
    assert probe["opcache"] is True
    assert "can't be temporary enabled" not in world.sudo("cat /var/log/php8.2-fpm.log")
    assert probe["key_sha256"] == hashlib.sha256(SECRET.encode()).hexdigest()
    # back to the example: its orders outlived the probe's release (shared var/)
    world.cli("rollback", "--host", API.name)
    assert world.current() == before
    status, mine = world.bob("GET", "/orders")
    assert status == 200 and len(mine["orders"]) == 1


def test_a_pool_reload_lets_the_request_in_flight_finish(world, tmp_path):
    """process_control_timeout: php-fpm's default (0) kills a request in flight on a reload."""
    from concurrent.futures import ThreadPoolExecutor

    before = world.current()
    world.use_app(variant(tmp_path, **{"lib/Request.class.php": PROBE}))
    try:
        world.cli("deploy", "--host", API.name)
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(world.bob, "GET", "/slow")
            time.sleep(1.5)  # the request is in php now
            world.sudo("systemctl reload php8.2-fpm")
            assert slow.result(timeout=30) == (200, {"slept": 3})
        assert world.bob("GET", "/anything")[0] == 200  # the new workers serve
    finally:
        world.use_app(EXAMPLE)
        world.cli("rollback", "--host", API.name)
    assert world.current() == before


def test_a_value_php_fpm_would_read_as_a_variable_is_one_line_and_not_shown(world):
    host_vars = world.inventory / "host_vars" / f"{API.name}.yml"
    good = host_vars.read_text()
    host_vars.write_text(good.replace("{env: PHP_APP_SIGNING_KEY}", "'$2y$10$hashedvalue'"))
    try:
        done = world.cli("provision", "--host", API.name, check=False)
    finally:
        host_vars.write_text(good)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    [line] = [line for line in done.stdout.splitlines() if line.startswith("failed")]
    assert "the value of ORDERS_SIGNING_KEY cannot start with '$'" in line
    assert "hashedvalue" not in output
    assert world.bob("GET", "/orders")[0] == 200


def test_the_secret_is_root_only_and_never_printed(world):
    include = "/etc/php/8.2/fpm/pool.d/api.env.conf"
    assert world.sudo(f"stat -c '%a %U %G' {include}") == "600 root root"
    assert SECRET not in world.sudo("cat /etc/php/8.2/fpm/pool.d/api.conf")
    world.cli("provision", "--host", API.name, "--diff")
    for output in world.outputs:
        assert SECRET not in output
