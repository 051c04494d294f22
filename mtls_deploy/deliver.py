"""Deliver client bundles to consumer hosts over SFTP, checked by SHA-256 on the far side.

A client's consumer host is the host of group ``consumers`` named like the client, or any
inventory host whose ``client_names`` lists it. The bundle goes into the host's ``bundle_dir``
(default ``~/.mtls/<api_name>``, in the login user's home): the directory 0700, every file owned
by the login user, private files 0600. The directory is 0700 and checked to be the login user's
before the first file is created in it: SFTP creates a file with the server's umask and sets its
mode one request later, so only the directory keeps other users out in between. Each file is
uploaded under a temporary name beside its target, all temporary files are checked with one
``sha256sum -c``, then renamed into place.

Round trips: one to compare hashes (enough when nothing changed), one SFTP session, one to
check and rename. With ``--csr`` the key is made on the consumer (``openssl genpkey``), only the
CSR comes back, and the signed certificate goes out: the key never leaves the consumer.
"""

import secrets
import shlex
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from . import report
from .connection import Remote, SshTarget
from .errors import BadInput, UserError
from .facts import PathState, parse_resource_facts, resource_facts_script
from .operations import Step, sha256
from .runner import GroupResult, HostResult, run_on_hosts

CONSUMERS = "consumers"
DEFAULT_BUNDLE_DIR = "~/.mtls/{api_name}"
DEFAULT_API_NAME = "api"
PRIVATE_MODE, PUBLIC_MODE, DIR_MODE = 0o600, 0o644, 0o700
SUMMARY_OVER = 20  # more deliveries than this: one summary line instead of one per client


@dataclass(frozen=True)
class BundleFile:
    """One file of a bundle as it must be on the consumer."""

    name: str
    content: bytes = field(repr=False)
    mode: int = PUBLIC_MODE

    @property
    def sha256(self) -> str:
        return sha256(self.content)


@dataclass
class DeliveryPlan:
    """What the consumer lacks: directories to make, files to write, modes to fix, and why."""

    folder: str
    make_dirs: list[str] = field(default_factory=list)
    write: list[BundleFile] = field(default_factory=list)
    chmod: list[BundleFile] = field(default_factory=list)
    fix_dir_mode: bool = False
    reasons: list[str] = field(default_factory=list)

    @property
    def unchanged(self) -> bool:
        return not (self.make_dirs or self.write or self.chmod or self.fix_dir_mode)


@dataclass(frozen=True)
class Upload:
    """A file sent under ``temporary`` and renamed to ``final`` once its sha256 is checked."""

    temporary: str
    final: str
    sha256: str
    mode: int


# --- where bundles go -------------------------------------------------------------------------


def consumer_hosts(loaded, name: str) -> list:
    """Hosts that receive ``name``'s bundle: the consumer named ``name``, and every host whose
    ``client_names`` lists it. Example: ``consumer_hosts(inventory.load(), "bob")``."""
    group = set(loaded.groups.get(CONSUMERS, []))
    return [
        host
        for host_name, host in sorted(loaded.hosts.items())
        if (host_name == name and host_name in group) or name in _listed(host.vars)
    ]


def client_names(host) -> list[str]:
    """The clients whose bundles live on ``host``: its ``client_names``, else its own name."""
    listed = _listed(host.vars)
    return listed or [host.name]


def _listed(v: dict) -> list[str]:
    names = v.get("client_names") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BadInput(
            f"{v.get('inventory_hostname')}: client_names must be a list of client names"
        )
    return names


def bundle_dir(v: dict) -> str:
    """The host's ``bundle_dir``, default ``~/.mtls/<api_name>`` (``api_name`` defaults to api)."""
    template = v.get("bundle_dir") or DEFAULT_BUNDLE_DIR
    folder = template.format(api_name=v.get("api_name") or DEFAULT_API_NAME).rstrip("/") or "/"
    if "\n" in folder or not (folder == "~" or folder.startswith(("~/", "/"))):
        raise BadInput(
            f"{v.get('inventory_hostname')}: bundle_dir {folder!r} must start with ~/ "
            "(the login user's home) or /"
        )
    return folder


