"""nginx: the mTLS site in front of the host's FastCGI backend (``backend: php | python``).

What the site says depends on the versions on the host: nginx >= 1.25.1 wants ``http2 on;``
instead of ``listen ... http2``; nginx >= 1.23.2 rotates session-ticket keys itself, so tickets
are only turned off before it; OpenSSL >= 3.5 offers the post-quantum X25519MLKEM768 group.
Unknown versions (nginx not installed yet) get the form every version accepts.
"""

import re

from mtls_deploy.errors import BadInput
from mtls_deploy.facts import HostFacts
from mtls_deploy.resources import Absent, Directory, File, Handler, Packages, Service
from mtls_deploy.templating import render

NGINX = {"validate": "nginx", "notify": ("reload nginx",)}
DEFAULT_SITE = "/etc/nginx/sites-enabled/default"
AVAILABLE_DEFAULT_SITE = "/etc/nginx/sites-available/default"
DROP_IN_DIR = "/etc/systemd/system/nginx.service.d"
DROP_IN = f"{DROP_IN_DIR}/hardening.conf"
# A sandbox applies when nginx starts: a changed drop-in needs a restart (a reload keeps the
# master, and so the old sandbox).
UNIT_CHANGED = ("daemon-reload", "restart nginx")
# At most 32 characters: nginx's $mtls_<name>_reason must fit variables_hash_bucket_size (64).
API_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")

# Mozilla Server Side TLS, guideline 6.0, "intermediate".
MOZILLA_PROTOCOLS = "TLSv1.2 TLSv1.3"
MOZILLA_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)
CURVES = "X25519:prime256v1:secp384r1"
CURVES_PQ = "X25519MLKEM768:" + CURVES  # OpenSSL 3.5 and later
# What the roles this one depends on export to it (role_loader.with_exports): tls its paths,
# the backend the template of its locations (``nginx_locations``) and what that template reads
# (a FastCGI socket and front controller, a proxy's socket, a document root).
EXPORTED = ("tls_certificate", "tls_certificate_key", "tls_client_ca", "tls_crl")
BACKEND_EXPORTS = ("nginx_locations", "fastcgi_", "front_controller", "document_root", "proxy_")
FASTCGI_LOCATIONS = "nginx/locations/fastcgi.conf.j2"


def tls_profile(facts: HostFacts) -> dict:
    """The version-dependent part of the site, from the host's nginx and OpenSSL versions."""
    nginx, openssl = facts.version("nginx", "nginx-core"), facts.version("libssl3", "openssl")
    return {
        "http2_directive": bool(nginx) and nginx >= (1, 25, 1),
        "session_tickets_off": not nginx or nginx < (1, 23, 2),
        "ssl_ecdh_curve": CURVES_PQ if openssl and openssl >= (3, 5) else CURVES,
        "ssl_protocols": MOZILLA_PROTOCOLS,
        "ssl_ciphers": MOZILLA_CIPHERS,
    }


def listen_address(v: dict) -> str:
    """``127.0.0.1:8441``, ``*:443``, ``[::1]:443``."""
    for name in ("https_listen", "https_port"):
        if v.get(name) in (None, ""):
            raise BadInput(f"{name} is not set: the site needs the address and port to listen on")
    address = str(v["https_listen"])
    if ":" in address and not address.startswith("["):
        address = f"[{address}]"
    return f"{address}:{v['https_port']}"


def api_name(v: dict) -> str:
    """``api_name``, checked: it becomes a file name and part of nginx variable names."""
    name = str(v["api_name"])
    if not API_NAME.fullmatch(name):
        raise BadInput(f"api_name must be letters, digits, '-' and '_', not {name!r}")
    return name


def site_context(v: dict, facts: HostFacts) -> dict:
    """Every variable the site template uses: the role's, and what tls (paths, names) and
    the backend (socket, front controller) export to it."""
    if not v.get("server_name"):
        raise BadInput("server_name is not set: the site needs the name clients connect to")
    name, log_dir = api_name(v), v["nginx_log_dir"]
    return {
        "api_name": name,
        "site_id": name.replace("-", "_"),
        "server_names": v["server_names"],
        "listen": listen_address(v),
        "client_verify": v["client_verify"],  # the schema made a bare YAML `on` "on"
        "ssl_verify_depth": int(v["ssl_verify_depth"]),
        "hsts_max_age": int(v["hsts_max_age"]),
        "client_max_body_size": v["client_max_body_size"],
        "access_log": f"{log_dir}/{name}.access.log",
        "error_log": f"{log_dir}/{name}.error.log",
        **{k: v[k] for k in EXPORTED},
        **backend_exports(v),
        **tls_profile(facts),
        "routes": routes(v),
    }


