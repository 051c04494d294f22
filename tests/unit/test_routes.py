"""Who may call what (``mtls_routes``): the nginx maps the site renders, read back and run here
as nginx runs a map (the first regex that matches wins), and the refusals of bad rules before
anything connects. The same maps on real nginx: tests/integration/test_routes.py."""

import re

import pytest

from mtls_deploy.errors import BadInput
from tests.unit.test_site_template import OLD, host_vars, nginx

ROUTES = [
    {"path": "/admin", "allow": {"names": ["alice"], "ou": ["ops"]}},
    {"path": "/admin/public", "allow": {"names": ["bob", "alice"]}},
    {"path": "/v1.2", "allow": {"serials": ["00aB12"]}},
    {"path": "/locked", "allow": {}},
]


def site(routes, **overrides) -> str:
    return nginx.render_site(host_vars(mtls_routes=routes, **overrides), OLD).decode()


def map_block(text: str, variable: str) -> list[tuple[str, str]]:
    """The (pattern, value) lines of the map that sets ``variable``, in order."""
    body = re.search(rf"^map .* \${variable} {{\n(.*?)^}}", text, re.M | re.S).group(1)
    pairs = [re.fullmatch(r'\s*("[^"]*"|\S+)\s+(.+);', line) for line in body.splitlines()]
    return [(p.group(1).strip('"'), p.group(2).strip('"')) for p in pairs]


def run_map(entries: list[tuple[str, str]], value: str) -> str:
    """nginx's map: an exact string first, then the regexes (``~``) in order, the first that
    matches wins; else the default."""
    exact = {pattern: result for pattern, result in entries if not pattern.startswith("~")}
    if value in exact:
        return exact[value]
    for pattern, result in entries:
        if pattern.startswith("~") and re.search(pattern[1:], value):
            return result
    return exact["default"]


class Site:
    """The rendered site's three maps, as nginx evaluates them for one request."""

    def __init__(self, routes):
        text = site(routes)
        self.rule = map_block(text, "mtls_api_rule")
        self.allowed = map_block(text, "mtls_api_allowed")
        self.path = map_block(text, "mtls_api_route")

    def rule_of(self, uri: str) -> str:
        """The path of the rule that covers ``uri`` ("" for none)."""
        return run_map(self.path, run_map(self.rule, uri))

    def allows(self, uri: str, dn: str, serial: str = "0A", verify: str = "SUCCESS") -> bool:
        rule = run_map(self.rule, uri)
        return run_map(self.allowed, f"{rule}:{verify}:{serial}:{dn}") == "1"


@pytest.fixture(scope="module")
def routed() -> Site:
    return Site(ROUTES)


# --- which rule covers a path ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "rule"),
    [
        ("/admin", "/admin"),
        ("/admin/", "/admin"),
        ("/admin/stats", "/admin"),
        ("/administrator", ""),  # whole segments only
        ("/admin.php", ""),
        ("/Admin", ""),  # $uri is case-sensitive, as nginx's locations are
        ("/admin/public", "/admin/public"),  # the longest listed prefix wins
        ("/admin/public/x", "/admin/public"),
        ("/admin/publicity", "/admin"),
        ("/v1.2/x", "/v1.2"),
        ("/v1x2/x", ""),  # the dot is a dot, not any character
        ("/orders", ""),
        ("/", ""),
    ],
)
def test_a_rule_covers_its_path_on_whole_segments_and_the_longest_wins(routed, uri, rule):
    assert routed.rule_of(uri) == rule


def test_the_order_of_the_rules_does_not_matter():
    assert Site(ROUTES).rule == Site(list(reversed(ROUTES))).rule


def test_a_rule_on_slash_covers_every_path_but_longer_ones_win():
    routes = Site([{"path": "/", "allow": {"names": ["bob"]}}, *ROUTES])
    assert routes.rule_of("/orders") == "/" and routes.rule_of("/") == "/"
    assert routes.rule_of("/admin/x") == "/admin"


