"""Deliver client bundles to consumer hosts: the engine's facts -> plan -> apply, as the login user.

A bundle is desired state (``bundle_resources``): the bundle directory (0700, the login user's)
and its files (private ones 0600 and ``secret``). The engine's fact script reads the consumer,
``operations.plan`` compares, and the engine's apply script (``apply.build_script``) makes it so,
run as the consumer's login user WITHOUT sudo (consumers have none) over the host's SSH
connection. The files travel inside that script: base64 under ``umask 077``, each written to a
temporary file beside its target, sha256-checked, then renamed over it (atomic per file). The
directory step comes first (made under ``umask 077``, chmod 0700), then ``directory_guard``
checks it is a directory of the login user's, mode 0700, not a link: no file is created where
another user could open it, nor through a link swapped in since the facts were read.

Round trips: one to read the facts (enough when nothing changed), one to apply and read back.
``deliver_csr`` uses the same pipeline for ``--csr`` (the key made on the consumer).
"""

import shlex
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import apply as applying
from . import report
from .connection import Remote, SshTarget
from .errors import BadInput, UserError
from .facts import ResourceFacts, parse_resource_facts, resource_facts_script
from .operations import Step, directory_guard, plan, sha256
from .resources import Command, Directory, File
from .runner import GroupResult, HostResult, run_on_hosts
from .shell import render

CONSUMERS = "consumers"
DEFAULT_BUNDLE_DIR = "~/.mtls/{api_name}"
DEFAULT_API_NAME = "api"
PRIVATE_MODE, PUBLIC_MODE, DIR_MODE = 0o600, 0o644, 0o700
SUMMARY_OVER = 20  # more deliveries than this: one summary line instead of one per client
SESSION = 'printf \'home\\t%s\\nuser\\t%s\\ngroup\\t%s\\n\' "$HOME" "$(id -un)" "$(id -gn)"\n'


@dataclass(frozen=True)
class BundleFile:
    """One file of a bundle as it must be on the consumer."""

    name: str
    content: bytes = field(repr=False)
    mode: int = PUBLIC_MODE


@dataclass(frozen=True)
class Consumer:
    """One read of the consumer: who the login user is there, and the state of the paths."""

    home: str
    user: str
    group: str
    facts: ResourceFacts
    output: str = field(default="", repr=False)


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


# --- what the clients trust for the API's server certificate -----------------------------------

API_GROUP = "api"


def server_trust(v: dict, our_server_ca: bytes) -> bytes | None:
    """The roots a client needs to verify one API host's server certificate: our server CA
    (``server_cert: private``), a private ACME CA's (``acme_ca_bundle``), the CA of a
    ``files`` chain that is not public (``server_cert_files.ca``); None for a public CA, which
    the consumer's system store trusts (``acme``, ``files``)."""
    kind = v.get("server_cert") or "private"
    if kind == "private":
        return our_server_ca
    path = (
        v.get("acme_ca_bundle") if kind == "acme" else (v.get("server_cert_files") or {}).get("ca")
    )
    if not path:
        return None
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as error:
        raise UserError(
            f"{v.get('inventory_hostname')}: cannot read {path} (the API's CA for the client "
            f"bundles): {error.strerror}"
        ) from None


def api_trust(loaded, our_server_ca: bytes) -> bytes | None:
    """``api-ca.crt`` for the bundles: the roots of every API host (group api), each once;
    None when every API's certificate is from a public CA (no api-ca.crt, no --cacert).

    Example: ``api_trust(inventory.load(), store.server_ca_pem())`` -> our server CA's PEM
    """
    hosts = [loaded.host(name) for name in loaded.groups.get(API_GROUP, [])]
    if not hosts:
        return our_server_ca
    found = [server_trust(host.vars, our_server_ca) for host in hosts]
    roots = [pem.rstrip(b"\n") + b"\n" for pem in dict.fromkeys(p for p in found if p)]
    return b"".join(roots) or None


