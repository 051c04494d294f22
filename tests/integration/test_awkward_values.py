"""The most awkward values the schemas still allow, generated from the schemas themselves (the
longest, with dots, dashes, underscores and pluses wherever a pattern admits them), through
every template and script: the site passes ``nginx -t``, the pool ``php-fpm -t``, the units
``systemd-analyze verify``, the scripts ``sh -n``, and each value appears exactly where it
belongs. A new variable gets an awkward value without a change here; a new kind of value
fails until this module knows how to make one."""

import datetime
import re
import re._parser as regex_parser
import string
import subprocess
from itertools import cycle

import pytest

from mtls_deploy import apply, role_loader, schema, shell, variables
from mtls_deploy.facts import HostFacts, ResourceFacts, Watched, gather_script
from mtls_deploy.operations import plan, watched
from mtls_deploy.resources import Packages
from mtls_deploy.role_loader import PACKAGE_ROLES as ROLES_DIR
from mtls_deploy.role_loader import load

from .conftest import needs_lab

backend_php = load("backend_php").module
backend_python = load("backend_python").module
nginx = load("nginx").module
acme = load("acme").module

pytestmark = needs_lab

ROLES = ("tls", "acme", "nginx", "backend_php", "backend_python")
ENGINE = ("server_name", "https_listen", "https_port")  # the engine's that templates use
UNRENDERED = {"local_path"}  # files on the control machine: they keep their default
PUNCTUATION = "._-+"  # preferred wherever a pattern admits them: the awkward characters
FACTS = HostFacts(
    os_id="debian",
    os_version="12",
    packages={"nginx": "1.22.1", "php8.2-fpm": "8.2.7", "libssl3": "3.0.11"},
)
TEXTUAL = {"str", "dns_name", "address", "path", "user", "unit", "list"}
FALLBACKS = pytest.mark.parametrize("fallback", [max, min], ids=["highest", "lowest"])
AWKWARD_IP = "fd12:3456:789a:bcde:f012:3456:789a:bcde"  # the longest an IPv6 address prints


# --- awkward values, from the schemas --------------------------------------------------------


def from_pattern(pattern: str, letter: str, fallback=max) -> str:
    """The longest string ``pattern`` matches, punctuation wherever it may go, ``letter``
    where a letter may go (so that two variables get different values), else the class's
    ``fallback`` character (a size's unit, ``max``: m, M, s; ``min``: G, h), and 9 for a
    digit."""
    chars = cycle([letter, *PUNCTUATION])
    text = _emit(regex_parser.parse(pattern), chars, fallback)
    assert re.fullmatch(pattern, text), f"cannot make an awkward value for {pattern}"
    return text


def _emit(items, chars, fallback) -> str:
    return "".join(_emit_one(op, arg, chars, fallback) for op, arg in items)


def _emit_one(op, arg, chars, fallback) -> str:
    name = str(op)
    if name == "LITERAL":
        return chr(arg)
    if name == "IN":
        return _pick(arg, chars, fallback)
    if name == "MAX_REPEAT":
        low, high, items = arg
        return "".join(_emit(items, chars, fallback) for _ in range(min(high, max(low, 64))))
    if name == "SUBPATTERN":
        return _emit(arg[3], chars, fallback)
    if name == "BRANCH":
        return max((_emit(b, chars, fallback) for b in arg[1]), key=len)
    return ""  # assertions and anchors produce nothing


def _pick(members, chars, fallback) -> str:
    """A character of a class: the next awkward one it admits, else ``fallback(class)``."""
    allowed = set()
    for op, arg in members:
        if str(op) == "LITERAL":
            allowed.add(chr(arg))
        elif str(op) == "RANGE":
            allowed |= {chr(c) for c in range(arg[0], arg[1] + 1)}
    for _ in range(len(PUNCTUATION) + 1):
        char = next(chars)
        if char in allowed:
            return char
    return "9" if allowed <= set("0123456789") else fallback(allowed)  # numbers: the largest


def dns_name(stem: str) -> str:
    """253 characters: labels of 63 with dashes inside, made of ``stem``."""
    chars = cycle(stem + "-")
    label = "".join(next(chars) for _ in range(62)).rstrip("-").ljust(62, stem[0]) + stem[0]
    return ".".join([label] * 3 + [stem[0] * 61])


def path(letter: str, length: int) -> str:
    """An absolute path of exactly ``length`` characters, of names such as ``a.a-a_a+a``."""
    name = f"{letter}.{letter}-{letter}_{letter}+{letter}"
    text = ""
    while len(text) + len(name) + 1 <= length:
        text += "/" + name
    return text + ("/" + letter * (length - len(text) - 1) if length - len(text) > 1 else "")


