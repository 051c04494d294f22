"""Ansible-format YAML inventory: hosts, groups, and variables layered with provenance.

Precedence, lowest first (Ansible's order for the sources we read, its default
``VARIABLE_PRECEDENCE``): role defaults < groups' vars written in ``hosts.yml`` < ``group_vars/``
files < the host's vars in ``hosts.yml`` < ``host_vars/`` files < command line; among groups,
``all`` first, then the shallow before the deep, then by name. So ``group_vars/all.yml`` beats
``vars:`` written for any group in ``hosts.yml``. Dicts are replaced, never deep-merged.

Host ranges (``api[01:20]``) and host patterns (``api:!api3``) are Ansible's
(``host_patterns.py``). What we do not read is refused in one line: a vault-encrypted file, a
Jinja expression in a value, a dynamic inventory (a script or an inventory plugin's YAML).
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BadInput, UserError
from .files import parse_yaml
from .host_patterns import evaluate, expand_range, natural_key, split_port
from .project import is_relative, project_path
from .variables import check_inventory

DEFAULT_INVENTORY = Path("inventory")
PATH_VARS = ("ansible_ssh_private_key_file", "ssh_known_hosts_file")  # resolved from the project
VAULT_HEADER = "$ANSIBLE_VAULT;"
TEMPLATE_MARKS = ("{{", "{%")
YAML_SUFFIXES = (".yml", ".yaml")
# app_environment, proxy_environment: a whole environment is a secret (a database URL with its password).
SECRET_NAME = re.compile(
    r"pass(word|phrase)?|secret|token|credential|hmac|environment", re.IGNORECASE
)


@dataclass(frozen=True)
class Layer:
    """One source of variables: where it came from and what it sets."""

    source: str
    values: dict


@dataclass
class Host:
    """A host with its groups and the layers of variables that apply to it, lowest first."""

    name: str
    groups: tuple[str, ...]
    layers: list[Layer] = field(default_factory=list)

    @property
    def vars(self) -> dict:
        """The merged variables: each later layer replaces whole values of earlier ones."""
        merged = {}
        for layer in self.layers:
            merged.update(layer.values)
        merged["inventory_hostname"] = self.name
        merged["group_names"] = [g for g in self.groups if g != "all"]
        return merged

    def source_of(self, name: str) -> str:
        """The file (or 'command line', 'role defaults ...') that set ``name`` last."""
        for layer in reversed(self.layers):
            if name in layer.values:
                return layer.source
        return "inventory" if name in ("inventory_hostname", "group_names") else "unset"


@dataclass
class Inventory:
    """Hosts by name and groups by name, loaded from an inventory directory."""

    path: Path
    hosts: dict[str, Host]
    groups: dict[str, list[str]]

    def host(self, name: str) -> Host:
        """The host called ``name``, or one clear error listing the known hosts."""
        if name not in self.hosts:
            known = ", ".join(sorted(self.hosts)) or "none"
            raise BadInput(f"unknown host {name!r}; known hosts: {known}")
        return self.hosts[name]

    def select(self, hosts: list[str] | None = None, group: str | None = None) -> list[Host]:
        """Hosts matched by the patterns in ``hosts`` and/or by ``group`` (also a pattern), as
        Ansible's ``--limit`` reads them; every host when both are empty. An unknown plain name
        or a pattern matching no host is one clear error.

        Example: ``inventory.select(["api1"])``, ``inventory.select(["api*:!api3"])``,
        ``inventory.select(group="api")``.
        """
        if not hosts and not group:
            return list(self.hosts.values())
        names = self._matching(hosts, "host") if hosts else []
        if group:
            names += [n for n in self._matching([group], "group") if n not in names]
        return [self.hosts[n] for n in names]

    def _matching(self, patterns: list[str], kind: str) -> list[str]:
        groups = {"ungrouped": [], **self.groups}  # Ansible's implicit group, even when empty
        return evaluate(patterns, list(self.hosts), groups, kind)


def inventory_dir(path: str | Path | None = None) -> Path:
    """The inventory to read: ``path``, else ``$MTLS_DEPLOY_INVENTORY``, else the project
    directory's ``inventory/`` (see ``project.py``)."""
    chosen = path or os.environ.get("MTLS_DEPLOY_INVENTORY")
    return Path(chosen) if chosen else project_path(DEFAULT_INVENTORY)


def existing_inventory_dir() -> Path | None:
    """``inventory_dir()`` if that directory exists; ``None`` without one or without a project
    directory (for commands that can do without an inventory, like ``pki.init``)."""
    try:
        folder = inventory_dir()
    except UserError:
        return None
    return folder if folder.is_dir() else None


