"""acme: with ``server_cert: acme``, the server certificate is ordered on the API host.

Debian's certbot, HTTP-01 with the webroot method: a port-80 server (``http_port`` on
``https_listen``) serves ``/.well-known/acme-challenge/`` and redirects the rest to HTTPS.
The order is one guarded Command, run before the nginx role writes the HTTPS site:

- ``unless``: ``mtls-deploy-acme check`` passes when certbot's lineage (named ``api_name``)
  came from the wanted directory and holds exactly the wanted names: a second run orders
  nothing; changed names expand the same lineage (``--cert-name``, ``expand``).
- the order reloads (or first starts) nginx with the port-80 server, proves it serves a
  file, then runs certbot; a refused order is one line with the ACME error type and detail,
  and the run stops before the site names the new certificate: the old one keeps serving.

nginx's ``ssl_certificate`` is then the lineage's ``fullchain.pem`` (this role's exports
override the tls role's paths). certbot.timer renews; the deploy hook reloads nginx only if
``nginx -t`` passes. With another ``server_cert`` the role only takes its port-80 server and
hook away and stops the timer (the lineage stays: ``certbot delete`` removes it).
"""

from pathlib import Path

from mtls_deploy.errors import BadInput, UserError
from mtls_deploy.resources import Absent, Command, Directory, File, Packages, Service
from mtls_deploy.templating import render

NGINX = {"validate": "nginx", "notify": ("reload nginx",)}
LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
LIVE = "/etc/letsencrypt/live"
WEBROOT = "/var/lib/mtls-deploy/acme-webroot"
CONFIG_DIR = "/etc/mtls-deploy/acme"
CA_BUNDLE = f"{CONFIG_DIR}/ca-bundle.pem"
TOOL = "/usr/local/sbin/mtls-deploy-acme"
HOOK_DIRS = ("/etc/letsencrypt", "/etc/letsencrypt/renewal-hooks")
HOOK = "/etc/letsencrypt/renewal-hooks/deploy/mtls-deploy-nginx"
CERTBOT_DROP_IN_DIR = "/etc/systemd/system/certbot.service.d"
CERTBOT_DROP_IN = f"{CERTBOT_DROP_IN_DIR}/mtls-deploy-ca.conf"
DEFAULT_SITE = "/etc/nginx/sites-enabled/default"  # listens on *:80: gone before nginx starts
UNIT_CHANGED = ("daemon-reload",)
HERE = Path(__file__).resolve().parent


def active(v: dict) -> bool:
    return v.get("server_cert") == "acme"


def cert_name(v: dict) -> str:
    """certbot's lineage name: ``api_name``, so a new server_name expands the same lineage."""
    return str(v["api_name"])


def directory(v: dict) -> str:
    """``acme_directory`` when set (it wins), else Let's Encrypt's (staging with acme_staging)."""
    if v.get("acme_directory"):
        return v["acme_directory"]
    return LETSENCRYPT_STAGING if v.get("acme_staging") else LETSENCRYPT


def domains(v: dict) -> list[str]:
    """server_name first, then the aliases, without repeats (what tls exports)."""
    return list(dict.fromkeys([v["server_name"], *(v.get("server_aliases") or [])]))


def exports(v: dict, facts) -> dict:
    """The lineage's files for nginx's ssl_certificate and ssl_certificate_key (acme only)."""
    if not active(v):
        return {}
    live = f"{LIVE}/{cert_name(v)}"
    return {
        "tls_certificate": f"{live}/fullchain.pem",
        "tls_certificate_key": f"{live}/privkey.pem",
    }


def http_conf_path(v: dict) -> str:
    """``/etc/nginx/conf.d/api-http.conf``, beside the HTTPS site."""
    return f"{v['nginx_site_dir']}/{cert_name(v)}-http.conf"


def listen_address(address: str, port: int) -> str:
    """``127.0.0.21:80``, ``*:80``, ``[::1]:80``: the HTTPS site's address, port ``port``."""
    address = str(address)
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def render_http_server(v: dict) -> bytes:
    """The port-80 server: challenges from the webroot, everything else to HTTPS."""
    port = int(v["https_port"])
    if int(v["http_port"]) == port:
        raise BadInput(
            f"{v['inventory_hostname']}: http_port {port} is https_port too; the port-80 server "
            "needs a port of its own (the ACME CA checks HTTP-01 on port 80)"
        )
    return render(
        "nginx/acme-http.conf.j2",
        api_name=cert_name(v),
        access_log=f"{v['nginx_log_dir']}/{cert_name(v)}.http.access.log",
        error_log=f"{v['nginx_log_dir']}/{cert_name(v)}.http.error.log",
        http_port=int(v["http_port"]),
        listen=listen_address(v["https_listen"], int(v["http_port"])),
        server_names=domains(v),
        webroot=WEBROOT,
        https_suffix="" if port == 443 else f":{port}",
    )