# --- who a rule lets in -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "dn", "allowed"),
    [
        ("/admin/stats", "CN=alice", True),  # by name
        ("/admin/stats", "O=Example\\, Inc.,CN=alice", True),
        ("/admin/stats", "CN=bob", False),
        ("/admin/stats", "OU=ops,CN=carol", True),  # by OU
        ("/admin/stats", "OU=dev,OU=ops,CN=carol", True),  # any of its OUs
        ("/admin/stats", "CN=carol+OU=ops", True),  # an OU in a multi-valued RDN is one too
        ("/admin/stats", "OU=ops2,CN=carol", False),  # the whole value, not a prefix
        ("/admin/stats", "OU=devops,CN=carol", False),
        ("/admin/stats", "O=Evil\\,OU=ops,CN=mallory", False),  # an escaped comma is O's
        ("/admin/stats", "O=Evil\\+OU=ops,CN=mallory", False),  # an escaped plus too
        ("/admin/stats", "O=Evil\\\\,OU=ops,CN=mallory", True),  # an escaped backslash ends O
        ("/admin/stats", "CN=alice2", False),
        ("/admin/stats", "CN=bob,O=alice", False),
        ("/admin/stats", "O=CN\\=alice,CN=bob", False),
        ("/admin/stats", "O=x\\,CN=alice,CN=bob", False),
        ("/admin/public", "CN=bob", True),
        ("/admin/public", "OU=ops,CN=carol", False),  # the longest rule alone decides
        ("/orders", "CN=bob", True),  # no rule: client_verify decides
        ("/locked/x", "CN=alice", False),  # allow: {} lets nobody in
    ],
)
def test_any_listed_criterion_lets_a_caller_in(routed, uri, dn, allowed):
    assert routed.allows(uri, dn) is allowed


@pytest.mark.parametrize(
    ("serial", "allowed"),
    [("AB12", True), ("00AB12", True), ("0AB12", True), ("AB1", False), ("AB123", False)],
)
def test_serials_match_in_hex_whatever_the_case_and_leading_zeros(routed, serial, allowed):
    assert routed.allows("/v1.2/x", "CN=zed", serial=serial) is allowed


@pytest.mark.parametrize("verify", ["NONE", "FAILED:certificate revoked"])
def test_only_a_verified_certificate_counts(routed, verify):
    """client_verify optional: an anonymous caller never passes a rule (a failed one never
    even gets here: nginx answers 400 first)."""
    assert not routed.allows("/admin", "" if verify == "NONE" else "CN=alice", verify=verify)
    assert routed.allows("/orders", "", verify=verify)


def test_the_refusal_is_a_json_403_at_server_level_naming_the_rule():
    text = site(ROUTES)
    server = text[text.index("server {") :]
    check = server.index("if ($mtls_api_allowed = 0)")
    assert check < server.index("location /")  # before the backend's locations, at server level
    assert "error_page 403 = @mtls_route_forbidden;" in server
    body = re.search(r"location @mtls_route_forbidden \{(.*?)\n    \}", server, re.S).group(1)
    assert "default_type application/json;" in body and "types { }" in body
    assert re.search(r"return 403 '\{\"error\":\"forbidden\",\"rule\":\"\$mtls_api_route\"", body)


def test_the_maps_are_named_after_the_api():
    text = site(ROUTES, api_name="shop-api")
    assert "map $uri $mtls_shop_api_rule {" in text and "$mtls_shop_api_allowed = 0" in text


@pytest.mark.parametrize("routes", [[], None])
def test_without_rules_the_site_has_no_trace_of_them(routes):
    v = host_vars()
    v.pop("mtls_routes", None)
    without = nginx.render_site(v, OLD).decode()
    text = site(routes)
    assert text == without
    assert "mtls_route" not in text and "_allowed" not in text and "error_page 403" not in text


# --- bad rules: one line ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        ([{"allow": {"names": ["a"]}}], "mtls_routes: a rule has no 'path'"),
        ([{"path": "/a"}], "mtls_routes: a rule has no 'allow'"),
        ([{"path": "/a", "allow": {}}, {"path": "/a", "allow": {}}], "/a is listed twice"),
    ],
)
def test_a_rule_without_path_or_allow_or_a_path_twice_is_one_line(routes, message):
    with pytest.raises(BadInput, match=re.escape(message)) as caught:
        nginx.prepare(host_vars(mtls_routes=routes), None)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ({"path": "admin", "allow": {}}, ".path 'admin' is not a path that starts with '/'"),
        ({"path": "/admin/", "allow": {}}, "no trailing '/'"),
        ({"path": "/a/../b", "allow": {}}, "is not a path"),
        ({"path": "/a b", "allow": {}}, "is not a path"),
        ({"path": "/a", "allow": {}, "deny": []}, "has no key 'deny' (keys: path, allow)"),
        ({"path": "/a", "allow": {"name": ["x"]}}, "has no key 'name' (keys: names, ou, serials)"),
        ({"path": "/a", "allow": {"ou": ["ops,CN=x"]}}, "'ops,CN=x' is not an OU"),
        ({"path": "/a", "allow": {"names": ["Bob"]}}, "'Bob' is not a client name"),
        ({"path": "/a", "allow": {"serials": ["0x1F"]}}, "'0x1F' is not a serial in hex"),
    ],
)
def test_the_schema_refuses_unknown_keys_and_bad_values(route, message):
    from mtls_deploy import schema

    with pytest.raises(ValueError, match=re.escape(message)):
        schema.check_value([route], schema.role_schema("nginx")["mtls_routes"])