def bundle_api_ca(store, loaded=None):
    """``api_ca`` for ``pki.bundle``: our server CA as the store has it (hard-linked) when
    every API host uses it or there is no inventory, else ``api_trust``'s roots or None."""
    from . import inventory
    from .pki.bundle import OUR_SERVER_CA

    if loaded is None and inventory.existing_inventory_dir() is None:
        return OUR_SERVER_CA
    ours = store.trusted_server_cas_pem()  # both roots during a server CA rollover
    found = api_trust(loaded or inventory.load(), ours)
    return OUR_SERVER_CA if found == ours else found


def session_path(folder: str) -> str:
    """``~/x`` as the path an SSH session sees: relative to the login user's home, where
    ``sh -s`` starts. Absolute paths stay absolute."""
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


# --- the local bundle and its desired state ---------------------------------------------------


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


def folder_resource(folder: str, user: str = "", group: str = "") -> Directory:
    """The bundle directory: 0700, the login user's."""
    return Directory(folder, DIR_MODE, user, group)


def bundle_resources(folder: str, files: list[BundleFile], user: str = "", group: str = ""):
    """The desired state of a bundle on its consumer: the directory first, then each file,
    the login user's (private files ``secret``: never diffed). Pure."""
    return [
        folder_resource(folder, user, group),
        *(
            File(f"{folder}/{f.name}", f.content, f.mode, user, group, f.mode == PRIVATE_MODE)
            for f in files
        ),
    ]


def owned_by(resources: list, user: str, group: str) -> list:
    """``resources`` with the login user (learnt from the facts) as owner of every path."""
    return [
        replace(r, owner=user, group=group) if isinstance(r, File | Directory) else r
        for r in resources
    ]


# --- facts ------------------------------------------------------------------------------------


def facts_script(folder: str, resources: list, extra: str = "") -> str:
    """One round trip: the login user (name, primary group) and home, then the engine's
    resource facts (stat and sha256) of the folder, its parents and every resource's path, and
    the ``unless`` checks of its commands (the switch of a versioned bundle)."""
    paths = [*parents(folder), *(r.path for r in resources if isinstance(r, File | Directory))]
    checks = [render(r.unless) for r in resources if isinstance(r, Command) and r.unless]
    return SESSION + extra + resource_facts_script(list(dict.fromkeys(paths)), [], [], checks)


def read_consumer(remote: Remote, folder: str, resources: list, extra: str = "") -> Consumer:
    """The facts of the consumer for ``resources``, in one round trip."""
    output = remote.run_script(facts_script(folder, resources, extra), check=True).stdout
    return parse_consumer(output)


def parse_consumer(output: str) -> Consumer:
    """``facts_script`` output as a ``Consumer``."""
    found = {}
    for line in output.splitlines():
        key, _, value = line.partition("\t")
        if key in ("home", "user", "group") and key not in found:
            found[key] = value
    return Consumer(
        found["home"], found["user"], found["group"], parse_resource_facts(output), output
    )


def refuse_unsafe_folder(folder: str, resources: list, facts: ResourceFacts, user: str) -> None:
    """Raise ``UserError`` when ``folder`` cannot take a bundle (a parent or the folder a link
    or a file, another user's folder, a directory where a file goes), before anything is
    written or, with ``--csr``, a key made or a certificate signed. Pure."""
    for directory in parents(folder):
        state = facts.path(directory)
        if state.kind not in ("absent", "directory"):
            raise UserError(f"{directory} is a {state.kind}, not a directory: move it away")
    state = facts.path(folder)
    if state.kind == "directory" and state.owner != user:
        raise UserError(f"{folder} is owned by {state.owner}, not {user}: fix its owner first")
    for resource in resources:
        found = facts.path(resource.path) if isinstance(resource, File) else None
        if found and found.kind not in ("absent", "file"):
            raise UserError(f"{resource.path} is a {found.kind}: move it away")
        inside = isinstance(resource, Directory) and resource.path != folder  # a version dir
        if inside and facts.path(resource.path).kind not in ("absent", "directory"):
            raise UserError(f"{resource.path} is a {facts.path(resource.path).kind}: move it away")