def session_path(folder: str) -> str:
    """``~/x`` as the path an SSH session sees: relative to the login user's home, where both
    ``sh -c`` and the SFTP server start. Absolute paths stay absolute."""
    if folder == "~":
        return "."
    return folder[2:] if folder.startswith("~/") else folder


def shown_path(home: str, folder: str) -> str:
    """The absolute path for messages: ``/home/bob/.mtls/api``."""
    return folder if folder.startswith("/") else f"{home.rstrip('/')}/{folder}".replace("/./", "/")


def parents(folder: str) -> list[str]:
    """Every directory from the first component down to ``folder`` itself."""
    parts = folder.split("/")
    found = ["/".join(parts[: i + 1]) for i in range(len(parts)) if parts[i] and parts[i] != "."]
    return found or [folder]


# --- the local bundle -------------------------------------------------------------------------


def bundle_files(folder: Path) -> list[BundleFile]:
    """The files of a local bundle (``dist/<name>/``), with their modes (private stays 0600)."""
    files = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            private = path.stat().st_mode & 0o077 == 0
            files.append(
                BundleFile(path.name, path.read_bytes(), PRIVATE_MODE if private else PUBLIC_MODE)
            )
    if not files:
        raise UserError(f"{folder} holds no bundle: run `inv issue-client --name {folder.name}`")
    return files


# --- facts and plan ---------------------------------------------------------------------------


def facts_script(folder: str, names: list[str], extra: str = "") -> str:
    """One round trip: the login user, uid and home, then stat and sha256 of the folder and
    files."""
    paths = [*parents(folder), *(f"{folder}/{name}" for name in names)]
    head = 'printf \'home\\t%s\\nuser\\t%s\\nuid\\t%s\\n\' "$HOME" "$(id -un)" "$(id -u)"\n'
    return head + extra + resource_facts_script(paths, [], [])


def parse_session(output: str) -> dict:
    """``home``, ``user`` and ``uid`` from ``facts_script`` output."""
    found = {}
    for line in output.splitlines():
        key, _, value = line.partition("\t")
        if key in ("home", "user", "uid") and key not in found:
            found[key] = value
    return found


def plan_delivery(folder: str, files: list[BundleFile], facts, user: str) -> DeliveryPlan:
    """Compare wanted files with the consumer's (sha256 first, then owner and mode). Pure."""
    plan = DeliveryPlan(folder)
    _plan_dirs(plan, facts, user)
    for wanted in files:
        _plan_file(plan, wanted, facts.path(f"{folder}/{wanted.name}"), user)
    return plan


def _plan_dirs(plan: DeliveryPlan, facts, user: str) -> None:
    for directory in parents(plan.folder):
        state = facts.path(directory)
        if state.kind == "absent":
            plan.make_dirs.append(directory)
        elif state.kind != "directory":
            raise UserError(f"{directory} is a {state.kind}, not a directory: move it away")
    state = facts.path(plan.folder)
    if state.kind == "directory" and state.owner != user:
        raise UserError(f"{plan.folder} is owned by {state.owner}, not {user}: fix its owner first")
    if state.kind == "absent":
        plan.reasons.append("new directory, 0700")
    elif state.mode != DIR_MODE:
        plan.fix_dir_mode = True
        plan.reasons.append(f"directory mode {state.mode:04o} -> 0700")


def _plan_file(plan: DeliveryPlan, wanted: BundleFile, state: PathState, user: str) -> None:
    if state.kind not in ("absent", "file"):
        raise UserError(f"{plan.folder}/{wanted.name} is a {state.kind}: move it away")
    if state.kind == "absent":
        plan.write.append(wanted)
        if plan.folder not in plan.make_dirs:
            plan.reasons.append(f"{wanted.name} absent")
    elif state.sha256 != wanted.sha256 or state.owner != user:
        plan.write.append(wanted)  # a new file, so also the way to take back a foreign owner
        why = "content differs" if state.sha256 != wanted.sha256 else f"owner {state.owner}"
        plan.reasons.append(f"{wanted.name} {why}")
    elif state.mode != wanted.mode:
        plan.chmod.append(wanted)
        plan.reasons.append(f"{wanted.name} mode {state.mode:04o} -> {wanted.mode:04o}")