def test_the_schema_allows_what_the_pki_issues():
    """A name or OU the PKI issues is one a rule can name (and nothing that needs escaping)."""
    from mtls_deploy import schema
    from mtls_deploy.pki import profile, subject

    options = schema.role_schema("nginx")["mtls_routes"]["elements"]["options"]["allow"]
    assert options["options"]["names"]["elements"]["pattern"] == profile.CLIENT_NAME.pattern
    assert options["options"]["ou"]["elements"]["pattern"] == subject.OU.pattern


def write_inventory(folder, routes_yaml: str):
    (folder / "inventory").mkdir()
    (folder / "inventory" / "hosts.yml").write_text(
        "all:\n  children:\n    api:\n      hosts:\n"
        "        api1: {ansible_host: 127.0.0.1, ansible_port: 1, server_name: api1.example.test,"
        " https_port: 8443, https_listen: 127.0.0.1,\n"
        f"               mtls_routes: {routes_yaml}}}\n"
    )


@pytest.mark.parametrize(
    ("routes_yaml", "message"),
    [
        (
            "[{path: admin, allow: {names: [alice]}}]",
            "error: api1: mtls_routes.path 'admin' is not a path that starts with '/'",
        ),
        (
            "[{path: /admin, allow: {names: [alice]}, method: GET}]",
            "error: api1: mtls_routes has no key 'method' (keys: path, allow)",
        ),
    ],
)
def test_provision_refuses_a_bad_rule_in_one_line_before_connecting(
    tmp_path, monkeypatch, inv, routes_yaml, message
):
    """Port 1 answers nothing: an error about the connection would mean it tried."""
    write_inventory(tmp_path, routes_yaml)
    monkeypatch.setenv("MTLS_DEPLOY_PROJECT", str(tmp_path))
    monkeypatch.delenv("MTLS_DEPLOY_INVENTORY", raising=False)
    monkeypatch.chdir(tmp_path)
    code, out, err = inv("provision", "--host", "api1", "--check")
    lines = (out + err).strip().splitlines()
    assert code == 2, lines
    assert lines == [message + lines[0][len(message) :]] and lines[0].startswith(message), lines


def test_a_rule_without_a_path_fails_the_host_in_one_line_before_connecting(
    pki_store, monkeypatch, inv
):
    """The schema cannot say a key is required: the nginx role's prepare step, which runs
    before the host is reached (port 1: a connection error would mean it tried), says it."""
    write_inventory(pki_store.path.parent, "[{allow: {names: [alice]}}]")
    monkeypatch.setenv("MTLS_DEPLOY_PROJECT", str(pki_store.path.parent))
    monkeypatch.delenv("MTLS_DEPLOY_INVENTORY", raising=False)
    code, out, err = inv("provision", "--host", "api1", "--check")
    failed = [line for line in (out + err).splitlines() if line.startswith("failed   api1")]
    assert code == 2, out + err
    assert failed == [
        "failed   api1  mtls_routes: a rule has no 'path': write each as "
        "{path: /admin, allow: {names: [...], ou: [...], serials: [...]}}"
    ], out + err


def test_every_variable_fits_nginx_s_hash_bucket_with_the_longest_api_name():
    """nginx's variables_hash_bucket_size is 64: 8 (pointer) + 2 (length) + the name, rounded
    up to 8, plus the bucket's closing pointer: at most 46 characters ("could not build
    variables_hash" on the lab with $mtls_<32 characters>_rule_path, 47)."""
    text = site(ROUTES, api_name="a" * 32)
    names = set(re.findall(r"^map \S+ \$(\S+) \{", text, re.M)) | {"mtls_failure"}
    assert len(names) == 6 and max(map(len, names)) <= 46, sorted(names, key=len)[-1]
