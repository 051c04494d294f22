"""Reading what ``inv status`` judges: the PKI on the control machine, and every host live over
SSH, in parallel, one script (one round trip) per host:

- an API host (as root): its server certificate, client CA bundle and CRL (the paths its roles
  export, merged as the site receives them: an ACME lineage's, not the tls role's), the engine's manifest (which units each of the host's roles runs) and every
  unit's active state; then, on a connection of its own, ``provision --check`` (the engine's
  check mode: it signs, issues and writes nothing) for the drift;
- a consumer (as its login user, no sudo): each of its clients' certificates and ``api-ca.crt``
  in its bundle directory.
"""

import base64
import binascii
import shlex

from cryptography import x509

from ..connection import Remote, SshTarget
from ..deliver import CONSUMERS, bundle_dir, client_names, session_path
from ..facts import MANIFEST
from ..runner import HostResult, run_on_hosts

MISSING = "-"
UNIT_SUFFIXES = (".service", ".socket", ".timer", ".path", ".mount", ".target")
# mtls_file TAG PATH [PATH2]: the first readable of the paths, base64, or "-" for none
FILE_FUNCTION = (
    "mtls_file() { mtls_tag=$1; shift; printf '@@%s ' \"$mtls_tag\"; "
    'for mtls_p in "$@"; do if [ -r "$mtls_p" ]; then base64 -w0 < "$mtls_p"; echo; return; fi; '
    "done; echo -; }"
)


# --- the scripts ------------------------------------------------------------------------------


def api_script(paths: dict[str, str]) -> str:
    """The API host's script: ``paths`` (tag -> path) as ``@@tag base64`` lines, the
    manifest, then ``@@units`` and systemd's unit table."""
    lines = [FILE_FUNCTION]
    for tag, path in {**paths, "manifest": MANIFEST}.items():
        lines.append(f"mtls_file {tag} {shlex.quote(path)}")
    lines += ["echo @@units", "systemctl list-units --all --no-legend --plain --full 2>/dev/null"]
    return "\n".join(lines) + "\nexit 0\n"


def consumer_script(folder: str, names: list[str]) -> str:
    """The consumer's script: each client's certificate and the bundle's ``api-ca.crt``."""
    lines = [FILE_FUNCTION]
    for name in names:
        lines.append(f"mtls_file {shlex.quote('client:' + name)} {_in(folder, name + '.crt')}")
    lines.append(f"mtls_file api-ca {_in(folder, 'api-ca.crt')}")
    return "\n".join(lines) + "\nexit 0\n"


def _in(folder: str, file: str) -> str:
    """The file in the bundle directory, or in its ``current`` version (a bundle switched
    atomically through a ``current`` link keeps its files there)."""
    return f"{shlex.quote(f'{folder}/{file}')} {shlex.quote(f'{folder}/current/{file}')}"


def parse_output(output: str) -> tuple[dict[str, bytes | None], list[str]]:
    """The script's ``@@tag base64`` lines as {tag: bytes or None (missing)}, and the lines
    after ``@@units``."""
    files, units, in_units = {}, [], False
    for line in output.splitlines():
        if line == "@@units":
            in_units = True
        elif in_units:
            units.append(line)
        elif line.startswith("@@"):
            tag, _, data = line[2:].partition(" ")
            files[tag] = _decoded(data.strip())
    return files, units


def _decoded(data: str) -> bytes | None:
    if data == MISSING:
        return None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def unit_states(lines: list[str]) -> dict[str, str]:
    """``systemctl list-units --plain`` lines as {unit: ACTIVE column}."""
    states = {}
    for line in lines:
        words = line.split()
        if len(words) >= 3:
            states[words[0]] = words[2]
    return states


def unit_name(name: str) -> str:
    """``nginx`` -> ``nginx.service``; ``api.socket`` stays (``php8.2-fpm`` is a service)."""
    return name if name.endswith(UNIT_SUFFIXES) else f"{name}.service"


def wanted_units(manifest: dict, role_names: list[str], states: dict[str, str]) -> dict[str, str]:
    """{unit: active state} of the units the host's roles run, as their manifest entries say."""
    units = [u for role in role_names for u in manifest.get(role, {}).get("units", [])]
    return {unit_name(u): states.get(unit_name(u), "absent") for u in dict.fromkeys(units)}


# --- reading the hosts ------------------------------------------------------------------------


def tls_paths(v: dict) -> dict[str, str]:
    """Where the site's server certificate, client CA and CRL are on this host: the roles'
    exports merged as the site receives them (an ACME lineage overrides the tls role's path)."""
    from ..role_loader import host_exports

    exported = host_exports(v)
    return {
        "server-cert": exported["tls_certificate"],
        "client-ca": exported["tls_client_ca"],
        "crl": exported["tls_crl"],
    }