def awkward(spec: dict, letter: str, fallback=max):
    """The most awkward value ``spec`` admits (``letter``: a letter, or a letter and a digit
    for a list's second element)."""
    kind = spec["type"]
    if "choices" in spec:
        return spec["choices"][0]
    makers = {
        "bool": lambda: True,
        "int": lambda: spec["max"],
        "float": lambda: spec["max"],
        "port": lambda: 65535,
        "str": lambda: from_pattern(spec["pattern"], letter, fallback),
        "dns_name": lambda: dns_name(letter),
        "ip": lambda: AWKWARD_IP,
        "listen": lambda: AWKWARD_IP,
        "address": lambda: dns_name(letter),
        "path": lambda: path(letter, spec.get("max_length", 255)),
        "user": lambda: from_pattern(schema.USER.pattern, letter, fallback),
        "unit": lambda: from_pattern(schema.UNIT.pattern, letter, fallback),
        "list": lambda: [awkward(spec["elements"], s, fallback) for s in (letter, letter + "9")],
    }
    assert kind in makers, f"no awkward value for type {kind}: teach this module one"
    value = makers[kind]()
    assert schema.check_value(value, spec) == value, (spec, value)
    return value


def awkward_vars(backend: str, fallback=max) -> dict:
    """Every variable of the API roles (and the engine's that templates use), awkward;
    ``fallback`` picks a class's character where no awkward one fits (a size's unit)."""
    specs = {name: variables.engine_specs()[name] for name in ENGINE}
    for role in ROLES:
        specs |= schema.role_schema(role)
    # A letter of its own for each text: upper case where a str's pattern admits it (there
    # are more texts than lower-case letters), lower case elsewhere.
    lower, upper = iter(string.ascii_lowercase), iter(string.ascii_uppercase)
    values = {}
    for name, spec in sorted(specs.items()):
        if spec["type"] in UNRENDERED or spec["type"] in ("dict", "map") or name in OWN_TESTS:
            continue
        textual = "choices" not in spec and spec["type"] in TEXTUAL
        capital = spec["type"] == "str" and "A-Z" in spec.get("pattern", "")
        letter = next(upper if capital else lower) if textual else "x"
        values[name] = awkward(spec, letter, fallback)
    values["http_port"] -= 1  # the acme role refuses http_port and https_port on one port
    defaults = {k: v for r in ROLES for k, v in _defaults(r).items() if k not in values}
    v = {**defaults, **values, "backend": backend, "inventory_hostname": "awkward"}
    # As the engine gives it to nginx: with what tls and the backend export to it.
    roles = role_loader.host_roles({**v, "roles": ["nginx"]})
    return role_loader.with_exports(roles, v, FACTS)["nginx"]


def _defaults(role: str) -> dict:
    import yaml

    return yaml.safe_load((ROLES_DIR / role / "defaults.yml").read_text())


# --- what we render, and where each value belongs --------------------------------------------


def rendered(v: dict) -> dict[str, str]:
    """Every file the roles render for ``v`` (by a short name)."""
    files = {"site": nginx.render_site(v, FACTS), "nginx_drop_in": nginx.render_hardening(v)}
    ordered = {**v, "server_cert": "acme"}  # what the acme role renders with server_cert: acme
    files |= {
        "acme_http": acme.render_http_server(ordered),
        "acme_ini": acme.render_cli_ini(ordered),
    }
    if v["backend"] == "php":
        files |= {
            "pool": backend_php.render_pool(v),
            "php_drop_in": backend_php.render_hardening(v, v["php_version"]),
        }
    else:
        units = backend_python.render_units(v)
        files |= {
            "uwsgi": units[f"{v['python_config_dir']}/uwsgi.ini"],
            "socket": units[f"/etc/systemd/system/{v['python_unit']}.socket"],
            "service": units[f"/etc/systemd/system/{v['python_unit']}.service"],
        }
    return {name: content.decode() for name, content in files.items()}