# --- apply: SFTP upload, then check and rename in one script --------------------------------


def upload(remote: Remote, plan: DeliveryPlan, uid: int) -> list[Upload]:
    """Make the folder private first (``secure_folder``), then send each file under a
    temporary name, mode set before the first byte is written."""
    sftp = remote.sftp()
    secure_folder(sftp, plan, uid)
    uploads = []
    for wanted in plan.write:
        temporary = f"{plan.folder}/.{wanted.name}.{secrets.token_hex(4)}.mtls-tmp"
        with sftp.open(temporary, "wb") as handle:
            handle.chmod(wanted.mode)
            handle.write(wanted.content)
        uploads.append(
            Upload(temporary, f"{plan.folder}/{wanted.name}", wanted.sha256, wanted.mode)
        )
    return uploads


def secure_folder(sftp, plan: DeliveryPlan, uid: int) -> None:
    """Missing directories made 0700, the bundle directory set to 0700 and checked (a directory,
    not a link, ours, 0700) before any file is created in it: inside it, a file another user
    could open for the moment before its chmod is out of their reach."""
    for directory in plan.make_dirs:
        sftp.mkdir(directory, DIR_MODE)
    sftp.chmod(plan.folder, DIR_MODE)  # the umask may have taken bits off, or it was 0755
    found = sftp.lstat(plan.folder)
    problem = folder_problem(found.st_mode, found.st_uid, uid)
    if problem:
        raise UserError(f"{plan.folder} {problem}: nothing written; fix it and deliver again")


def folder_problem(mode: int, owner_uid: int, uid: int) -> str:
    """Why a bundle directory with this ``lstat`` mode and owner cannot take a key ("" if it
    can). Pure."""
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(mode):
        return "is not a directory"
    if owner_uid != uid:
        return f"is owned by uid {owner_uid}, not {uid}"
    if stat.S_IMODE(mode) != DIR_MODE:
        return f"has mode {stat.S_IMODE(mode):04o}, not 0700"
    return ""


def install_script(plan: DeliveryPlan, uploads: list[Upload], before_rename: str = "") -> str:
    """Check every upload with one ``sha256sum -c``, rename them into place, fix modes, then
    print the final state (stat and sha256) so the caller can verify it."""
    q = shlex.quote
    temporaries = " ".join(q(u.temporary) for u in uploads)
    lines = ["set -e", "umask 077"]
    if uploads:
        checklist = "\n".join(f"{u.sha256}  {u.temporary}" for u in uploads)
        lines += [
            f"if ! sha256sum -c --quiet >&2 <<'MTLS_SUMS'\n{checklist}\nMTLS_SUMS",
            f"then rm -f {temporaries}; echo 'sha256 mismatch after transfer' >&2; exit 3; fi",
        ]
    lines.append(before_rename)
    lines += [
        f"chmod {u.mode:04o} {q(u.temporary)}; mv -f {q(u.temporary)} {q(u.final)}" for u in uploads
    ]
    lines += [f"chmod {f.mode:04o} {q(plan.folder + '/' + f.name)}" for f in plan.chmod]
    lines.append(f"chmod 0700 {q(plan.folder)}")
    return "\n".join(line for line in lines if line) + "\n"


def verify_final(folder: str, files: list[BundleFile], facts, user: str) -> list[str]:
    """What is still wrong after the install (empty when every file matches)."""
    plan = plan_delivery(folder, files, facts, user)
    return [] if plan.unchanged else plan.reasons


