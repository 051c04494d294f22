"""tls: put the server certificate, its key, the client CA and the CRL where nginx reads them.

The client CA alone goes into ``ssl_client_certificate``: nginx admits every certificate a CA
named there ever signed, so the server CA (or any public CA) must never be in it.
"""

from pathlib import Path

from mtls_deploy.errors import UserError
from mtls_deploy.resources import Directory, File

NGINX = {"validate": "nginx", "notify": ("reload nginx",)}
TLS_DIR = "/etc/nginx/mtls"  # as in defaults.yml, for callers that have only a host's vars


def tls_paths(v: dict) -> dict:
    """Paths of the four files on the host (for the nginx site, the CRL push, the smoke test)."""
    folder = v.get("tls_dir") or TLS_DIR
    return {
        "certificate": f"{folder}/server.crt",
        "certificate_key": f"{folder}/server.key",
        "client_ca": f"{folder}/client-ca.crt",
        "crl": f"{folder}/crl.pem",
    }


def resources(v: dict, facts) -> list:
    """The TLS directory and its four files, from the PKI (or from files for a public CA)."""
    from mtls_deploy.pki_store import PkiStore

    store = PkiStore.open()
    paths = tls_paths(v)
    certificate, key = server_certificate(store, v)
    return [
        Directory(v["tls_dir"], mode=0o750),
        File(paths["certificate"], certificate, **NGINX),
        File(paths["certificate_key"], key, mode=0o600, secret=True, **NGINX),
        File(paths["client_ca"], store.client_ca_pem(), **NGINX),
        File(paths["crl"], fresh_crl(store, v), **NGINX),
    ]


def handlers(v: dict, facts) -> list:
    return []  # the nginx role owns "reload nginx"


def server_names(v: dict) -> list[str]:
    """server_name first (it becomes the CN), then the aliases, without repeats."""
    return list(dict.fromkeys([v["server_name"], *v.get("server_aliases", [])]))


def server_certificate(store, v: dict) -> tuple[bytes, bytes]:
    """(certificate chain PEM as nginx sends it, key PEM) for this host."""
    if v.get("server_cert") == "files":
        return certificate_from_files(v)
    names, addresses = server_names(v), v.get("server_ip_addresses", [])
    if v.get("ansible_check_mode"):
        return store.server_cert_preview(v["inventory_hostname"], names, addresses)
    issued = store.server_cert(v["inventory_hostname"], names, addresses)
    # The server CA is the root clients already hold (api-ca.crt): sending it on every
    # handshake costs bytes and proves nothing, so the chain is the leaf alone.
    return issued.cert_pem, issued.key_pem


def certificate_from_files(v: dict) -> tuple[bytes, bytes]:
    """A public CA's certificate: cert + chain concatenated, and its key."""
    files = v.get("server_cert_files") or {}
    missing = [k for k in ("cert", "key") if not files.get(k)]
    if missing:
        raise UserError(
            f"{v['inventory_hostname']}: server_cert is 'files' but server_cert_files.{missing[0]} "
            "is empty; give the PEM paths on the control machine"
        )
    read = {k: _read(v, files[k]) for k in ("cert", "chain", "key") if files.get(k)}
    chain = read.get("chain", b"")
    return read["cert"].rstrip(b"\n") + b"\n" + chain, read["key"]


def _read(v: dict, path: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as error:
        raise UserError(
            f"{v['inventory_hostname']}: cannot read {path}: {error.strerror}"
        ) from None


def fresh_crl(store, v: dict) -> bytes:
    """The CRL, re-signed first when less than ``crl_refresh_fraction`` of its life is left
    (an expired CRL makes nginx refuse every client)."""
    if crl_needs_refresh(store, v.get("crl_refresh_fraction", 0.33)) and not v.get(
        "ansible_check_mode"
    ):
        store.refresh_crl()
    return store.crl_pem()


def crl_needs_refresh(store, fraction: float, now=None) -> bool:
    """True when the remaining lifetime is below ``fraction`` of the whole."""
    from datetime import UTC, datetime

    now = now or datetime.now(UTC)
    this_update, next_update = store.crl_this_update(), store.crl_next_update()
    lifetime = (next_update - this_update).total_seconds()
    return (next_update - now).total_seconds() < fraction * lifetime
