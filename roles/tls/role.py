"""tls: put the server certificate, its key, the client CA and the CRL where nginx reads them.

The client CA alone goes into ``ssl_client_certificate``: nginx admits every certificate a CA
named there ever signed, so the server CA (or any public CA) must never be in it.

Issuing the server certificate and re-signing the CRL happen in ``prepare``, once per host and
before planning; ``resources`` only reads what the PKI holds (in check mode, a certificate that
would be issued shows as a placeholder naming why).
"""

import re
from datetime import UTC, datetime
from pathlib import Path

from mtls_deploy.errors import UserError
from mtls_deploy.operations import Step
from mtls_deploy.resources import Directory, File

NGINX = {"validate": "nginx", "notify": ("reload nginx",)}
SERVER_TAG = ("server-cert",)  # `inv maintain` pushes a renewed certificate with the CRL alone


def tls_paths(v: dict) -> dict:
    """Paths of the four files on the host, by the names the site template uses."""
    folder = v["tls_dir"]
    return {
        "tls_certificate": f"{folder}/server.crt",
        "tls_certificate_key": f"{folder}/server.key",
        "tls_client_ca": f"{folder}/client-ca.crt",
        "tls_crl": f"{folder}/crl.pem",
    }


def server_names(v: dict) -> list[str]:
    """server_name first (it becomes the CN), then the aliases, without repeats."""
    return list(dict.fromkeys([v["server_name"], *(v.get("server_aliases") or [])]))


def exports(v: dict, facts) -> dict:
    """For the roles that depend on tls: the four paths and the names the certificate holds."""
    return {**tls_paths(v), "server_names": server_names(v)}


def _store(v: dict):
    from mtls_deploy.pki.quick import QuickStore
    from mtls_deploy.pki.settings import PkiSettings

    # the PKI's lifetimes (server_lifetime, crl_lifetime, ...) from the host's group_vars/all;
    # QuickStore: what the store already checked is not parsed again (a no-op needs no x509)
    return QuickStore(settings=PkiSettings.from_values(v))


def resources(v: dict, facts) -> list:
    """The TLS directory and its four files, as the PKI (or a public CA's files) has them."""
    store, paths = _store(v), tls_paths(v)
    return [
        Directory(v["tls_dir"], mode=0o750),
        *server_files(store, v, paths),
        # both client CAs during a rollover (and a CRL for each in crl.pem): pushed together
        File(paths["tls_client_ca"], store.client_ca_pem(), tags=("client-ca",), **NGINX),
        File(paths["tls_crl"], store.crl_pem(), tags=("crl",), **NGINX),
    ]


def server_files(store, v: dict, paths: dict) -> list:
    """The server certificate and key; none with acme (certbot's lineage holds them, and
    a previous run's files stay until the site no longer names them)."""
    if v.get("server_cert") == "acme":
        return []
    certificate, key = server_certificate(store, v)
    return [
        File(paths["tls_certificate"], certificate, tags=SERVER_TAG, **NGINX),
        File(paths["tls_certificate_key"], key, 0o600, secret=True, tags=SERVER_TAG, **NGINX),
    ]


def handlers(v: dict, facts) -> list:
    return []  # the nginx role owns "reload nginx"


def server_certificate(store, v: dict) -> tuple[bytes, bytes]:
    """(certificate chain PEM as nginx sends it, key PEM) for this host, read only."""
    if v.get("server_cert") == "files":
        return certificate_from_files(v)
    # The server CA is the root clients already hold (api-ca.crt): sending it on every
    # handshake costs bytes and proves nothing, so the chain is the leaf alone.
    return store.server_cert_preview(*_server_identity(v))


def _server_identity(v: dict) -> tuple:
    return v["inventory_hostname"], server_names(v), v.get("server_ip_addresses") or []


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


# --- prepare: the PKI's side of a run, before planning ---------------------------------------

CHECK_MODE_NOTE = b"(check mode: a new server certificate would be issued: "


def prepare(v: dict, context) -> list[Step]:
    """Issue (or renew) the server certificate and re-sign the CRL when due; in check mode,
    say what would be done and change nothing. A line each for the recap."""
    store = _store(v)
    ours = v.get("server_cert", "private") == "private"  # files and acme: another CA's
    steps = [prepare_certificate(store, v, context)] if ours else []
    return [*steps, prepare_crl(store, v, context)]


def prepare_certificate(store, v: dict, context) -> Step:
    """``changed api1 pki server certificate (renewed: 12 days were left)``."""
    name = "server certificate"
    if context.check:
        certificate, _ = store.server_cert_preview(*_server_identity(v))
        if certificate.startswith(CHECK_MODE_NOTE):
            why = certificate[len(CHECK_MODE_NOTE) :].decode().rstrip(")\n")
            return Step("pki", name, "changed", "would " + why_issued(why, check=True))
        return Step("pki", name, "ok", "up to date")
    issued = store.server_cert(*_server_identity(v))
    if not issued.changed:
        return Step("pki", name, "ok", issued.reason.removeprefix("ok: "))
    return Step("pki", name, "changed", why_issued(issued.reason.removeprefix("issued: ")))


def why_issued(reason: str, check: bool = False) -> str:
    """The store's reason as the recap says it: ``renewed: 12 days were left`` (check mode:
    ``renew: 12 days left``), ``issued: names changed (...)``."""
    days = re.match(r"(\d+) days left", reason)
    if days:
        return f"renew: {days[1]} days left" if check else f"renewed: {days[1]} days were left"
    return f"issue: {reason}" if check else f"issued: {reason}"


def prepare_crl(store, v: dict, context, now=None) -> Step:
    """``ok api1 pki crl (valid 120 more days)``, or re-signed when little of its life is left
    (an expired CRL makes nginx refuse every client)."""
    now = now or datetime.now(UTC)
    left = (store.crl_next_update() - now).days
    if not crl_needs_refresh(store, v.get("crl_refresh_fraction", 0.33), now):
        return Step("pki", "crl", "ok", f"valid {left} more days")
    if context.check:
        return Step("pki", "crl", "changed", f"would re-sign: {left} days left")
    store.refresh_crl()
    return Step("pki", "crl", "changed", f"re-signed: {left} days were left")


def crl_needs_refresh(store, fraction: float, now=None) -> bool:
    """True when the remaining lifetime is below ``fraction`` of the whole."""
    now = now or datetime.now(UTC)
    this_update, next_update = store.crl_this_update(), store.crl_next_update()
    lifetime = (next_update - this_update).total_seconds()
    return (next_update - now).total_seconds() < fraction * lifetime
