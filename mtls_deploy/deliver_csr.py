"""``inv issue-client --csr``: the client's key is made on its consumer, never leaves it.

The consumer-side steps are engine resources run as the login user, as ``deliver`` runs them:
the bundle directory and a ``Command`` guarded by ``creates`` that makes the key (under a
temporary name) and prints its CSR; the CSR is checked and signed here, and only after every
consumer-side check passed (an unsafe bundle directory is refused before a key is made or a
certificate signed). The certificate then goes out with ``deliver.deliver_files``, a
``Command`` before it putting the key in place once it matches the signed certificate.
"""

import re
import secrets
import shlex
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .connection import Remote, SshTarget
from .deliver import (
    BundleFile,
    Consumer,
    DeliveryReport,
    apply_as_login_user,
    bundle_dir,
    bundle_resources,
    consumer_hosts,
    deliver_files,
    folder_resource,
    owned_by,
    read_consumer,
    refuse_unsafe_folder,
    session_path,
    shown_path,
)
from .errors import BadInput, UserError
from .operations import Step, plan, sha256
from .resources import Command
from .runner import GroupResult, HostResult

KEYGEN = {
    "ec": ("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"),
    "rsa": ("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072"),
}
# $1 the new key, $2 the signed certificate's SPKI sha256, $3 the key's place, $4 $5 the .p12
# and its password file of an earlier key (they no longer match: removed).
INSTALL_KEY = (
    '[ "$(openssl pkey -in "$1" -pubout -outform DER | sha256sum | cut -d" " -f1)" = "$2" ] '
    "|| { echo 'the new key does not match the signed certificate' >&2; exit 4; }\n"
    'chmod 0600 "$1" && mv -f "$1" "$3" && rm -f "$4" "$5"'
)
CSR_PEM = re.compile(
    r"-----BEGIN CERTIFICATE REQUEST-----.+?-----END CERTIFICATE REQUEST-----\n", re.S
)


@dataclass(frozen=True)
class CsrOptions:
    """How to sign: validity, subject extras, and whether a valid certificate may be replaced."""

    days: int = 365
    org: str | None = None
    email: str | None = None
    reissue: bool = False
    ou: str | None = None


