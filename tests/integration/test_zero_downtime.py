"""Zero downtime (issue 12): `inv deploy` switches releases 3 times and `inv rollback` once while
clients call `/orders`, and no request fails, for each backend (php, python, proxy) with its
example app.

The load, one connection each (bench/load.py): ApacheBench with a connection per request
(`ab -E`, TLS handshake and client certificate every time), and a keep-alive client that sends
a request again once when its reused connection turns out closed before any byte of the
answer, as curl and browsers do: for both, 0 failed and 0 non-2xx. A third client POSTs
orders on a keep-alive connection, never sending one twice: 0 failed and 0 non-2xx too. `ab -k` runs beside them
and is reported; it is asserted only when nginx was not reloaded (its worker processes are the
same after the switches), since a reload closes idle keep-alive connections and ab never sends
a request again.

One lab host, zd-api (SSH 2370, HTTPS 8570), reset for each backend; a PKI of the module's own.
``MTLS_DEPLOY_ZD_RESULT=<file>`` writes the figures there as JSON (`inv bench --only
deploy-under-load` measures the same on the bench hosts).
"""

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from bench.load import KeepAliveClient, Load, Target
from mtls_deploy import inventory, lab

from .conftest import (
    CLIENT,
    ROOT,
    ApiHost,
    inv,
    make_pki_with_client,
    needs_lab,
    pki_environment,
    run_on,
    write_inventory,
)

pytestmark = needs_lab

SIGNING_KEY = "zd-lab-only-signing-key"
APP_VARS = {"app_shared": ["var"],
            "app_environment": {"ORDERS_SIGNING_KEY": {"env": "ORDERS_SIGNING_KEY"}}}  # fmt: skip
EXAMPLES = {  # backend: (example app, what its host_vars add)
    "php": ("php-orders", {**APP_VARS, "php_front_controller": "lib/Request.class.php"}),
    "python": ("flask-orders", {**APP_VARS, "python_wsgi": "orders:app"}),
    "proxy": ("fastapi-orders", {"app_shared": ["var"]}),
}
SWITCHES = 3
ORDER = json.dumps({"item": "tea", "quantity": 1}).encode()
NGINX_WORKERS = "pgrep -P \"$(cat /run/nginx.pid)\" | sort | tr '\\n' ' '"


class ZdWorld:
    """zd-api running ``backend``'s example app from a copy this module changes."""

    def __init__(self, base: Path, backend: str):
        self.base, self.backend = base, backend
        self.api = ApiHost("zd-api", 2370, 8570, backend)
        self.inventory = write_inventory(base / "inventory", [self.api])
        example, extra = EXAMPLES[backend]
        self.app = base / "app"
        shutil.copytree(ROOT / "examples" / example, self.app,
                        ignore=shutil.ignore_patterns("__pycache__", "var", "vendor"))  # fmt: skip
        (self.inventory / "host_vars").mkdir()
        values = {"app_src": str(self.app), **extra}
        (self.inventory / "host_vars" / "zd-api.yml").write_text(yaml.safe_dump(values))

    def inv(self, *args):
        env = {"MTLS_DEPLOY_INVENTORY": str(self.inventory), "ORDERS_SIGNING_KEY": SIGNING_KEY}
        return inv(*args, "--host", self.api.name, env=env)

    def sudo(self, command: str) -> str:
        return run_on(self.inventory, self.api.name, command, sudo=True).strip()

    def target(self, path: str = "/orders") -> Target:
        bundle = self.base / "dist" / CLIENT
        return Target("127.0.0.1", self.api.https_port, self.api.server_name, path,
                      bundle / f"{CLIENT}.crt", bundle / f"{CLIENT}.key", bundle / "api-ca.crt")  # fmt: skip

    def new_release(self, number: int) -> None:
        """Change the tree, so that the next deploy uploads and switches to a new release."""
        (self.app / "RELEASE.txt").write_text(f"zero-downtime switch {number}\n")


@pytest.fixture(scope="module", params=list(EXAMPLES))
def zd(request, tmp_path_factory):
    """zd-api fresh, provisioned with the backend's example (its first release)."""
    base = tmp_path_factory.mktemp(f"zd-{request.param}")
    with pki_environment(base, "zd-test"):
        make_pki_with_client("Zero Downtime API")
        world = ZdWorld(base, request.param)
        hosts = lab.hosts_from_inventory(inventory.load(world.inventory).select())
        lab.reset(hosts)
        try:
            world.inv("provision")
            yield world
        finally:
            lab.down(hosts)


def test_releases_switch_under_load_without_a_failed_request(zd):
    workers = zd.sudo(NGINX_WORKERS)
    first = zd.sudo("readlink /srv/api/current")
    poster = KeepAliveClient(zd.target(), body=ORDER)  # POSTs, never sent twice
    with Load(zd.target(), zd.base / "load", warm_up=2.0) as load:
        poster.start()
        for number in range(1, SWITCHES + 1):
            zd.new_release(number)
            zd.inv("deploy")
        zd.inv("rollback")
        poster.stop()
    load.figures["POST"] = poster.figures()
    releases = zd.sudo("ls /srv/api/releases").split()
    reloaded = zd.sudo(NGINX_WORKERS) != workers
    figures = {**load.figures, "nginx_reloaded": reloaded, "releases": len(releases),
               "switch_seconds": round(load.ended - load.started, 1)}  # fmt: skip
    record(zd.backend, figures)
    print(zd.sudo("tail -n 20 /var/log/nginx/api.error.log"))  # shown when an assert fails
    assert len(releases) == 1 + SWITCHES and first.removeprefix("releases/") in releases
    assert zd.sudo("readlink /srv/api/current") == f"releases/{sorted(releases)[-2]}"
    for name in ("ab", "keep-alive", "POST"):
        counts = load.figures[name]
        assert counts["complete"] >= 20, (name, counts)  # the load ran through the switches
        assert (counts["failed"], counts["non_2xx"]) == (0, 0), (name, counts)
    if not reloaded:  # no reload closed an idle keep-alive connection: ab -k fails nothing too
        counts = load.figures["ab -k"]
        assert (counts["failed"], counts["non_2xx"]) == (0, 0), ("ab -k", counts)


def record(backend: str, figures: dict) -> None:
    """Print the figures (pytest -s) and add them to ``$MTLS_DEPLOY_ZD_RESULT`` when set."""
    print(f"\nzero downtime, {backend}: {json.dumps(figures)}")
    target = os.environ.get("MTLS_DEPLOY_ZD_RESULT")
    if not target:
        return
    path = Path(target)
    found = json.loads(path.read_text()) if path.exists() else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**found, backend: figures}, indent=2) + "\n")