def render_cli_ini(v: dict) -> bytes:
    """certbot's settings for the lineage: directory, webroot, account, EAB."""
    kid, key = v.get("acme_eab_kid") or "", v.get("acme_eab_hmac_key") or ""
    if bool(kid) != bool(key):
        missing = "acme_eab_hmac_key" if kid else "acme_eab_kid"
        raise BadInput(
            f"{v['inventory_hostname']}: external account binding needs acme_eab_kid and "
            f"acme_eab_hmac_key together; set {missing} too, or neither"
        )
    return render(
        "acme/cli.ini.j2",
        cert_name=cert_name(v),
        directory=directory(v),
        webroot=WEBROOT,
        email=v.get("acme_email") or "",
        eab_kid=kid,
        eab_hmac_key=key,
    )


def ca_bundle(v: dict) -> bytes | None:
    """``acme_ca_bundle``'s PEM (a private ACME CA's roots), or None."""
    path = v.get("acme_ca_bundle")
    if not path:
        return None
    try:
        pem = Path(path).expanduser().read_bytes()
    except OSError as error:
        raise UserError(
            f"{v['inventory_hostname']}: cannot read acme_ca_bundle {path}: {error.strerror}"
        ) from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise UserError(
            f"{v['inventory_hostname']}: acme_ca_bundle {path} holds no PEM certificate; give "
            "the ACME CA's root certificates (PEM)"
        )
    return pem


def trust(v: dict) -> list:
    """The private ACME CA's roots for certbot (the order and certbot.timer), or none."""
    pem = ca_bundle(v)
    if pem is None:
        return [Absent(CA_BUNDLE), Absent(CERTBOT_DROP_IN, notify=UNIT_CHANGED)]
    drop_in = render("acme/certbot-ca.conf.j2", ca_bundle=CA_BUNDLE)
    return [
        File(CA_BUNDLE, pem),
        Directory(CERTBOT_DROP_IN_DIR),
        File(CERTBOT_DROP_IN, drop_in, notify=UNIT_CHANGED),
    ]


def order(v: dict) -> Command:
    """certbot certonly, unless the lineage already holds exactly these names from this CA."""
    names, config = domains(v), f"{CONFIG_DIR}/{cert_name(v)}.ini"
    address, port = str(v["https_listen"]), str(v["http_port"])
    return Command(
        ((TOOL, "order", cert_name(v), config, address, port, *names),),
        unless=((TOOL, "check", cert_name(v), directory(v), *names),),
    )


def handlers(v: dict, facts) -> list:
    return []  # the nginx role owns "reload nginx", the engine "daemon-reload"


def resources(v: dict, facts) -> list:
    """certbot, the tool, the hook, the settings, the port-80 server, the order, the timer;
    with another server_cert, the port-80 server and the hook gone and the timer stopped."""
    if not active(v):
        return [
            Absent(http_conf_path(v), **NGINX),
            Absent(HOOK),
            Service("certbot.timer", running=False, enabled=False),
        ]
    secret = bool(v.get("acme_eab_hmac_key"))
    return [
        Packages(("certbot",)),
        Directory(CONFIG_DIR, mode=0o700),
        Directory(WEBROOT),
        *[Directory(d) for d in (*HOOK_DIRS, HOOK.rsplit("/", 1)[0])],
        File(TOOL, (HERE / "mtls-deploy-acme").read_bytes(), mode=0o755),
        File(HOOK, render("acme/deploy-hook.sh"), mode=0o755),
        File(f"{CONFIG_DIR}/{cert_name(v)}.ini", render_cli_ini(v), mode=0o600, secret=secret),
        *trust(v),
        Absent(DEFAULT_SITE, **NGINX),
        File(http_conf_path(v), render_http_server(v), **NGINX),
        order(v),
        Service("certbot.timer"),
    ]