def backend_exports(v: dict) -> dict:
    """What the backend exported for its locations; FastCGI's template unless it names one."""
    return {"nginx_locations": FASTCGI_LOCATIONS} | {
        k: value for k, value in v.items() if k.startswith(BACKEND_EXPORTS)
    }


# --- who may call what (mtls_routes) -----------------------------------------------------------

ROUTE_KEYS = ("path", "allow")
# $ssl_client_s_dn is RFC 2253 (OpenSSL's XN_FLAG_RFC2253): RDNs joined by ",", the attributes
# of a multi-valued RDN by "+", and a "," "+" or backslash inside a value escaped with a
# backslash. So an attribute counts only where one starts: after whole "type=value" pairs, each
# value read escape by escape ("O=Evil\,OU=ops" holds no OU). \x5c is the backslash (nginx's
# config parser turns a doubled one into one). Every step is forced: linear in the DN's length.
WHOLE_ATTRIBUTES = r"(?:[^=,+]+=(?:[^\x5c,+]|\x5c.)*[,+])*"
ATTRIBUTE_END = "(?:[,+]|$)"


def routes(v: dict) -> list[dict]:
    """``mtls_routes`` as the site's maps read them, longest path first (the first regex that
    matches wins in an nginx map, so the longest matching prefix decides): ``id`` (1, 2, ...),
    ``path``, ``uri`` (the regex of $uri it covers, on whole segments) and ``callers`` (one
    regex per criterion, over "$ssl_client_verify:$ssl_client_serial:$ssl_client_s_dn").
    The schema checked each value; a rule without path or allow, or a path listed twice, is one
    line here.

    Example: ``routes({"mtls_routes": [{"path": "/admin", "allow": {"names": ["alice"]}}]})``
    -> ``[{"id": 1, "path": "/admin", "uri": "^/admin(/|$)", "callers": [...]}]``
    """
    rules = v.get("mtls_routes") or []
    for rule in rules:
        missing = [key for key in ROUTE_KEYS if key not in rule]
        if missing:
            raise BadInput(
                f"mtls_routes: a rule has no {missing[0]!r}: write each as "
                "{path: /admin, allow: {names: [...], ou: [...], serials: [...]}}"
            )
    paths = [rule["path"] for rule in rules]
    if twice := sorted({path for path in paths if paths.count(path) > 1}):
        raise BadInput(
            f"mtls_routes: {twice[0]} is listed twice: merge its allow lists into one rule"
        )
    ordered = sorted(rules, key=lambda rule: -len(rule["path"]))
    return [_route(number, rule) for number, rule in enumerate(ordered, start=1)]


def _route(number: int, rule: dict) -> dict:
    """One rule of ``routes``."""
    path, allow = rule["path"], rule["allow"]
    prefix = "" if path == "/" else _literal(path)
    return {"id": number, "path": path, "uri": f"^{prefix}(/|$)", "callers": callers(allow)}


def callers(allow: dict) -> list[str]:
    """The regexes of the callers ``allow`` lets in, over "$ssl_client_verify:$ssl_client_serial:
    $ssl_client_s_dn": a verified certificate whose CN is one of ``names``, or with an OU in
    ``ou``, or whose serial is one of ``serials`` (hex, any case, leading zeros or not)."""
    subject = f"SUCCESS:[0-9A-F]*:{WHOLE_ATTRIBUTES}"
    found = [
        f"{subject}{attribute}={_literal(value)}{ATTRIBUTE_END}"
        for attribute, key in (("CN", "names"), ("OU", "ou"))
        for value in allow.get(key) or []
    ]
    return found + [
        f"SUCCESS:0*{s.upper().lstrip('0') or '0'}:" for s in allow.get("serials") or []
    ]


def _literal(text: str) -> str:
    """``text`` as a regex that matches only itself. The schema lets only letters, digits and
    ``/ . _ ~ -`` through; of those, ``.`` is special (a backslash before it means the same to
    nginx's config parser and to PCRE)."""
    if not re.fullmatch(r"[A-Za-z0-9/._~-]*", text):
        raise BadInput(f"mtls_routes: {text!r} has characters a rule cannot hold")
    return text.replace(".", r"\.")


def prepare(v: dict, context) -> list:
    """Check ``mtls_routes`` as a whole before anything connects (the schema checks each value)."""
    routes(v)
    return []


def site_path(v: dict) -> str:
    """``/etc/nginx/conf.d/api.conf``."""
    return f"{v['nginx_site_dir']}/{api_name(v)}.conf"


def render_site(v: dict, facts: HostFacts) -> bytes:
    """The site file for this host."""
    template = v["nginx_site_template"]
    return render(template, **site_context(v, facts))


