"""Who may call what (``mtls_routes``) on real nginx: a lab API host of its own, rt-api (SSH 2360,
HTTPS 8560, the built-in PHP backend), called from this machine with each client's certificate.

The built-in front controller answers /whoami and /health and a JSON 404 for any other path: a
404 ``{"error":"not found"}`` is the backend's answer, so the caller got past the rule; a 403
naming the rule is nginx's, before the backend. Clients: alice (listed by name, no OU, her O
"Example, Inc." escaped in the DN), bob (neither), carol (OU ops), mallory (O "Evil,OU=ops":
an escaped ",OU=ops" that is no OU), zed (allowed by serial only)."""

import json
import subprocess

import pytest

from mtls_deploy.pki.bundle import write_client_bundle
from mtls_deploy.pki.store import PkiStore

from .conftest import ApiHost, lab_world, needs_lab

pytestmark = needs_lab

# Its own name and ports (no other module uses 2360 or 8560).
HOST = ApiHost("rt-api", 2360, 8560, "php")
BACKEND_404 = {"error": "not found"}
CLIENTS = {"bob": {}, "carol": {"ou": "ops"}, "mallory": {"org": "Evil,OU=ops"}, "zed": {}}


def rules(zed_serial: str) -> list[dict]:
    return [
        {"path": "/admin", "allow": {"names": ["alice"], "ou": ["ops"]}},
        {"path": "/whoami", "allow": {"names": ["alice", "bob"], "ou": ["ops"]}},
        {"path": "/admin/reports", "allow": {"serials": [zed_serial.lower()]}},
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """rt-api provisioned with the rules; every client's bundle in the world's dist/."""
    with lab_world(tmp_path_factory, [HOST], name="Routes Test", passphrase="routes-test") as made:
        store = PkiStore.open()
        for name, subject in CLIENTS.items():
            store.issue_client(name, **subject)
            write_client_bundle(store, name)
        made.rules = rules(store.client_material("zed").serial)
        result = made.provision(HOST.name, mtls_routes=made.rules)
        assert not result.failed, [s for s in result.steps if s.status == "failed"]
        yield made


def call(world, client: str, path: str) -> tuple[int, dict | str]:
    """(status, JSON body) of GET ``path`` with ``client``'s certificate."""
    bundle = world.bundle.parent / client
    done = subprocess.run(
        ["curl", "-sS", "--path-as-is", "--max-time", "10", "-w", "\n%{http_code}",
         "--resolve", f"{HOST.server_name}:{HOST.https_port}:127.0.0.1",
         "--cacert", str(bundle / "api-ca.crt"),
         "--cert", str(bundle / f"{client}.crt"), "--key", str(bundle / f"{client}.key"),
         f"https://{HOST.server_name}:{HOST.https_port}{path}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    body, _, code = done.stdout.rpartition("\n")
    return int(code), json.loads(body) if body.startswith("{") else body


def forbidden(rule: str) -> tuple[int, dict]:
    hint = f"this client certificate is not allowed on {rule} (mtls_routes): ask the API operator"
    return 403, {"error": "forbidden", "rule": rule, "hint": hint}


def test_bob_may_call_an_unlisted_path_and_is_refused_on_admin(world):
    assert call(world, "bob", "/orders") == (404, BACKEND_404)  # the backend answered
    assert call(world, "bob", "/admin/stats") == forbidden("/admin")
    assert call(world, "bob", "/admin") == forbidden("/admin")


def test_carol_gets_in_by_her_ou_and_alice_by_her_name(world):
    assert call(world, "carol", "/admin/stats") == (404, BACKEND_404)
    assert call(world, "alice", "/admin/stats") == (404, BACKEND_404)
    code, body = call(world, "carol", "/whoami")
    assert code == 200 and body["subject"] == {"OU": "ops", "CN": "carol"}, body


def test_the_rule_covers_whole_segments_only(world):
    assert call(world, "bob", "/administrator") == (404, BACKEND_404)
    assert call(world, "bob", "/admin/../orders") == (404, BACKEND_404)  # $uri is normalised
    assert call(world, "bob", "/x/../admin/stats") == forbidden("/admin")
    assert call(world, "bob", "/%61dmin/stats") == forbidden("/admin")


def test_an_escaped_ou_in_the_organisation_is_no_ou(world):
    """mallory's DN is O=Evil\\,OU=ops,CN=mallory: a naive ",OU=ops" search would let him in."""
    assert call(world, "mallory", "/admin/stats") == forbidden("/admin")
    code, body = call(world, "mallory", "/health")
    assert code == 200, body


def test_the_longest_listed_path_decides_and_serials_match(world):
    """/admin/reports allows zed's serial only: alice, allowed on /admin, is refused there."""
    assert call(world, "zed", "/admin/reports/q3") == (404, BACKEND_404)
    assert call(world, "alice", "/admin/reports") == forbidden("/admin/reports")
    assert call(world, "zed", "/admin/stats") == forbidden("/admin")


def test_the_longest_api_name_and_many_rules_pass_nginx_t(world):
    """api_name may have 32 characters: $mtls_<name>_route must still fit nginx's
    variables_hash_bucket_size (a name of 47 characters did not: "could not build
    variables_hash"), and a map of 40 rules its regex limits."""
    import base64

    from mtls_deploy import inventory, role_loader
    from mtls_deploy.facts import HostFacts

    name = "a" * 32
    many = [
        {"path": f"/p{i}/x.{i}", "allow": {"names": [f"c{i}"], "ou": ["ops"]}} for i in range(40)
    ]
    v = inventory.load(world.inventory, {"api_name": name, "mtls_routes": world.rules + many})
    nginx = role_loader.load("nginx")
    roles = role_loader.host_roles(v.host(HOST.name).vars)
    site = nginx.module.render_site(
        role_loader.with_exports(roles, v.host(HOST.name).vars, HostFacts())["nginx"], HostFacts()
    )
    assert f"$mtls_{name}_route" in site.decode()
    conf = (
        "events {}\nhttp {\n    include /etc/nginx/mime.types;\n    include /tmp/rt/site.conf;\n}\n"
    )
    script = (
        "mkdir -p /tmp/rt && cp /etc/nginx/fastcgi_params /tmp/rt/ && "
        f"echo {base64.b64encode(site).decode()} | base64 -d > /tmp/rt/site.conf && "
        f"printf %s {base64.b64encode(conf.encode()).decode()} | base64 -d > /tmp/rt/nginx.conf && "
        "nginx -t -c /tmp/rt/nginx.conf -g 'pid /tmp/rt/nginx.pid;' 2>&1; echo rc=$?; rm -rf /tmp/rt"
    )
    out = world.sudo(HOST.name, script).stdout
    assert "rc=0" in out and "test is successful" in out, out


def test_without_rules_the_site_is_as_before_and_a_revoked_alice_gets_400(world):
    """Last: it changes the host. Rules gone: bob reaches the backend on /admin; alice
    revoked: nginx refuses her certificate with its 400 before any rule."""
    result = world.provision(HOST.name)
    assert not result.failed and ("file", "/etc/nginx/conf.d/api.conf") in [
        (s.kind, s.name) for s in result.steps if s.changed
    ]
    assert call(world, "bob", "/admin/stats") == (404, BACKEND_404)
    assert (
        world.sudo(HOST.name, "grep -c mtls_route /etc/nginx/conf.d/api.conf").stdout.strip() == "0"
    )
    PkiStore.open().revoke_client("alice")
    assert not world.provision(HOST.name, mtls_routes=world.rules).failed
    code, body = call(world, "alice", "/admin/stats")
    assert code == 400 and body["reason"] == "certificate revoked", body
    assert call(world, "carol", "/admin/stats") == (404, BACKEND_404)