def deliver_files(remote: Remote, folder: str, files: list[BundleFile], before_rename: str = "",
                  extra_temporaries: tuple[str, ...] = ()) -> tuple[bool, str]:  # fmt: skip
    """Make the consumer's ``folder`` hold ``files``; (changed, reason with the absolute path)."""
    names = [f.name for f in files]
    output = remote.run_script(facts_script(folder, names), check=True).stdout
    session = parse_session(output)
    where = shown_path(session["home"], folder)
    plan = plan_delivery(folder, files, parse_resource_facts(output), session["user"])
    if plan.unchanged and not before_rename:
        return False, f"unchanged in {where}/: sha256 of {len(files)} files match"
    uploads = upload(remote, plan, int(session["uid"]))
    script = install_script(plan, uploads, before_rename) + "set +e\n" + facts_script(folder, names)
    result = remote.run_script(script)
    if not result.ok:
        leftovers = [*(u.temporary for u in uploads), *extra_temporaries]
        if leftovers:
            remote.run("rm -f " + " ".join(shlex.quote(t) for t in leftovers))
        raise UserError(f"{where}: {_last_line(result.stderr) or f'exit {result.exit_status}'}")
    wrong = verify_final(folder, files, parse_resource_facts(result.stdout), session["user"])
    if wrong:
        raise UserError(f"{where}: still not right after delivery: {', '.join(wrong)}")
    return True, f"{where}/: {len(uploads)} files written, sha256 checked{_why(plan.reasons)}"


def _why(reasons: list[str]) -> str:
    shown = "; ".join(reasons[:3]) + ("; ..." if len(reasons) > 3 else "")
    return f" ({shown})" if shown else ""


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


# --- delivering bundles from dist/ --------------------------------------------------------------


@dataclass
class DeliveryReport:
    """Per consumer host, a step per client; the clients no host receives; and for each client
    delivered here, its consumer hosts (``targets``)."""

    group: GroupResult
    undelivered: list[str]
    skipped_reason: str = ""
    targets: dict[str, list[str]] = field(default_factory=dict)

    def confirmed(self) -> set[str]:
        """The clients whose bundle every consumer host now holds, checked by sha256 (written
        or already there): a host that failed, or a bundle refused or skipped, is no proof."""
        done = {
            (result.host, step.name)
            for result in self.group.results
            if result.error is None
            for step in result.steps
            if step.status in ("ok", "changed")
        }
        return {
            name
            for name, hosts in self.targets.items()
            if all((host, name) in done for host in hosts)
        }


def deliver_bundles(
    store, names: list[str], dist_dir: Path, loaded=None, enabled: bool = True
) -> DeliveryReport:
    """Deliver ``dist/<name>/`` of every name to its consumer hosts, hosts in parallel.

    Only a bundle holding the index's current certificate travels; a client whose key was made
    on its consumer (``--csr``) keeps it: nothing from dist/ may overwrite it. ``enabled=False``
    (``--no-deliver``) leaves every bundle in dist/.
    Example: ``deliver_bundles(PkiStore.open(), ["bob"], Path("dist"))``.
    """
    from . import inventory

    if not enabled:
        return not_delivered(names, "--no-deliver")
    loaded = loaded or inventory.load()
    targets: dict[str, list[tuple[str, list | Refusal]]] = {}
    hosts, undelivered = {}, []
    for name in names:
        found = consumer_hosts(loaded, name)
        undelivered += [] if found else [name]
        payload = deliverable(store, name, dist_dir / name) if found else []
        for host in found:
            hosts[host.name] = host
            targets.setdefault(host.name, []).append((name, payload))
    work = lambda host: _deliver_to_host(host, targets[host.name])  # noqa: E731
    group = run_on_hosts(list(hosts.values()), work)
    return DeliveryReport(group, undelivered, targets=_hosts_by_name(targets))


def _hosts_by_name(targets: dict[str, list]) -> dict[str, list[str]]:
    by_name: dict[str, list[str]] = {}
    for host, work in targets.items():
        for name, _ in work:
            by_name.setdefault(name, []).append(host)
    return by_name