def load(path: str | Path | None = None, extra_vars: dict | None = None) -> Inventory:
    """Read an inventory directory (``hosts.yml``, ``group_vars/``, ``host_vars/``).

    ``extra_vars`` are command-line values: they beat every file.
    Example: ``load("inventory", {"backend": "python"}).host("api1").vars["backend"]``
    """
    root = inventory_dir(path)
    hosts_file = _hosts_file(root)
    refuse_unread(root, hosts_file)
    tree = read_yaml(hosts_file) or {}
    if not isinstance(tree, dict) or "all" not in tree:
        raise BadInput(f"{hosts_file}: the top level must be the group 'all' (Ansible YAML format)")
    groups: dict[str, _Group] = {}
    _walk_group("all", tree["all"] or {}, depth=0, parents=(), groups=groups, source=hosts_file)
    defaults = role_defaults()
    hosts = {}
    for name in sorted({h for g in groups.values() for h in g.hosts}, key=natural_key):
        hosts[name] = _build_host(name, root, groups, defaults, extra_vars or {})
    check_inventory(hosts.values())
    members = {g.name: sorted(g.all_hosts(groups), key=natural_key) for g in groups.values()}
    return Inventory(path=root, hosts=hosts, groups=_with_ungrouped(members))


def _with_ungrouped(members: dict[str, list[str]]) -> dict[str, list[str]]:
    """``members`` with Ansible's implicit group ``ungrouped`` (hosts of no group but ``all``)
    when it has any host, so patterns can name it as in Ansible."""
    grouped = {n for g, names in members.items() if g not in ("all", "ungrouped") for n in names}
    ungrouped = [n for n in members.get("all", []) if n not in grouped]
    return {**members, "ungrouped": ungrouped} if ungrouped else members


def role_defaults() -> list[Layer]:
    """Every role's ``defaults.yml`` (a project's role shadowing ours), the lowest layer, in
    role name order: the only place role defaults are applied."""
    from . import role_loader

    layers = []
    for name in role_loader.all_roles():
        path = role_loader.load(name).folder / "defaults.yml"
        values = read_yaml(path) if path.is_file() else {}
        layers.append(Layer(f"roles/{name}/defaults.yml", _mapping(values, str(path))))
    return layers