# Each line a value must be on, with {variable} where it goes. A value found anywhere else
# (or a variable of the roles missing here) fails the test.
PLACES = {
    "site": [
        '# The mTLS API "{api_name}": every client shows a certificate from the client CA; nginx',
        "    listen [{https_listen}]:{https_port} ssl http2;",
        "    server_name {server_name} {server_aliases[0]} {server_aliases[1]};",
        "    access_log {nginx_log_dir}/{api_name}.access.log mtls_{site_id};",
        "    error_log {nginx_log_dir}/{api_name}.error.log;",
        "    ssl_certificate {tls_dir}/server.crt;",
        "    ssl_certificate_key {tls_dir}/server.key;",
        "    ssl_client_certificate {tls_dir}/client-ca.crt;",
        "    ssl_verify_client {client_verify};",
        "    ssl_verify_depth {ssl_verify_depth};",
        "    ssl_crl {tls_dir}/crl.pem;",
        "    client_max_body_size {client_max_body_size};",
    ],
    "site:php": [
        "        fastcgi_pass unix:{php_socket};",
        "        fastcgi_param SCRIPT_FILENAME {php_app_dir}/index.php;",
    ],
    "site:python": [  # twice in the upstream: nginx may send a request once more (uWSGI's race)
        "    server unix:{python_socket} max_fails=0;",
        "    server unix:{python_socket} max_fails=0;",
        "        fastcgi_param SCRIPT_FILENAME {python_app_dir}/app.py;",
    ],
    "nginx_drop_in": ["ReadWritePaths=/var/log/nginx {nginx_log_dir} /var/lib/nginx /run"],
    "acme_http": [
        '# Port {http_port} of the API "{api_name}": the ACME CA fetches its HTTP-01 challenges here',
        "    listen [{https_listen}]:{http_port};",
        "    access_log {nginx_log_dir}/{api_name}.http.access.log;",
        "    error_log {nginx_log_dir}/{api_name}.http.error.log;",
        "    server_name {server_name} {server_aliases[0]} {server_aliases[1]};",
        "        return 301 https://{server_name}:{https_port}$request_uri;",
    ],
    "acme_ini": [
        '# Managed by mtls-deploy (role acme): certbot\'s settings for the lineage "{api_name}".',
        "# The provision runs `certbot certonly --config <this file> --cert-name {api_name} -d ...`;",
        "server = {acme_directory}",
        "email = {acme_email}",
        "eab-kid = {acme_eab_kid}",
        "eab-hmac-key = {acme_eab_hmac_key}",
    ],
    "pool": [
        "[{php_pool}]",
        "; with an app, app_environment's (the root-only include {php_pool}.env.conf beside this file).",
        "user = {php_user}",
        "listen = {php_socket}",
        "listen.owner = {php_listen_owner}",
        "listen.group = {php_listen_owner}",
        "pm = {php_pm}",
        "pm.max_children = {php_pm_max_children}",
        "pm.start_servers = {php_pm_start_servers}",
        "pm.min_spare_servers = {php_pm_min_spare_servers}",
        "pm.max_spare_servers = {php_pm_max_spare_servers}",
        "pm.max_requests = {php_pm_max_requests}",
        "process_control_timeout = {php_request_timeout}",
        "request_terminate_timeout = {php_request_timeout}",
        "php_admin_value[memory_limit] = {php_memory_limit}",
        "php_admin_value[open_basedir] = {php_app_dir}/",
    ],
    "php_drop_in": [
        "# removes it. A sandbox for Debian's php{php_version}-fpm.service: `systemd-analyze security",
        '# php{php_version}-fpm` goes from 9.6 ("UNSAFE") to about 2.5. The master stays root (it makes the',
        "# Read-only system. Writable: the sockets and pid file, the log (/var/log/php{php_version}-fpm.log,",
        "ReadWritePaths=/run/php {php_socket_dir} /var/log -/var/lib/php/sessions",
        '# (else every preg_* call warns "Allocation of JIT memory failed").',
        "# No writable and executable memory: PCRE's JIT needs it, so /etc/php/{php_version}/fpm/conf.d/90-mtls-deploy-hardening.ini sets pcre.jit = 0",
    ],
    "uwsgi": [
        "# No socket option: systemd passes the listening socket ({python_socket}) as fd 3",
        "processes = {python_processes}",
        "chdir = {python_app_dir}",
        "wsgi-file = {python_app_dir}/app.py",
        "procname-prefix-spaced = {python_unit}",
    ],
    "socket": [
        "ListenStream={python_socket}",
        "SocketUser={python_socket_user}",
        "SocketGroup={python_socket_group}",
    ],
    "service": [
        "# {python_unit}.socket passes in. Sandboxed: `systemd-analyze security {python_unit}.service`",
        "Requires={python_unit}.socket",
        "After={python_unit}.socket",
        "ExecStart=/usr/bin/uwsgi-core --ini {python_config_dir}/uwsgi.ini",
        "User={python_user}",
        "MemoryMax={python_memory_max}",
        "Also={python_unit}.socket",
    ],
}
# Rendered only in their own settings, and tried at their extremes by tests of their own:
# mtls_routes (a list of rules: 43 of them with a 32-character api_name pass nginx -t in
# tests/integration/test_routes.py), python_wsgi (only with app_src:
# tests/unit/test_backend_python_app.py, tests/integration/test_python_app.py).
OWN_TESTS = ("mtls_routes", "python_wsgi")
NOT_RENDERED = {  # read by the roles for paths, packages or decisions, not written in a file
    "backend", "crl_refresh_fraction", "hsts_max_age", "nginx_hardening", "nginx_site_dir",
    "php_hardening", "php_remove_www_pool", "server_cert", "server_ip_addresses", "acme_staging",
    # rendered as on/off; rendered only with app_src (tests/unit/test_backend_php_app.py)
    "php_opcache_validate_timestamps", "php_front_controller", "app_environment",
    *OWN_TESTS,
}  # fmt: skip


