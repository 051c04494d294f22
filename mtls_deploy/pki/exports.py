"""Certificates that leave the PKI without SSH: a CSR made elsewhere, signed to files
(``inv sign-csr``), and a client's stored key and certificate as a PKCS#12 (``inv export-p12``).

Example::

    written = sign_csr_file(store, "bob", Path("bob.csr"), Path("dist/bob"))
    p12 = export_p12(store, "bob", Path("dist/bob"))
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from ..errors import BadInput, UserError
from ..files import PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, atomic_write, make_private_dir
from . import profile
from .bundle import client_p12

MAX_CSR_BYTES = 64 * 1024


@dataclass(frozen=True)
class Signed:
    """What ``sign_csr_file`` did: the serial, why, and the files written."""

    serial: str
    reason: str
    files: list[Path]
    crl_changed: bool


def read_csr(path: Path) -> bytes:
    """The bytes of a CSR file, or one line (``BadInput``)."""
    try:
        data = Path(path).read_bytes()[: MAX_CSR_BYTES + 1]
    except OSError as error:
        raise BadInput(f"cannot read the CSR {path}: {error.strerror}") from None
    if len(data) > MAX_CSR_BYTES:
        raise BadInput(f"{path} is over 64 KiB: not a certificate request")
    return data


def sign_csr_file(store, name: str, csr_path: Path, out_dir: Path, **options) -> Signed:
    """Check the CSR at ``csr_path`` (signature, subject ``CN=<name>``, key allowed: see
    ``profile.check_csr``), sign it for client ``name``, record it in the index, and write
    ``<name>.crt``, ``<name>-chain.crt`` (certificate + client CA) and ``api-ca.crt`` (the server
    CA, to verify the API) to ``out_dir``. ``options``: ``days``, ``org``, ``email``, ``reissue``.

    A name that holds a valid certificate is refused unless ``reissue`` (the old one is then
    revoked as superseded: the CRL changes and needs a push).
    """
    profile.validate_client_name(name)
    csr_pem = read_csr(csr_path)
    crl_before = store.crl_pem()
    result = store.sign_client_csr(name, csr_pem, **options)
    if not result.changed:
        raise UserError(
            f"{name} already holds a valid certificate (serial {result.serial}): "
            "add --reissue to replace it (the old one is then revoked)"
        )
    cert = result.cert_path.read_bytes()
    files = {
        f"{name}.crt": cert,
        f"{name}-chain.crt": cert + store.client_ca_pem(),
        "api-ca.crt": store.server_ca_pem(),
    }
    _ready(out_dir)
    for file_name, data in files.items():
        atomic_write(out_dir / file_name, data, PUBLIC_FILE_MODE)
    written = [out_dir / file_name for file_name in files]
    return Signed(result.serial, result.reason, written, store.crl_pem() != crl_before)


def export_p12(store, name: str, out_dir: Path, legacy: bool = False) -> tuple[Path, Path]:
    """``<name>.p12`` (key, certificate, client CA) and ``<name>.p12.pass`` (its password, a new
    one each time), both 0600, in ``out_dir``, from what the PKI stores; one line when the key
    was made on the consumer (``--csr``) or the name is unknown."""
    material = store.client_material(name)
    if material is None:
        raise store._unknown_client(name)
    if material.key_pem is None:
        raise UserError(
            f"{name}'s key was made on its consumer host (--csr) and never came here: make the "
            f".p12 there (openssl pkcs12 -export -inkey {name}.key -in {name}.crt)"
        )
    if material.status in ("revoked", "expired"):
        raise UserError(
            f"{name}'s certificate is {material.status}: run `inv renew-client --name {name}`"
        )
    password = secrets.token_urlsafe(18)
    cert = x509.load_pem_x509_certificate(material.cert_pem)
    p12 = client_p12(name, material.key_pem, cert, store.client_ca_pem(), password, legacy)
    _ready(out_dir)
    p12_path, pass_path = out_dir / f"{name}.p12", out_dir / f"{name}.p12.pass"
    atomic_write(pass_path, password, PRIVATE_FILE_MODE)  # no newline: read as it is
    atomic_write(p12_path, p12, PRIVATE_FILE_MODE)
    return p12_path, pass_path


def _ready(out_dir: Path) -> None:
    """An existing directory is used as it is (``--out .``); a new one is made 0700."""
    if not Path(out_dir).is_dir():
        make_private_dir(out_dir)
