"""The inventory variables the engine itself reads, the roles each host gets, and the check of
every host's variables against the engine's schema and its roles' (``mtls_deploy.schema``)."""

import sys
from functools import cache

from . import role_loader, schema
from .errors import BadInput

CLIENT_NAME = r"[a-z0-9][a-z0-9._-]{0,63}"  # as pki.CLIENT_NAME
# No shell metacharacters ($ ` ; | & < > \ ( ) newline): options, values and quotes only
SSH_ARGS = r"""[A-Za-z0-9 _.,:@%=/+~'"\[\]-]{0,1000}"""
BUNDLE_NAME = r"(?!\.\.?(/|\Z))([A-Za-z0-9._+-]|\{api_name\}){1,255}"

# Variables read outside any role (connection, lab, PKI, delivery, smoke test), in the format
# of roles/<role>/schema.yml. Variables a role owns are declared in its schema.yml.
ENGINE_VARIABLES = {
    "ansible_host": {"type": "address", "description": "address of the host's sshd"},
    "ansible_port": {"type": "port", "description": "port of the host's sshd"},
    "ansible_user": {
        "type": "str",
        "pattern": r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}",
        "format": "a login name (letters, digits, '_', '.' and '-', at most 32)",
        "description": "the SSH login user",
    },
    "ansible_become": {"type": "bool", "description": "run root's commands through sudo"},
    "ansible_ssh_private_key_file": {"type": "local_path", "description": "SSH private key"},
    "ansible_ssh_common_args": {
        "type": "str",
        "pattern": SSH_ARGS,
        "format": "ssh options on one line as Ansible users write them (-o ProxyJump=bastion, "
        "-J user@host:22), of letters, digits, spaces, quotes and -_.,:@%=/+~[]",
        "description": "ssh arguments as Ansible's: only -o ProxyJump=HOST / -J HOST is read "
        "(a warning names the rest)",
    },
    "ssh_known_hosts_file": {"type": "local_path", "description": "the recorded host keys"},
    "ssh_connect_timeout": {
        "type": "float",
        "min": 0.1,
        "max": 3600,
        "description": "seconds to wait for the SSH connection",
    },
    "server_name": {
        "type": "dns_name",
        "required": True,
        "description": "the name clients connect to (certificate CN, the site's server name)",
    },
    "https_port": {"type": "port", "required": True, "description": "the API's HTTPS port"},
    "https_listen": {
        "type": "listen",
        "required": True,
        "description": '"*" (every IPv4 address) or one IPv4/IPv6 address to listen on',
    },
    "roles": {
        "type": "list",
        "elements": {"type": "str", "pattern": r"[a-z][a-z0-9_]{0,63}", "format": "a role name"},
        "description": "the roles the host gets (default: the roles whose meta.yml names one "
        "of the host's groups), each after the roles it depends on",
    },
    "lab": {"type": "bool", "description": "a lab host (inv lab.*)"},
    "lab_release": {
        "type": "str",
        "choices": ["bookworm", "trixie"],
        "description": "the Debian a lab host runs: bookworm (12, default) or trixie (13)",
    },
    "pki_key_type": {"type": "str", "choices": ["ec", "rsa"], "description": "client key type"},
    # The PKI's lifetimes and thresholds (mtls_deploy/pki/settings.py), set once in group_vars/all
    **{
        name: {"type": "duration", "description": what}
        for name, what in {
            "client_lifetime": "validity of a client certificate (default 365d)",
            "server_lifetime": "validity of a server certificate (default 365d)",
            "crl_lifetime": "validity of the CRL, re-signed with a third left (default 180d)",
            "ca_lifetime": "validity of a new CA, at pki.init (default 3650d)",
            "warn_before": "warn when something expires within this (default 30d)",
            "client_renew_before": "renew client certificates due within this (default 30d)",
        }.items()
    },
    "client_names": {
        "type": "list",
        "elements": {"type": "str", "pattern": CLIENT_NAME, "format": "a client name"},
        "description": "the clients whose bundles a consumer host holds",
    },
    "bundle_dir": {
        "type": "str",
        "pattern": rf"~/?|(~/|/)({BUNDLE_NAME}/)*{BUNDLE_NAME}/?",
        "format": "~, ~/path or /path, normalised, of letters, digits, '.', '_', '+', '-' "
        "and {api_name}",
        "description": "where a consumer's bundles go",
    },
}
# Read outside the roles too (api_name: part of bundle_dir; client_verify: the smoke test's
# expectations), but declared by whichever role owns them, checked on every host.
BORROWED = ("api_name", "client_verify")
IGNORED_BY_TYPOS = {"inventory_hostname", "group_names"}


@cache
def engine_specs() -> dict:
    """``ENGINE_VARIABLES``, each spec checked and ``declared_by`` resolved."""
    for name, spec in ENGINE_VARIABLES.items():
        schema.validate_spec(name, spec, "mtls_deploy/variables.py")
    specs = {name: schema.resolve(name, spec) for name, spec in ENGINE_VARIABLES.items()}
    return {**specs, **_borrowed()}


def _borrowed() -> dict:
    """The specs of ``BORROWED`` from the first role that declares each."""
    found = {}
    for role in schema.all_roles():
        owned = schema.role_schema(role)
        found |= {n: owned[n] for n in BORROWED if n in owned and n not in found}
    return found


def declared_names() -> frozenset[str]:
    """Every variable the engine or any role declares."""
    names = set(engine_specs()) | IGNORED_BY_TYPOS
    for role in schema.all_roles():
        names |= set(schema.role_schema(role))
    return frozenset(names)


def role_names(v: dict) -> list[str]:
    """The roles a host gets, each after those it depends on (``role_loader``)."""
    return role_loader.resolve(role_loader.default_roles(v), v)


def role_specs(host) -> dict:
    """The specs of every role ``host`` gets, or one line naming a role that does not exist.

    The roles named first are checked before their dependencies are resolved: a dependency
    may be chosen by one of their variables (``backend_{backend}``)."""
    named = role_loader.default_roles(host.vars)
    for role in named:
        if role_loader.role_folder(role) is None:
            raise BadInput(
                f"{host.name}: roles lists {role!r}, which is not a role "
                f"(set in {host.source_of('roles')}); known roles: {', '.join(schema.all_roles())}"
            )
    specs = {k: s for role in named for k, s in schema.role_schema(role).items()}
    schema.check_layers(host, specs)
    for role in role_names(host.vars):
        specs.update(schema.role_schema(role))
    return specs


def check_types(host) -> list[str]:
    """Check every declared variable in every layer of ``host``, normalising in place, against
    the engine's schema and its roles'. Returns warnings for likely misspelt variables.

    A bad value is one line naming the host, the variable, the value, the file that set it
    and the fix. Example: ``check_types(inventory.load().host("api1"))`` -> ``[]``
    """
    schema.check_layers(host, engine_specs())
    schema.check_layers(host, role_specs(host))
    return schema.likely_typos(host, set(declared_names()))


def check_inventory(hosts) -> None:
    """``check_types`` for every host; each warning printed once on stderr."""
    with role_loader.pinned():  # the role folders do not move while the hosts are checked
        warnings = [line for host in hosts for line in check_types(host)]
    for line in dict.fromkeys(warnings):
        print(line, file=sys.stderr)


def require(host, *names: str) -> dict:
    """The host's merged vars, or one clear error naming the first missing variable."""
    merged = host.vars
    for name in names:
        if merged.get(name) in (None, ""):
            raise BadInput(
                f"{host.name}: {name} is not set; set it in host_vars/{host.name}.yml "
                f"or in the group's group_vars"
            )
    return merged