@dataclass(frozen=True)
class Refusal:
    """Why a bundle does not leave dist/: ``skipped`` (nothing to send from here) or ``failed``."""

    status: str
    reason: str


def deliverable(store, name: str, folder: Path) -> list[BundleFile] | Refusal:
    """The files of ``dist/<name>/`` when they hold the index's current certificate and key,
    else why not."""
    material = store.client_material(name)
    if material is None:
        return Refusal("failed", f"{name} has no certificate: run `inv issue-client --name {name}`")
    if material.key_pem is None:
        hint = f"`inv issue-client --name {name} --csr` delivers its certificate"
        return Refusal("skipped", f"its key was made on the consumer: {hint}")
    files = bundle_files(folder) if folder.is_dir() else []
    current = {f.name: f.content for f in files}
    if (current.get(f"{name}.crt"), current.get(f"{name}.key")) != (
        material.cert_pem,
        material.key_pem,
    ):
        hint = f"run `inv issue-client --name {name}`"
        return Refusal("failed", f"{folder} does not hold the current certificate: {hint}")
    return files


def _deliver_to_host(host, work: list[tuple[str, list | Refusal]]) -> HostResult:
    folder = session_path(bundle_dir(host.vars))
    steps = []
    with Remote(SshTarget.from_vars(host.name, host.vars)) as remote:
        for name, files in work:
            if isinstance(files, Refusal):
                steps.append(Step("bundle", name, files.status, f"not delivered: {files.reason}"))
            else:
                steps.append(_deliver_one(remote, folder, name, files))
    return HostResult(host.name, steps, data={"ssh_channels": remote.channels})


def _deliver_one(remote: Remote, folder: str, name: str, files: list[BundleFile]) -> Step:
    try:
        changed, reason = deliver_files(remote, folder, files)
    except UserError as error:
        return Step("bundle", name, "failed", str(error))
    return Step("bundle", name, "changed" if changed else "ok", reason)


def not_delivered(names: list[str], why: str) -> DeliveryReport:
    """A report for ``--no-deliver``: every bundle stays in dist/."""
    return DeliveryReport(GroupResult([]), list(names), why)


def print_deliveries(delivery: DeliveryReport, dist_dir: Path, stream=None) -> None:
    """One line per delivered client (a summary for bulk runs), then the bundles left in dist/."""
    stream = stream or sys.stdout
    results = delivery.group.results
    if sum(len(r.steps) for r in results) <= SUMMARY_OVER:
        for result in results:
            report.print_host(result, stream=stream)
    else:
        _print_summary(results, stream)
    why = (
        delivery.skipped_reason
        or "no consumer host in the inventory (group consumers, or client_names)"
    )
    left = delivery.undelivered
    if 0 < len(left) <= SUMMARY_OVER:
        for name in left:
            stream.write(f"{name}: not delivered: {why}; the bundle is in {dist_dir / name}/\n")
    elif left:
        stream.write(f"{len(left)} bundles not delivered: {why}; they are in {dist_dir}/\n")


def _print_summary(results: list[HostResult], stream) -> None:
    counts = {
        status: sum(r.count(status) for r in results) for status in ("changed", "ok", "failed")
    }
    stream.write(
        f"delivered to {len(results)} hosts: {counts['changed']} written, {counts['ok']} unchanged, "
        f"{counts['failed'] + sum(1 for r in results if r.error)} failed\n"
    )
    for result in results:
        if result.failed:
            report.print_host(result, stream=stream)


# --- --csr: the key is made on the consumer ---------------------------------------------------

KEYGEN = {
    "ec": "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256",
    "rsa": "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072",
}


@dataclass(frozen=True)
class CsrOptions:
    """How to sign: validity, subject extras, and whether a valid certificate may be replaced."""

    days: int = 365
    org: str | None = None
    email: str | None = None
    reissue: bool = False