def render_hardening(v: dict) -> bytes:
    """The systemd drop-in that sandboxes Debian's nginx.service (writable: its logs, its
    buffers, /run for the pid file)."""
    writable = dict.fromkeys(["/var/log/nginx", v["nginx_log_dir"], "/var/lib/nginx", "/run"])
    return render("systemd/nginx-hardening.conf.j2", writable=list(writable))


def hardening(v: dict) -> list:
    """The drop-in in place, or gone with ``nginx_hardening: false``; either way nginx restarts."""
    if not v["nginx_hardening"]:
        return [Absent(DROP_IN, notify=UNIT_CHANGED)]
    return [Directory(DROP_IN_DIR), File(DROP_IN, render_hardening(v), notify=UNIT_CHANGED)]


def resources(v: dict, facts: HostFacts) -> list:
    """nginx installed, Debian's default site gone, our site in place (checked with nginx -t),
    the unit sandboxed, nginx enabled and running (inside the sandbox from its first start)."""
    return [
        Packages(("nginx",)),
        Absent(DEFAULT_SITE, **NGINX),
        File(site_path(v), render_site(v, facts), **NGINX),
        *hardening(v),
        Service("nginx"),
    ]


# nginx-common makes the default site's link on its first install only (postinst, no previous
# version): a reinstall does not bring it back. Put back only where the package still is.
RESTORE_DEFAULT_SITE = (
    f"if [ -f {AVAILABLE_DEFAULT_SITE} ] && [ -d {DEFAULT_SITE.rsplit('/', 1)[0]} ] && "
    f"[ ! -e {DEFAULT_SITE} ] && [ ! -L {DEFAULT_SITE} ]; then "
    f"ln -s {AVAILABLE_DEFAULT_SITE} {DEFAULT_SITE}; fi"
)


def restore(v: dict) -> list[tuple[str, str, str]]:
    """What ``inv unprovision`` puts back that no package does, as (kind, name, fixed script):
    Debian's default site, which ``resources`` took away, when nginx-common is still there."""
    return [("link", DEFAULT_SITE, RESTORE_DEFAULT_SITE)]


# `systemctl reload nginx` returns as soon as the signal is sent, while the old workers still
# accept connections for a moment: a revoked client could get in right after a CRL push. So
# wait (at most RELOAD_TIMEOUT s) until every worker that accepted connections before is gone or
# shutting down and new ones accept: the new configuration is live. Worker pids come from
# /proc ("nginx: worker process", not "... is shutting down"): procps may be missing.
RELOAD_TIMEOUT = 10
RELOAD_AND_WAIT = rf"""
mtls_accepting() {{
  for p in /proc/[0-9]*; do
    case "$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)" in
      *"shutting down"*) ;;
      "nginx: worker process"*) echo "${{p#/proc/}}" ;;
    esac
  done
}}
mtls_old=$(mtls_accepting)
master=$(cat /run/nginx.pid 2>/dev/null || true)
if [ -n "$master" ] && kill -0 "$master" 2>/dev/null; then
  systemctl reload nginx
else
  systemctl restart nginx
fi
mtls_try=0
while :; do
  mtls_now=" $(echo $(mtls_accepting)) "; mtls_stale=
  for p in $mtls_old; do case "$mtls_now" in *" $p "*) mtls_stale=1 ;; esac; done
  [ "$mtls_now" != "  " ] && [ -z "$mtls_stale" ] && break
  mtls_try=$((mtls_try + 1))
  if [ $mtls_try -ge {RELOAD_TIMEOUT * 10} ]; then
    echo "nginx did not take the new configuration within {RELOAD_TIMEOUT} s" >&2; exit 1
  fi
  sleep 0.1
done
""".strip()


# A sandbox applies at start: restart. If nginx does not come back (a path the sandbox hides),
# its own [emerg] line goes last on stderr, where the report takes the reason from.
RESTART_OR_SAY_WHY = (
    "systemctl restart nginx || { journalctl _SYSTEMD_UNIT=nginx.service --since=-30s "
    "--no-pager -o cat | grep -m1 emerg >&2; false; }"
)


def handlers(v: dict, facts: HostFacts) -> list[Handler]:
    """Reload nginx after its files changed (the engine ran ``nginx -t`` before), and return
    only once the old workers no longer take new connections. Restart it after its unit changed:
    last, so that when both changed (a first run) the restarted nginx has both; the reload
    before it is then redundant but harmless, and keeps the two handlers independent."""
    return [
        Handler("reload nginx", RELOAD_AND_WAIT, order=60),
        Handler("restart nginx", RESTART_OR_SAY_WHY, order=61),
    ]