# --- plan and apply: the engine's, as the login user ------------------------------------------


def converge(
    remote: Remote, folder: str, resources: list, leftover: str = ""
) -> tuple[Consumer, list[Step]]:
    """Read the consumer, refuse an unsafe folder, plan ``resources`` (owned by the login user)
    and, when something changed, apply them. Returns the first read and the planned steps."""
    consumer = read_consumer(remote, folder, resources)
    wanted = owned_by(resources, consumer.user, consumer.group)
    refuse_unsafe_folder(folder, wanted, consumer.facts, consumer.user)
    steps = plan(wanted, consumer.facts)
    if any(s.changed for s in steps):
        where = shown_path(consumer.home, folder)
        apply_as_login_user(remote, folder, wanted, steps, where, leftover)
    return consumer, steps


def apply_as_login_user(
    remote: Remote, folder: str, wanted: list, steps: list[Step], where: str, leftover: str = ""
) -> str:
    """Run the engine's apply script for ``steps`` without sudo, the folder guard before the
    first file, then read the result back and check it. Returns the script's stdout.
    ``leftover``: a temporary file of ours to remove whatever happens (a new key not used)."""
    guard = Step("guard", folder, "changed", "", [directory_guard(wanted[0])])
    script = (
        f"mtls_leftover={shlex.quote(leftover)}\n"  # and a temporary file not renamed into place:
        """trap 'rm -f ${t:+"$t"} ${mtls_leftover:+"$mtls_leftover"}' EXIT\n"""
        + applying.build_script([steps[0], guard, *steps[1:]], [])
        + "set +e\n"
        + facts_script(folder, wanted)
    )
    result = remote.run_script(script)
    if not result.ok:
        raise UserError(f"{where}: {_last_line(result.stderr) or f'exit {result.exit_status}'}")
    wrong = [s for s in plan(_states(wanted), parse_resource_facts(result.stdout)) if s.changed]
    if wrong:
        raise UserError(f"{where}: still not right after delivery:{_why(wrong)}")
    return result.stdout


def _states(resources: list) -> list:
    """The resources that describe a state to read back (a command is an action)."""
    return [r for r in resources if isinstance(r, File | Directory)]


def deliver_files(
    remote: Remote, folder: str, files: list[BundleFile], before: tuple = (), leftover: str = ""
) -> tuple[bool, str]:
    """Make the consumer's ``folder`` hold ``files`` (``before``: resources applied between the
    folder and the files); (changed, reason with the absolute path)."""
    resources = bundle_resources(folder, files)
    consumer, steps = converge(remote, folder, [resources[0], *before, *resources[1:]], leftover)
    where = shown_path(consumer.home, folder)
    if not any(s.changed for s in steps):
        return False, f"unchanged in {where}/: sha256 of {len(files)} files match"
    written = [s for s in steps if s.changed and _rewritten(s, consumer.facts)]
    return True, f"{where}/: {len(written)} files written, sha256 checked{_why(steps)}"


def _rewritten(step: Step, facts: ResourceFacts) -> bool:
    """A file step that sends content (not a mere chmod)."""
    resource = step.resource
    return isinstance(resource, File) and facts.path(step.name).sha256 != sha256(resource.content)


def _why(steps: list[Step]) -> str:
    """`` (directory mode 0755 -> 0700; bob.crt content differs ...; ...)``: three at most."""
    reasons = [
        f"{'directory' if s.kind == 'directory' else s.name.rsplit('/', 1)[-1]} {s.reason}"
        for s in steps
        if s.changed and s.kind in ("directory", "file")
    ]
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
    from .deliver_versions import step_for  # a version directory behind ``current``

    return step_for(remote, folder, name, files)


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