def spki_sha256(public_key) -> str:
    """sha256 of a public key's DER SubjectPublicKeyInfo, as ``openssl pkey -pubout -outform
    DER | sha256sum`` prints it on the consumer."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return sha256(der)


def remote_spki_command(key_path: str) -> str:
    """Prints ``spki\\t<sha256>`` of the key at ``key_path`` (nothing if it is missing)."""
    q = shlex.quote(key_path)
    return (
        f"if [ -f {q} ] && command -v openssl >/dev/null; then printf 'spki\\t%s\\n' "
        f'"$(openssl pkey -in {q} -pubout -outform DER 2>/dev/null | sha256sum | cut -d" " -f1)"; fi\n'
    )


def parse_spki(output: str) -> str | None:
    for line in output.splitlines():
        key, _, value = line.partition("\t")
        if key == "spki" and value and value != sha256(b""):
            return value
    return None


def csr_decision(index_status: str | None, cert_pem: bytes | None, key_made_here: bool,
                 remote_cert_sha: str | None, remote_spki: str | None, reissue: bool) -> str:  # fmt: skip
    """``keep`` (the consumer holds the index's valid certificate and the key it made for it),
    ``new`` (make a key there and sign its CSR), or raise when a valid certificate would be
    silently replaced. Pure. Example: ``csr_decision("valid", pem, False, sha, spki, False)``."""
    if index_status != "valid" or reissue:
        return "new"
    replace = (
        "add --reissue to replace it with a key made there (the old one is revoked as superseded)"
    )
    if key_made_here:
        raise BadInput(f"the valid certificate's key was made here, not on the consumer: {replace}")
    cert = x509.load_pem_x509_certificate(cert_pem)
    if remote_cert_sha == sha256(cert_pem) and remote_spki == spki_sha256(cert.public_key()):
        return "keep"
    raise BadInput(f"the valid certificate's key is not on the consumer: {replace}")


def refuse_unsafe_folder(folder: str, names: list[str], facts, user: str) -> None:
    """Raise ``UserError`` when ``folder`` cannot take a bundle (a link, a file, another user's
    directory, a directory where a file goes): with ``--csr``, before a key is made there or a
    certificate signed for it. The same checks as ``plan_delivery``, on names only."""
    plan_delivery(folder, [BundleFile(name, b"") for name in names], facts, user)


def keygen_script(folder: str, temporary_key: str, name: str, key_type: str) -> str:
    """Make a key (0600, under a temporary name) in ``folder`` and print its CSR (CN=name).

    ``folder`` must be a directory of the login user's, not a link (checked again here: the
    facts were read one round trip earlier); it is 0700 before the key is made."""
    q = shlex.quote
    refuse = f"{{ echo {q(folder + ' is a link or not a directory of yours: move it away')} >&2; exit 5; }}"
    return "\n".join(
        [
            "set -e",
            "umask 077",
            "command -v openssl >/dev/null || { echo 'openssl is not installed: apt-get install openssl' >&2; exit 127; }",
            f"[ ! -L {q(folder)} ] || {refuse}",
            f"mkdir -p {q(folder)}",
            f"[ -d {q(folder)} ] && [ ! -L {q(folder)} ] && [ -O {q(folder)} ] || {refuse}",
            f"chmod 0700 {q(folder)}",
            f"{KEYGEN[key_type]} -out {q(temporary_key)} 2>/dev/null",
            f"chmod 0600 {q(temporary_key)}",
            f"openssl req -new -key {q(temporary_key)} -subj {q('/CN=' + name)} -outform PEM",
            "",
        ]
    )


def issue_with_csr(store, names: list[str], options: CsrOptions, loaded=None) -> DeliveryReport:
    """``inv issue-client --csr``: for each name, a key made on its one consumer host, the CSR
    signed here, the certificate and server CA pushed back. One name at a time (one PKI lock)."""
    from . import inventory

    store.check_client_days(options.days)  # before any consumer makes a key
    loaded = loaded or inventory.load()
    results, targets = [], {}
    for name in names:
        hosts = consumer_hosts(loaded, name)
        if len(hosts) != 1:
            found = ", ".join(h.name for h in hosts) or "none"
            raise BadInput(
                f"{name}: --csr needs exactly one consumer host for {name} (found: {found})"
            )
        results.append(_csr_on_host(store, hosts[0], name, options))
        targets[name] = [hosts[0].name]
    return DeliveryReport(GroupResult(results), [], targets=targets)


def _csr_on_host(store, host, name: str, options: CsrOptions) -> HostResult:
    folder = session_path(bundle_dir(host.vars))
    try:
        with Remote(SshTarget.from_vars(host.name, host.vars)) as remote:
            step = _csr_step(store, remote, folder, name, options)
    except UserError as error:
        step = Step("bundle", name, "failed", str(error))
    return HostResult(host.name, [step])


def _csr_step(store, remote: Remote, folder: str, name: str, options: CsrOptions) -> Step:
    key_path, cert_path = f"{folder}/{name}.key", f"{folder}/{name}.crt"
    names = [f"{name}.key", f"{name}.crt", "api-ca.crt"]
    output = remote.run_script(facts_script(folder, names, remote_spki_command(key_path)),
                               check=True).stdout  # fmt: skip
    refuse_unsafe_folder(folder, names, parse_resource_facts(output), parse_session(output)["user"])
    status = store.client_status(name)
    material = store.client_material(name) if status == "valid" else None
    remote_cert = parse_resource_facts(output).path(cert_path).sha256
    cert_pem = material.cert_pem if material else None
    made_here = bool(material and material.key_pem)
    decision = csr_decision(
        status, cert_pem, made_here, remote_cert, parse_spki(output), options.reissue
    )
    public = [BundleFile("api-ca.crt", store.server_ca_pem())]
    if decision == "keep":
        changed, reason = deliver_files(
            remote, folder, [BundleFile(f"{name}.crt", material.cert_pem), *public]
        )
        return Step(
            "bundle", name, "changed" if changed else "ok", reason + "; key made on the consumer"
        )
    return _sign_and_push(store, remote, folder, name, options, public)


def _sign_and_push(
    store, remote: Remote, folder: str, name: str, options: CsrOptions, public
) -> Step:
    from . import pki

    temporary_key = f"{folder}/.{name}.key.{secrets.token_hex(4)}.mtls-tmp"
    key_type = pki.key_type_of(x509.load_pem_x509_certificate(store.client_ca_pem()).public_key())
    csr = remote.run_script(keygen_script(folder, temporary_key, name, key_type), check=True).stdout
    try:
        issued = store.sign_client_csr(name, csr.encode(), options.days, options.org, options.email,
                                       reissue=options.reissue)  # fmt: skip
    except Exception:
        remote.run(f"rm -f {shlex.quote(temporary_key)}")
        raise
    cert_pem = issued.cert_path.read_bytes()
    spki = spki_sha256(x509.load_pem_x509_certificate(cert_pem).public_key())
    _, reason = deliver_files(
        remote, folder, [BundleFile(f"{name}.crt", cert_pem), *public],
        before_rename=_install_key(folder, name, temporary_key, spki), extra_temporaries=(temporary_key,),
    )  # fmt: skip
    return Step("bundle", name, "changed", f"{issued.reason}, serial {issued.serial}; key made on the consumer, "
                f"never left it; {reason}")  # fmt: skip


def _install_key(folder: str, name: str, temporary_key: str, spki: str) -> str:
    """Shell lines: the new key must match the signed certificate; then it replaces the old one
    (and a .p12 of an earlier key goes, it no longer matches)."""
    q = shlex.quote
    return "\n".join(
        [
            f'[ "$(openssl pkey -in {q(temporary_key)} -pubout -outform DER | sha256sum | cut -d" " -f1)" = {spki} ] '
            "|| { echo 'the new key does not match the signed certificate' >&2; exit 4; }",
            f"chmod 0600 {q(temporary_key)}; mv -f {q(temporary_key)} {q(folder + '/' + name + '.key')}",
            f"rm -f {q(folder + '/' + name + '.p12')} {q(folder + '/' + name + '.p12.pass')}",
        ]
    )