def spki_sha256(public_key) -> str:
    """sha256 of a public key's DER SubjectPublicKeyInfo, as ``openssl pkey -pubout -outform
    DER | sha256sum`` prints it on the consumer."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return sha256(der)


def remote_spki_command(key_path: str) -> str:
    """A fact: ``spki\\t<sha256>`` of the key at ``key_path`` (nothing if it is missing), and
    ``openssl\\tmissing`` when the consumer has no openssl."""
    q = shlex.quote(key_path)
    return (
        "command -v openssl >/dev/null || printf 'openssl\\tmissing\\n'\n"
        f"if [ -f {q} ] && command -v openssl >/dev/null; then printf 'spki\\t%s\\n' "
        f'"$(openssl pkey -in {q} -pubout -outform DER 2>/dev/null | sha256sum | cut -d" " -f1)"; fi\n'
    )


def parse_spki(output: str) -> str | None:
    """The ``spki`` fact of ``remote_spki_command`` (None: no key, or not a key)."""
    for line in output.splitlines():
        key, _, value = line.partition("\t")
        if key == "spki" and value and value != sha256(b""):
            return value
    return None


def csr_decision(
    index_status: str | None,
    cert_pem: bytes | None,
    key_made_here: bool,
    remote_cert_sha: str | None,
    remote_spki: str | None,
    reissue: bool,
) -> str:
    """``keep`` (the consumer holds the index's valid certificate and the key it made for it),
    ``new`` (make a key there and sign its CSR), or raise when a valid certificate would be
    silently replaced. Pure. Example: ``csr_decision("valid", pem, False, sha, spki, False)``."""
    if index_status != "valid" or reissue:
        return "new"
    replace_it = (
        "add --reissue to replace it with a key made there (the old one is revoked as superseded)"
    )
    if key_made_here:
        raise BadInput(
            f"the valid certificate's key was made here, not on the consumer: {replace_it}"
        )
    cert = x509.load_pem_x509_certificate(cert_pem)
    if remote_cert_sha == sha256(cert_pem) and remote_spki == spki_sha256(cert.public_key()):
        return "keep"
    raise BadInput(f"the valid certificate's key is not on the consumer: {replace_it}")


def keygen_resources(folder: str, temporary_key: str, name: str, key_type: str) -> list:
    """The bundle directory, then a key (0600 under ``umask 077``, a temporary name) made in it
    and its CSR (CN=name) printed: a ``Command`` guarded by ``creates``. Pure."""
    make_csr = (
        "openssl",
        "req",
        "-new",
        "-key",
        temporary_key,
        "-subj",
        f"/CN={name}",
        "-outform",
        "PEM",
    )
    command = (
        (*KEYGEN[key_type], "-out", temporary_key),
        ("chmod", "0600", temporary_key),
        make_csr,
    )
    return [folder_resource(folder), Command(command, creates=temporary_key)]


def install_key_resource(folder: str, name: str, temporary_key: str, spki: str) -> Command:
    """The new key, if it matches the signed certificate, in place of the old one; a .p12 of an
    earlier key goes (it no longer matches)."""
    places = [f"{folder}/{name}.key", f"{folder}/{name}.p12", f"{folder}/{name}.p12.pass"]
    return Command((("sh", "-c", INSTALL_KEY, "sh", temporary_key, spki, *places),))


def issue_with_csr(store, names: list[str], options: CsrOptions, loaded=None) -> DeliveryReport:
    """``inv issue-client --csr``: for each name, a key made on its one consumer host, the CSR
    signed here, the certificate and ``api_ca_files`` pushed back. One name at a time (one PKI lock)."""
    from . import inventory

    store.check_client_days(options.days)  # before any consumer makes a key
    loaded = loaded or inventory.load()
    public = api_ca_files(store, loaded)
    results, targets = [], {}
    for name in names:
        hosts = consumer_hosts(loaded, name)
        if len(hosts) != 1:
            found = ", ".join(h.name for h in hosts) or "none"
            raise BadInput(
                f"{name}: --csr needs exactly one consumer host for {name} (found: {found})"
            )
        results.append(_csr_on_host(store, hosts[0], name, options, public))
        targets[name] = [hosts[0].name]
    return DeliveryReport(GroupResult(results), [], targets=targets)


def api_ca_files(store, loaded) -> list[BundleFile]:
    """``api-ca.crt`` as the other bundles have it (``deliver.bundle_api_ca``): the roots of
    the APIs' server certificates; none when they are all from public CAs."""
    from .deliver import bundle_api_ca
    from .pki.bundle import OUR_SERVER_CA

    found = bundle_api_ca(store, loaded)
    if found is None:
        return []
    pem = store.trusted_server_cas_pem() if found == OUR_SERVER_CA else found
    return [BundleFile("api-ca.crt", pem)]


def _csr_on_host(store, host, name: str, options: CsrOptions, public: list) -> HostResult:
    folder = session_path(bundle_dir(host.vars))
    try:
        with Remote(SshTarget.from_vars(host.name, host.vars)) as remote:
            step = _csr_step(store, remote, folder, name, options, public)
    except UserError as error:
        step = Step("bundle", name, "failed", str(error))
    return HostResult(host.name, [step])


def _csr_step(
    store, remote: Remote, folder: str, name: str, options: CsrOptions, public: list
) -> Step:
    """Read the consumer (its key's SPKI too), refuse an unsafe folder, then keep what is
    there or make a new key, sign and deliver (with ``public``: ``api_ca_files``)."""
    wanted = bundle_resources(folder, [BundleFile(f"{name}.{x}", b"") for x in ("key", "crt")])
    consumer = read_consumer(remote, folder, wanted, remote_spki_command(f"{folder}/{name}.key"))
    if consumer.facts.path(f"{folder}/{name}.key").kind == "link":  # a versioned bundle
        consumer = _flattened(remote, folder, name, wanted, consumer)
    refuse_unsafe_folder(folder, wanted, consumer.facts, consumer.user)
    if "openssl\tmissing" in consumer.output:
        raise UserError("openssl is not installed on the consumer: apt-get install openssl")
    status = store.client_status(name)
    material = store.client_material(name) if status == "valid" else None
    decision = csr_decision(
        status,
        material and material.cert_pem,
        bool(material and material.key_pem),
        consumer.facts.path(f"{folder}/{name}.crt").sha256,
        parse_spki(consumer.output),
        options.reissue,
    )
    if decision == "new":
        return _sign_and_push(store, remote, consumer, folder, name, options, public)
    changed, reason = deliver_files(
        remote, folder, [BundleFile(f"{name}.crt", material.cert_pem), *public]
    )
    return Step(
        "bundle", name, "changed" if changed else "ok", reason + "; key made on the consumer"
    )


def _flattened(remote: Remote, folder: str, name: str, wanted: list, consumer: Consumer):
    """The bundle as plain files again (``deliver_versions.flatten``; the folder checked
    first), read anew: the key is made and kept in place."""
    from .deliver_versions import flatten

    refuse_unsafe_folder(folder, wanted[:1], consumer.facts, consumer.user)
    flatten(remote, folder, name)
    return read_consumer(remote, folder, wanted, remote_spki_command(f"{folder}/{name}.key"))


def _sign_and_push(
    store,
    remote: Remote,
    consumer: Consumer,
    folder: str,
    name: str,
    options: CsrOptions,
    public: list,
) -> Step:
    """Make the key there (the CSR comes back), sign it here only then, and deliver the
    certificate with the key installed once it matches."""
    temporary_key = f"{folder}/.{name}.key.{secrets.token_hex(4)}.mtls-tmp"
    csr = _make_key_there(store, remote, consumer, folder, name, temporary_key)
    try:
        subject = {"org": options.org, "email": options.email, "ou": options.ou}
        issued = store.sign_client_csr(name, csr, options.days, reissue=options.reissue, **subject)
    except Exception:
        remote.run(f"rm -f {shlex.quote(temporary_key)}")
        raise
    cert_pem = issued.cert_path.read_bytes()
    spki = spki_sha256(x509.load_pem_x509_certificate(cert_pem).public_key())
    install = install_key_resource(folder, name, temporary_key, spki)
    _, reason = deliver_files(
        remote,
        folder,
        [BundleFile(f"{name}.crt", cert_pem), *public],
        before=(install,),
        leftover=temporary_key,
    )
    return Step(
        "bundle",
        name,
        "changed",
        f"{issued.reason}, serial {issued.serial}; key made on the "
        f"consumer, never left it; {reason}",
    )


def _make_key_there(
    store, remote: Remote, consumer: Consumer, folder: str, name: str, temporary_key: str
) -> bytes:
    """Plan and apply ``keygen_resources`` (planned on the facts just read) as the login user;
    the CSR is in the script's output."""
    from .pki.profile import key_type_of

    key_type = key_type_of(x509.load_pem_x509_certificate(store.client_ca_pem()).public_key())
    wanted = owned_by(
        keygen_resources(folder, temporary_key, name, key_type), consumer.user, consumer.group
    )
    steps = plan(wanted, consumer.facts)
    where = shown_path(consumer.home, folder)
    output = apply_as_login_user(remote, folder, wanted, steps, where)
    found = CSR_PEM.search(output)
    if not found:
        raise UserError(f"{where}: no certificate request came back from openssl")
    return found.group().encode()