def read_yaml(path: Path):
    """Parse a YAML file; a syntax error becomes one line with the file and line number."""
    import yaml

    try:
        text = path.read_text()
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None
    if text.lstrip().startswith(VAULT_HEADER):
        raise BadInput(_vault_refusal(str(path)))
    try:
        return parse_yaml(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        if "!vault" in str(error.problem):
            raise BadInput(_vault_refusal(where, "holds a value encrypted")) from None
        raise BadInput(f"{where}: YAML syntax error: {error.problem or error.context}") from None


def _vault_refusal(where: str, what: str = "is encrypted") -> str:
    return (
        f"{where} {what} with ansible-vault: decrypt it (ansible-vault decrypt) or move the "
        "secret to an environment variable; mtls-deploy does not read vault files"
    )


def refuse_unread(root: Path, hosts_file: Path) -> None:
    """One line for an inventory source in ``root`` that mtls-deploy would not read, where
    Ansible would: a script (executable, ``.py``, ``.sh``), an inventory plugin's YAML
    (``plugin:``), or a second inventory file beside ``hosts.yml`` (YAML, INI, JSON, TOML)."""
    for path in _inventory_sources(root):
        if path.suffix in (".py", ".sh") or (
            path.suffix not in YAML_SUFFIXES and os.access(path, os.X_OK)
        ):
            raise BadInput(_unread(path, "is a dynamic inventory script"))
        plugin = _plugin_of(path) if path.suffix in YAML_SUFFIXES else None
        if plugin:
            raise BadInput(_unread(path, f"configures the inventory plugin {plugin!r}"))
        if path != hosts_file and path.suffix in (*YAML_SUFFIXES, ".ini", ".json", ".toml"):
            raise BadInput(_unread(path, f"is a second inventory file beside {hosts_file.name}"))


def _unread(path: Path, what: str) -> str:
    return (
        f"{path} {what}; mtls-deploy reads one static YAML inventory (hosts.yml, group_vars/, "
        f"host_vars/): print its hosts with `ansible-inventory -i {path} --list --yaml --export` "
        "and put them in hosts.yml"
    )


def _inventory_sources(root: Path) -> list[Path]:
    """Files Ansible would read as inventory sources: all of ``root`` but the vars folders and
    hidden files."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in ("group_vars", "host_vars") and d[0] != ".")
        found += [Path(folder) / f for f in sorted(files) if f[0] != "."]
    return found


def _plugin_of(path: Path) -> str | None:
    """The ``plugin:`` a YAML file names at its top level (cheap for files that name none)."""
    if "plugin" not in path.read_text(errors="replace"):
        return None
    tree = read_yaml(path)
    return str(tree["plugin"]) if isinstance(tree, dict) and "plugin" in tree else None


def refuse_templates(values: dict, source: str) -> dict:
    """``values``, or one line naming the file and the variable holding a Jinja expression:
    Ansible would evaluate it, mtls-deploy does not."""
    for name, value in values.items():
        if _has_template(value):
            raise BadInput(
                f"{source}: {name} holds a Jinja expression ({{{{ ... }}}}); mtls-deploy does "
                "not evaluate templates in the inventory: write the value itself"
            )
    return values


def _has_template(value) -> bool:
    if isinstance(value, str):
        return any(mark in value for mark in TEMPLATE_MARKS)
    if isinstance(value, dict):
        return any(_has_template(k) or _has_template(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_template(item) for item in value)
    return False


@dataclass
class _Group:
    name: str
    depth: int
    parents: tuple[str, ...]
    vars: dict = field(default_factory=dict)
    hosts: dict[str, dict] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)

    def all_hosts(self, groups: dict[str, "_Group"]) -> set[str]:
        names = set(self.hosts)
        for child in self.children:
            names |= groups[child].all_hosts(groups)
        return names


def _hosts_file(root: Path) -> Path:
    if not root.is_dir():
        raise UserError(
            f"no inventory at {root}: set MTLS_DEPLOY_INVENTORY to an inventory directory"
        )
    for name in ("hosts.yml", "hosts.yaml"):
        if (root / name).is_file():
            return root / name
    raise UserError(f"{root}: no hosts.yml; an inventory directory needs one (Ansible YAML format)")


def _walk_group(name, body, depth, parents, groups, source):
    if not isinstance(body, dict):
        raise BadInput(f"{source}: group {name!r} must be a mapping, not {type(body).__name__}")
    group = groups.setdefault(name, _Group(name, depth, parents))
    group.depth = max(group.depth, depth)
    where = f"{source} (group {name})"
    group.vars.update(refuse_templates(_mapping(body.get("vars"), f"{where}: vars"), where))
    for host, host_vars in _mapping(body.get("hosts"), f"{source}: hosts of {name!r}").items():
        values = refuse_templates(_mapping(host_vars, f"{source}: host {host!r}"), where)
        ranged, port = split_port(str(host))
        values = {"ansible_port": port, **values} if port is not None else values
        for expanded in expand_range(ranged):
            group.hosts[expanded] = dict(values)  # each host's own: checks normalise in place
    children = _mapping(body.get("children"), f"{source}: children of {name!r}")
    for child, child_body in children.items():
        group.children.append(child)
        _walk_group(child, child_body or {}, depth + 1, (*parents, name), groups, source)


def _mapping(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadInput(f"{where} must be a mapping, not {type(value).__name__}")
    return value


def _groups_of(host: str, groups: dict[str, _Group]) -> list[_Group]:
    member = [g for g in groups.values() if host in g.all_hosts(groups)]
    return sorted(member, key=lambda g: (g.depth, g.name))


def _build_host(name, root, groups, defaults, extra_vars) -> Host:
    member_of = _groups_of(name, groups)
    layers = list(defaults)
    for group in member_of:
        if group.vars:
            layers.append(Layer(f"{_hosts_file(root)} (group {group.name})", group.vars))
    for group in member_of:
        layers += _vars_files(root / "group_vars", group.name)
    inline = [g.hosts[name] for g in member_of if name in g.hosts and g.hosts[name]]
    for values in inline:
        layers.append(Layer(f"{_hosts_file(root)} (host {name})", values))
    layers += _vars_files(root / "host_vars", name)
    if extra_vars:
        layers.append(Layer("command line", dict(extra_vars)))
    layers = [_with_project_paths(layer) for layer in layers]
    return Host(name=name, groups=tuple(g.name for g in member_of), layers=layers)


def _with_project_paths(layer: Layer) -> Layer:
    """``layer`` with its relative ``PATH_VARS`` made absolute from the project directory, so
    the key file and known_hosts are the same wherever ``inv`` runs (and the connection and
    ``inv inventory --host`` show the file actually used)."""
    relative = {
        name: value
        for name, value in layer.values.items()
        if name in PATH_VARS and isinstance(value, str) and value and is_relative(value)
    }
    if not relative:
        return layer
    resolved = {name: str(project_path(value)) for name, value in relative.items()}
    return Layer(layer.source, {**layer.values, **resolved})


def _vars_files(folder: Path, name: str) -> list[Layer]:
    """``group_vars/<name>.yml`` or every ``*.yml`` in ``group_vars/<name>/``, as Ansible reads."""
    candidates = [folder / f"{name}.yml", folder / f"{name}.yaml"]
    if (folder / name).is_dir():
        candidates += sorted((folder / name).glob("*.y*ml"))
    layers = []
    for path in candidates:
        if path.is_file():
            values = refuse_templates(_mapping(read_yaml(path), str(path)), str(path))
            layers.append(Layer(str(path), values))
    return layers


def masked(name: str, value):
    """``value``, or ``'********'`` when the variable's name looks like a secret; dicts and lists
    are masked all the way down (``smtp: {password: x}`` -> ``{"password": "********"}``)."""
    if SECRET_NAME.search(str(name)) and value not in (None, ""):
        return "********"
    if isinstance(value, dict):
        return {key: masked(key, item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [masked(name, item) for item in value]
    return value


def host_report(host: Host) -> dict:
    """``{var: {"value": ..., "source": ...}}`` for ``inv inventory --host``, secrets masked."""
    return {
        name: {"value": masked(name, value), "source": host.source_of(name)}
        for name, value in sorted(host.vars.items())
    }


def groups_report(inventory: Inventory) -> dict:
    """``{group: [hosts]}`` for ``inv inventory``, leaving out 'all' and empty groups."""
    return {g: hosts for g, hosts in sorted(inventory.groups.items()) if g != "all" and hosts}
