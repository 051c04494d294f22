"""Client bundles: what a consumer needs to call the API, in ``dist/<name>/`` (0700).

    bob.key (0600)  bob.crt  api-ca.crt  bob.p12  bob.p12.pass (0600)  README.txt

``api-ca.crt`` is what the client needs to verify the API's server certificate: our server CA
(the default), another CA's roots the caller passes (a private ACME CA), or nothing at all
(``api_ca=None``: a public CA the consumer's system store already trusts; the README's curl
command then has no ``--cacert``). Which one follows the API hosts' ``server_cert``, which the
caller reads from the inventory (``deliver.api_trust``).

Delivery to consumer hosts over SSH is a later step: it takes the directory returned here.
"""

import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import PrivateFormat, load_pem_private_key, pkcs12

from ..errors import UserError
from ..files import (
    PRIVATE_FILE_MODE,
    PUBLIC_FILE_MODE,
    replace_directory,
    sync_filesystem,
    writable_private_dir,
)
from ..project import project_path
from .bundle_readme import ReadmeFacts, readme
from .issuance import ClientMaterial, IssueResult
from .store import PkiStore

DIST_DIR_ENV = "MTLS_DEPLOY_DIST_DIR"
DIST_DIR_FIX = f"make it yours (for example `sudo chown -R $USER` it) or set {DIST_DIR_ENV}"
SYNC_EVERY = 200  # bundles written between two filesystem syncs in bulk issuance

# ``api_ca``'s default: the store's server CA (hard-linked into the bundle).
OUR_SERVER_CA = "our server CA"


@dataclass(frozen=True)
class BundleResult:
    """One client after ``issue_bundles``: the issue result and where its bundle is."""

    issue: IssueResult
    bundle_dir: Path
    bundle_written: bool


@dataclass(frozen=True)
class _BundleJob:
    """Everything one bundle needs, read from the store up front: writing it touches no index."""

    material: ClientMaterial
    folder: Path
    api_ca: Path | bytes | None  # our server CA's file, another CA's PEM, or none (public)
    client_ca_pem: bytes
    p12: bool
    legacy: bool
    apis: tuple[str, ...]  # what the client may call: "api1.example.com:8441", each once


def default_dist_dir() -> Path:
    """``$MTLS_DEPLOY_DIST_DIR``, else ``dist/`` in the project directory (``project.py``)."""
    return Path(os.environ.get(DIST_DIR_ENV) or project_path("dist"))


def _ready_dist_dir(dist_dir) -> Path:
    """``dist_dir`` (default ``default_dist_dir()``) made 0700 and proven writable by us."""
    return writable_private_dir(Path(dist_dir) if dist_dir else default_dist_dir(), DIST_DIR_FIX)


def write_client_bundle(
    store: PkiStore,
    name: str,
    dist_dir=None,
    p12: bool = True,
    legacy: bool = False,
    server_name: str | None = None,
    *,
    durable: bool = True,
    api_ca=OUR_SERVER_CA,
    apis: tuple[str, ...] = (),
) -> Path:
    """Write ``dist/<name>/`` for client ``name`` from the store; returns the directory.
    ``apis`` (or the one ``server_name``) are the README's URLs: ``host`` or ``host:port``.

    ``legacy=True`` encodes the .p12 with 3DES/SHA-1 (macOS keychains, older Windows) instead of
    AES-256 + PBKDF2 with a SHA-256 MAC. Example: ``write_client_bundle(store, "bob")``.
    """
    dist_dir = _ready_dist_dir(dist_dir)
    apis = apis or ((server_name,) if server_name else ())
    return _write(_job(store, name, dist_dir, p12, legacy, apis, api_ca), durable)


def bundle_is_current(
    store: PkiStore, name: str, dist_dir=None, p12: bool = True, api_ca=OUR_SERVER_CA
) -> bool:
    """True if ``dist/<name>/`` holds the store's current key and certificate, complete, and
    the ``api-ca.crt`` wanted (none for a public CA)."""
    folder = (Path(dist_dir) if dist_dir else default_dist_dir()) / name
    material = store.client_material(name)
    if material is None:
        return False
    expected = {
        f"{name}.crt": material.cert_pem,
        f"{name}.key": material.key_pem,
        "api-ca.crt": store.trusted_server_cas_pem() if api_ca == OUR_SERVER_CA else api_ca,
    }
    if any(_read(folder / file) != data for file, data in expected.items()):
        return False
    return not p12 or all(_read(folder / f) for f in (f"{name}.p12", f"{name}.p12.pass"))


def issue_bundles(
    store: PkiStore,
    names: Iterable[str],
    *,
    days=None,  # None: the store's settings.client_lifetime
    org=None,
    email=None,
    ou=None,
    reissue: bool = False,
    dist_dir=None,
    p12: bool = True,
    legacy: bool = False,
    server_name: str | None = None,
    on_result: Callable[[BundleResult], None] | None = None,
    api_ca=OUR_SERVER_CA,
    apis: tuple[str, ...] = (),
) -> list[BundleResult]:
    """Issue every name (bulk, chunked) and write each bundle that is new or out of date.

    A bundle is written only after its certificate is committed to the index; a re-run after a
    crash rewrites the bundles that are missing or incomplete. The file system is synced once
    per ``SYNC_EVERY`` bundles. ``on_result`` sees each client. ``api_ca``: see the module;
    ``apis``: as ``write_client_bundle``'s.
    """
    apis = apis or ((server_name,) if server_name else ())
    issuing = store.issue_clients(names, days, org, email, reissue, ou=ou)  # all checked first
    dist_dir = _ready_dist_dir(dist_dir)
    results, pending = [], []
    for issued in issuing:
        write = _needs_bundle(store, issued, dist_dir, p12, api_ca)
        job = _job(store, issued.name, dist_dir, p12, legacy, apis, api_ca) if write else None
        pending.append((BundleResult(issued, dist_dir / issued.name, write), job))
        if len(pending) == SYNC_EVERY:
            results += _flush(pending, dist_dir, on_result)
            pending = []
    return results + _flush(pending, dist_dir, on_result)