def server_cert_kind(v: dict) -> str:
    """``private`` (our PKI's), ``acme`` or ``files`` (another CA's)."""
    return v.get("server_cert") or "private"


def read_served_certificate(host) -> bytes | None:
    """The server certificate the site serves on ``host``, read as root in one round trip."""
    path = tls_paths(host.vars)["server-cert"]
    script = f"{FILE_FUNCTION}\nmtls_file server-cert {shlex.quote(path)}\nexit 0\n"
    with Remote(SshTarget.from_vars(host.name, host.vars)) as remote:
        output = remote.run_script(script, sudo=True, timeout=60)
    return parse_output(output.stdout)[0].get("server-cert")


def read_api_host(host) -> HostResult:
    """One API host: its files, units and drift (``data``), or the error that stopped it."""
    from .. import manifest as manifest_module
    from ..facts import HostFacts
    from ..role_loader import host_roles

    paths = tls_paths(host.vars)
    with Remote(SshTarget.from_vars(host.name, host.vars)) as remote:
        output = remote.run_script(api_script(paths), sudo=True, timeout=60)
    files, unit_lines = parse_output(output.stdout)
    manifest_text = (files.pop("manifest", None) or b"").decode(errors="replace")
    manifest = manifest_module.read(HostFacts(manifest=manifest_text))
    roles = [role.name for role in host_roles(host.vars)]
    units = wanted_units(manifest, roles, unit_states(unit_lines))
    data = {"files": files, "units": units, "roles": roles, "drift": drift(host),
            "server_cert": server_cert_kind(host.vars)}  # fmt: skip
    return HostResult(host.name, data=data)


def drift(host) -> dict:
    """``provision --check`` on the host: the names of its changed steps, or its error."""
    from ..provision import RunOptions, provision_host

    result = provision_host(host, RunOptions(check=True))
    if result.error:
        return {"error": result.error}
    return {"changed": [f"{s.kind} {s.name}" for s in result.steps if s.status == "changed"]}


def read_consumer(host) -> HostResult:
    """One consumer: {client name: certificate bytes or None}, and its ``api-ca.crt``."""
    names, folder = client_names(host), session_path(bundle_dir(host.vars))
    with Remote(SshTarget.from_vars(host.name, host.vars)) as remote:
        output = remote.run_script(consumer_script(folder, names), timeout=60)
    files, _ = parse_output(output.stdout)
    clients = {name: files.get(f"client:{name}") for name in names}
    return HostResult(host.name, data={"clients": clients, "api_ca": files.get("api-ca"),
                                       "folder": bundle_dir(host.vars)})  # fmt: skip


def read_hosts(api_hosts: list, consumers: list) -> dict[str, HostResult]:
    """Every host read in parallel: {name: HostResult} (``error`` set when unreachable)."""
    jobs = [(h, read_api_host) for h in api_hosts] + [(h, read_consumer) for h in consumers]
    work = {id(h): job for h, job in jobs}
    group = run_on_hosts([h for h, _ in jobs], lambda h: work[id(h)](h))
    return {r.host: r for r in group.results}


def select_hosts(loaded, names: list[str]) -> tuple[list, list]:
    """(API hosts, consumer hosts): those named, else every host of groups api and consumers."""
    chosen = loaded.select(names) if names else None
    api = set(loaded.groups.get("api", []))
    consumers = set(loaded.groups.get(CONSUMERS, []))
    pool = chosen if chosen is not None else loaded.select([], None)
    return [h for h in pool if h.name in api], [h for h in pool if h.name in consumers]


# --- certificates ------------------------------------------------------------------------------


def certificates(pem: bytes | None) -> list[x509.Certificate]:
    """Every certificate in a PEM file (``[]`` for none or garbage)."""
    if not pem:
        return []
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        return []


def crl_facts(pem: bytes | None) -> dict | None:
    """A CRL as {number, this_update, next_update, der}; None when missing or not a CRL."""
    from ..pki.profile import crl_number

    try:
        crl = x509.load_pem_x509_crl(pem) if pem else None
        number = crl_number(crl) if crl else None
    except (ValueError, x509.ExtensionNotFound):
        return None
    if crl is None:
        return None
    from cryptography.hazmat.primitives.serialization import Encoding

    return {"number": number, "this_update": crl.last_update_utc,
            "next_update": crl.next_update_utc, "der": crl.public_bytes(Encoding.DER)}  # fmt: skip