def places(v: dict) -> dict[str, list[str]]:
    """PLACES for the files rendered for ``v``, filled in."""
    fill = {
        **v,
        "site_id": v["api_name"].replace("-", "_"),
        "php_socket_dir": v["php_socket"].rsplit("/", 1)[0],
    }
    found = {"site": PLACES["site"] + PLACES[f"site:{v['backend']}"]}
    for name in rendered(v):
        if name != "site":
            found[name] = PLACES[name]
    return {name: [line.format(**fill) for line in lines] for name, lines in found.items()}


@FALLBACKS
@pytest.mark.parametrize("backend", ["php", "python"])
def test_each_value_appears_exactly_where_it_belongs(backend, fallback):
    v = awkward_vars(backend, fallback)
    files, expected = rendered(v), places(v)
    for name, lines in expected.items():
        missing = [line for line in lines if line not in files[name].splitlines()]
        assert not missing, f"{name}: {missing}"
    for variable in _declared() & set(v):  # a choice ("on", "php") is a common word: not counted
        value = v[variable]
        if not isinstance(value, str) or "choices" in _spec(variable):
            continue
        for name, content in files.items():
            wanted = sum(line.count(value) for line in expected[name])
            assert content.count(value) == wanted, f"{variable}={value!r} in {name}"


def test_every_rendered_variable_has_its_places():
    named = " ".join(line for lines in PLACES.values() for line in lines)
    for variable in _declared() - NOT_RENDERED:
        assert "{" + variable in named, f"say where {variable} belongs in PLACES"


def _spec(name: str) -> dict:
    specs = [schema.role_schema(r) for r in ROLES] + [variables.engine_specs()]
    return next(found[name] for found in specs if name in found)


def _declared() -> set[str]:
    names = set(ENGINE)
    for role in ROLES:
        names |= {n for n, s in schema.role_schema(role).items() if s["type"] not in UNRENDERED}
    return names - {"server_cert_files"}


# --- the real checks ---------------------------------------------------------------------------