def _flush(pending: list, dist_dir: Path, on_result) -> list[BundleResult]:
    """Write the pending bundles, sync them once, then report each client."""
    for _, job in pending:
        if job:
            _write(job, durable=False)
    sync_filesystem(dist_dir)
    for result, _ in pending:
        if on_result:
            on_result(result)
    return [result for result, _ in pending]


def _needs_bundle(store: PkiStore, issued: IssueResult, dist_dir: Path, p12: bool, api_ca) -> bool:
    """New, or out of date; never for a client whose key lives on its consumer (CSR)."""
    if not issued.changed and store.client_material(issued.name).key_pem is None:
        return False
    return issued.changed or not bundle_is_current(store, issued.name, dist_dir, p12, api_ca)


def _job(store: PkiStore, name: str, dist_dir: Path, p12, legacy, apis, api_ca) -> _BundleJob:
    material = _usable_material(store, name)
    if api_ca == OUR_SERVER_CA:  # both roots during a server CA rollover
        trusted = store.trusted_server_cas_pem()
        api_ca = store.path / "server-ca.crt" if trusted == store.server_ca_pem() else trusted
    client_ca = store.client_ca_pem()
    return _BundleJob(material, dist_dir / name, api_ca, client_ca, p12, legacy, tuple(apis))


def _write(job: _BundleJob, durable: bool) -> Path:
    """Build and write one bundle (no index access: everything is in the job)."""
    try:
        return replace_directory(job.folder, _bundle_files(job), durable=durable)
    except OSError as error:
        name = job.material.name
        raise UserError(
            f"could not write the bundle {job.folder}: {error.strerror}; the certificate is "
            f"issued (serial {job.material.serial}): fix that and re-run "
            f"`inv issue-client --name {name}`"
        ) from None


def _usable_material(store: PkiStore, name: str) -> ClientMaterial:
    material = store.client_material(name)
    if material is None:
        raise UserError(f"no certificate for {name!r}: run `inv issue-client --name {name}` first")
    if material.status in ("revoked", "expired"):
        raise UserError(
            f"{name}'s certificate is {material.status}: run `inv renew-client --name {name}`"
        )
    if material.key_pem is None:
        raise UserError(
            f"{name}'s key was made on its consumer host (--csr) and never left it: no bundle to "
            f"write here; `inv issue-client --name {name} --csr` delivers its certificate"
        )
    return material


def _bundle_files(job: _BundleJob) -> dict:
    """The bundle's files; key, certificate and server CA are hard links to the store's copies."""
    material, name = job.material, job.material.name
    files = {
        f"{name}.key": material.key_path,
        f"{name}.crt": material.cert_path,
        "README.txt": (_readme(job), PUBLIC_FILE_MODE),
    }
    if isinstance(job.api_ca, Path):
        files["api-ca.crt"] = job.api_ca
    elif job.api_ca is not None:
        files["api-ca.crt"] = (job.api_ca, PUBLIC_FILE_MODE)
    if job.p12:
        password = secrets.token_urlsafe(24)
        cert = x509.load_pem_x509_certificate(material.cert_pem)
        p12 = client_p12(name, material.key_pem, cert, job.client_ca_pem, password, job.legacy)
        files[f"{name}.p12"] = (p12, PRIVATE_FILE_MODE)
        # no newline: code that reads the file as it is (Python, Node, Java) gets the password
        files[f"{name}.p12.pass"] = (password, PRIVATE_FILE_MODE)
    return files


def client_p12(
    name: str,
    key_pem: bytes,
    cert: x509.Certificate,
    ca_pem: bytes,
    password: str,
    legacy: bool = False,
) -> bytes:
    """PKCS#12 with the client's key, certificate and the client CA.

    Default: AES-256-CBC with PBKDF2-SHA256 and a SHA-256 MAC; ``legacy``: 3DES with a SHA-1 MAC.
    """
    key = load_pem_private_key(key_pem, None)
    ca = x509.load_pem_x509_certificate(ca_pem)
    return pkcs12.serialize_key_and_certificates(
        name.encode(), key, cert, [ca], _p12_encryption(password, legacy)
    )


def _p12_encryption(password: str, legacy: bool):
    builder = PrivateFormat.PKCS12.encryption_builder()
    if legacy:
        algorithm, mac = pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC, hashes.SHA1()
    else:
        algorithm, mac = pkcs12.PBES.PBESv2SHA256AndAES256CBC, hashes.SHA256()
    return builder.key_cert_algorithm(algorithm).hmac_hash(mac).build(password.encode())


def _readme(job: _BundleJob) -> str:
    kind = "3DES/SHA-1, legacy" if job.legacy else "AES-256, PBKDF2, SHA-256 MAC"
    material = job.material
    return readme(
        ReadmeFacts(material.name, material.serial, material.not_after, job.apis,
                    api_ca=job.api_ca is not None, p12_kind=kind if job.p12 else None)
    )  # fmt: skip


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