def throwaway_tls() -> dict[str, bytes]:
    """A self-signed certificate, its key and an empty CRL, for nginx -t."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "awkward")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(name)
        .last_update(now - datetime.timedelta(days=1))
        .next_update(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {"cert": cert.public_bytes(pem), "key": key_pem, "crl": crl.public_bytes(pem)}


@FALLBACKS
def test_the_site_passes_nginx_t(toolbox, fallback):
    for backend in ("php", "python"):
        v = awkward_vars(backend, fallback)
        tls, paths = throwaway_tls(), role_loader.exports_for(v, "tls")
        site, http = nginx.site_path(v), acme.http_conf_path(v)
        main = f"/etc/nginx/awkward-{backend}.conf"
        files = {
            main: f"events {{}}\nhttp {{\n    include {site};\n    include {http};\n}}\n".encode(),
            site: nginx.render_site(v, FACTS),
            http: acme.render_http_server(v),
            paths["tls_certificate"]: tls["cert"],
            paths["tls_certificate_key"]: tls["key"],
            paths["tls_client_ca"]: tls["cert"],
            paths["tls_crl"]: tls["crl"],
            f"{v['nginx_log_dir']}/.keep": b"",
        }
        # nginx -t binds the listen address: in a network namespace of its own that has it
        script = 'ip link set lo up && ip addr add "$1" dev lo && exec nginx -t -c "$2"'
        private_network = ["unshare", "--user", "--map-root-user", "--net"]
        argv = [*private_network, "sh", "-c", script, "sh", v["https_listen"], main]
        result = toolbox.run(argv, files)
        assert result.returncode == 0, result.stderr


@FALLBACKS
def test_the_pool_passes_php_fpm_t(toolbox, fallback):
    v = awkward_vars("php", fallback)
    users = [v["php_user"], v["php_listen_owner"]]
    create_users(toolbox, users)
    folder = "/tmp/awkward-php"
    main = f"{folder}/php-fpm.conf"
    files = {
        main: (
            f"[global]\npid = {folder}/php-fpm.pid\nerror_log = {folder}/php-fpm.log\n"
            f"include = {folder}/pool.d/*.conf\n"
        ).encode(),
        f"{folder}/pool.d/{v['php_pool']}.conf": backend_php.render_pool(v),
    }
    script = 'exec "$(ls /usr/sbin/php-fpm* | head -n 1)" --test --fpm-config "$1"'
    result = toolbox.run(["sh", "-c", script, "sh", main], files)
    assert result.returncode == 0, result.stdout + result.stderr


@FALLBACKS
def test_the_units_pass_systemd_analyze_verify(toolbox, fallback):
    v = awkward_vars("python", fallback)
    create_users(toolbox, [v["python_user"], v["python_socket_user"], v["python_socket_group"]])
    folder = "/tmp/awkward-units"
    units = backend_python.render_units(v)
    socket, service = (f"{folder}/{v['python_unit']}.{kind}" for kind in ("socket", "service"))
    php = awkward_vars("php", fallback)
    stand_in = b"[Service]\nExecStart=/bin/true\n"
    files = {
        socket: units[f"/etc/systemd/system/{v['python_unit']}.socket"],
        service: units[f"/etc/systemd/system/{v['python_unit']}.service"],
        f"{folder}/awkward-nginx.service": stand_in,
        f"{folder}/awkward-nginx.service.d/hardening.conf": nginx.render_hardening(v),
        f"{folder}/awkward-php.service": stand_in,
        f"{folder}/awkward-php.service.d/hardening.conf": backend_php.render_hardening(
            php, php["php_version"]
        ),
    }
    argv = ["systemd-analyze", "verify", "--man=no", socket, service]
    result = toolbox.run(
        [*argv, f"{folder}/awkward-nginx.service", f"{folder}/awkward-php.service"], files
    )
    assert result.returncode == 0 and not unit_warnings(result.stderr, folder), result.stderr


def unit_warnings(stderr: str, folder: str) -> list[str]:
    """systemd's complaints about our files and the names in them (not about the host's own
    units)."""
    return [line for line in stderr.splitlines() if folder in line or "name" in line]


def create_users(toolbox, names: list[str]) -> None:
    """System users the pool and the units name (php-fpm -t looks them up)."""
    script = 'for u; do id -u "$u" >/dev/null 2>&1 || useradd --system --no-create-home "$u"; done'
    result = toolbox.run(["sh", "-c", script, "sh", *names])
    assert result.returncode == 0, result.stderr


def scripts(backend: str, fallback=max) -> dict[str, str]:
    """Every script the engine builds for the awkward host: the facts gathering, the apply
    script with every step changed, and each handler."""
    v = {**awkward_vars(backend, fallback), "server_cert": "acme"}  # with the order's command
    roles = [acme, nginx, backend_php if backend == "php" else backend_python]
    resources = [r for role in roles for r in role.resources(v, FACTS)]
    packages = tuple(n for r in resources if isinstance(r, Packages) for n in r.names)
    steps = plan(
        [r for r in resources if not isinstance(r, Packages)], ResourceFacts({}, frozenset(), {})
    )
    handlers = [h for role in roles for h in role.handlers(v, FACTS)]
    backend_role = "backend_php" if backend == "php" else "backend_python"
    validators = {
        name: check
        for role in ("nginx", backend_role)
        for name, check in role_loader.load(role).validators(v, FACTS).items()
    }
    found = {
        "gather": gather_script(packages, Watched.of(*watched(resources))),
        "apply": apply.build_script(steps, handlers, validators),
    }
    checks = {f"validator {n}": shell.render(c.command) for n, c in validators.items()}
    return found | checks | {f"handler {h.name}": shell.render(h.command) for h in handlers}


@FALLBACKS
@pytest.mark.parametrize("backend", ["php", "python"])
def test_the_scripts_pass_sh_n(backend, fallback):
    for name, text in scripts(backend, fallback).items():
        result = subprocess.run(["sh", "-n"], input=text, capture_output=True, text=True)
        assert result.returncode == 0, f"{name}: {result.stderr}"
