"""Roles as the engine sees them: folders found by name, read, ordered by their dependencies.

A role is ``roles/<name>/``: ``defaults.yml``, ``schema.yml``, ``meta.yml``, ``README.md`` and
``role.py``. It is looked up in the project's ``roles/`` first (``mtls_deploy.project``), then in
the package's own, so a project can add a role, or replace one, without touching the engine.
``role.py`` is loaded by its file path, under a module name of its own: roles need not be an
importable package, and no engine module imports one.

``meta.yml`` (every key optional)::

    dependencies: [certs, "app_{app}"]         # run first; "{var}" picks a role by a variable
    groups: [web]                              # hosts of these groups get the role by default
    requires: [server_name]                    # variables that must be set on the host
    validators:                                # checks of the files this role owns
      web: {command: [web-server, -t], error_lines: error}
    facts: {packages: [web-server, libfoo3]}   # package versions the role reads
"""

import importlib.util
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .errors import BadInput, UserError
from .project import package_data
from .resources import Validator

PACKAGE_ROLES = package_data("roles")  # the checkout's roles/, or the installed copy
ROLE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
META_KEYS = {"dependencies", "groups", "requires", "validators", "facts"}


@dataclass(frozen=True)
class Role:
    """One role folder, its ``meta.yml`` read and checked; ``module`` is its ``role.py``."""

    name: str
    folder: Path
    meta: dict

    @property
    def module(self):
        return _module(self.folder / "role.py")

    def call(self, function: str, *args, default=None):
        """``role.py``'s ``function(*args)``, or ``default`` when the role does not define it."""
        found = getattr(self.module, function, None)
        return default if found is None else found(*args)

    def validators(self, v: dict, facts) -> dict[str, Validator]:
        """The checks of this role's files: ``meta.yml``'s, then ``role.py``'s (they may depend
        on facts, e.g. a version in the command)."""
        declared = {n: _validator(self, n, spec) for n, spec in self.meta["validators"].items()}
        return {**declared, **self.call("validators", v, facts, default={})}

    def fact_packages(self) -> tuple[str, ...]:
        """Packages (dpkg-query patterns) whose installed versions this role reads."""
        return tuple(self.meta["facts"].get("packages") or ())


_pinned: dict | None = None  # while ``pinned``: role_dirs() and each role_folder(name), found once


@contextmanager
def pinned() -> Iterator[None]:
    """Within the block, the role folders are looked up once (checking a fleet's inventory
    asks for them thousands of times: ~2 ms a host, the project directory found each time)."""
    global _pinned
    outer, _pinned = _pinned, {}
    try:
        yield
    finally:
        _pinned = outer


def role_dirs() -> list[Path]:
    """Where roles are looked up: the project's ``roles/`` (if there is a project), then ours."""
    if _pinned is None:
        return _role_dirs()
    if "" not in _pinned:
        _pinned[""] = _role_dirs()
    return list(_pinned[""])


def _role_dirs() -> list[Path]:
    from .project import project_dir

    try:
        project_roles = project_dir() / "roles"
    except UserError:
        return [PACKAGE_ROLES]
    return [project_roles, PACKAGE_ROLES] if project_roles != PACKAGE_ROLES else [PACKAGE_ROLES]


def all_roles() -> list[str]:
    """Every role name found, in name order."""
    if _pinned is not None and "*" in _pinned:
        return list(_pinned["*"])
    names = {p.parent.name for folder in role_dirs() for p in folder.glob("*/role.py")}
    found = sorted(n for n in names if ROLE_NAME.fullmatch(n))
    if _pinned is not None:
        _pinned["*"] = found
    return found


def role_folder(name: str) -> Path | None:
    """``roles/<name>/``, from the project's roles first; ``None`` when there is none."""
    if not isinstance(name, str) or not ROLE_NAME.fullmatch(name):
        return None
    if _pinned is not None and name in _pinned:
        return _pinned[name]
    found = next((d / name for d in role_dirs() if (d / name / "role.py").is_file()), None)
    if _pinned is not None:
        _pinned[name] = found
    return found


def load(name: str) -> Role:
    """The role ``name``, or one line naming the roles there are."""
    folder = role_folder(name)
    if folder is None:
        known = ", ".join(all_roles()) or "none"
        raise BadInput(f"no role {name!r} in {_places()}; known roles: {known}")
    return _read_role(folder)


def _places() -> str:
    return " or ".join(f"{d}/" for d in role_dirs())


@cache
def _read_role(folder: Path) -> Role:
    meta = _read_yaml(folder / "meta.yml") or {}
    where = f"{folder}/meta.yml"
    if not isinstance(meta, dict) or meta.keys() - META_KEYS:
        unknown = sorted(meta.keys() - META_KEYS) if isinstance(meta, dict) else meta
        raise BadInput(f"{where}: unknown keys {unknown}; allowed: {', '.join(sorted(META_KEYS))}")
    lists = {k: list(meta.get(k) or []) for k in ("dependencies", "groups", "requires")}
    maps = {k: dict(meta.get(k) or {}) for k in ("validators", "facts")}
    return Role(folder.name, folder, {**lists, **maps})


def _read_yaml(path: Path):
    import yaml

    from .files import parse_yaml

    try:
        return parse_yaml(path.read_text())
    except FileNotFoundError:
        return None
    except yaml.YAMLError as error:
        raise BadInput(f"{path}: not valid YAML ({error.problem})") from None


@cache
def _module(path: Path):
    """``role.py`` by its path, as module ``mtls_role_<folder hash>_<name>``."""
    import hashlib

    tag = hashlib.sha256(str(path.parent).encode()).hexdigest()[:8]
    spec = importlib.util.spec_from_file_location(f"mtls_role_{tag}_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        raise BadInput(f"{path}:{error.lineno}: {error.msg}: fix the role's Python") from None
    except Exception as error:  # a role's own bug: one line, not a traceback
        raise BadInput(f"{path}: cannot load the role: {type(error).__name__}: {error}") from None
    return module


def _validator(role: Role, name: str, spec) -> Validator:
    command = spec.get("command") if isinstance(spec, dict) else None
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        raise BadInput(
            f"{role.folder}/meta.yml: validators.{name}.command must be a list of strings "
            "(argv), e.g. [web-server, -t]"
        )
    return Validator(name, (tuple(command),), spec.get("error_lines"))


def defaults(name: str) -> dict:
    """The role's ``defaults.yml`` as a dict."""
    return dict(_read_yaml(load(name).folder / "defaults.yml") or {})


def schema_file(name: str) -> Path:
    """The role's ``schema.yml`` (which may not exist)."""
    return load(name).folder / "schema.yml"


# --- which roles a host gets, in order ------------------------------------------------------


def default_roles(v: dict) -> list[str]:
    """``roles`` from the inventory, else every role whose ``groups`` holds one of the host's."""
    if v.get("roles") is not None:
        return list(v["roles"])
    groups = set(v.get("group_names") or [])
    return [n for n in all_roles() if groups & set(load(n).meta["groups"])]


def resolve(names: list[str], v: dict) -> list[str]:
    """``names`` and their dependencies, each dependency before the role that needs it, each
    role once. A cycle, or a dependency that is no role, is one line."""
    ordered: list[str] = []
    for name in names:
        _visit(name, v, ordered, ())
    return ordered


def _visit(name: str, v: dict, ordered: list[str], chain: tuple[str, ...]) -> None:
    if name in chain:
        cycle = " -> ".join([*chain[chain.index(name) :], name])
        raise BadInput(f"roles depend on each other in a cycle: {cycle}; break it in a meta.yml")
    if name in ordered:
        return
    role = load(name)
    for template in role.meta["dependencies"]:
        _visit(_dependency(role, template, v), v, ordered, (*chain, name))
    ordered.append(name)


def _dependency(role: Role, template: str, v: dict) -> str:
    """``"backend_{backend}"`` with the host's ``backend``."""
    try:
        name = str(template).format_map(v)
    except (KeyError, ValueError, IndexError) as error:
        raise BadInput(
            f"{role.folder}/meta.yml: dependency {template!r} names a variable the host does not "
            f"set ({error}); set it or fix the dependency"
        ) from None
    if role_folder(name) is None:
        raise BadInput(
            f"role {role.name} depends on {name!r} (from {template!r}), which is not a role; "
            f"known roles: {', '.join(all_roles())}"
        )
    return name


def host_roles(v: dict) -> list[Role]:
    """The roles a host gets, dependencies first."""
    return [load(n) for n in resolve(default_roles(v), v)]


# --- exports: what a role gives the roles that depend on it ---------------------------------


def with_exports(roles: list[Role], v: dict, facts) -> dict[str, dict]:
    """Each role's variables: ``v`` plus the exports of the roles it depends on (directly)."""
    exported: dict[str, dict] = {}
    variables: dict[str, dict] = {}
    for role in roles:
        deps = [_dependency(role, t, v) for t in role.meta["dependencies"]]
        variables[role.name] = {**v, **{k: x for d in deps for k, x in exported.get(d, {}).items()}}
        exported[role.name] = role.call("exports", variables[role.name], facts, default={})
    return variables


def host_exports(v: dict) -> dict:
    """Every export of the host's roles merged, dependencies first, so a later role's value wins
    (no facts: paths, not versions): what a role depending on all of them would receive.

    Example: ``host_exports(host.vars)["tls_certificate"]`` -> the file the site serves
    """
    from .facts import HostFacts

    merged: dict = {}
    for role in host_roles(v):
        received = {**v, **merged}
        merged.update(role.call("exports", received, HostFacts(), default={}))
    return merged


def exports_for(v: dict, role: str) -> dict:
    """What ``role`` exports for a host with variables ``v`` (no facts: paths, not versions).

    Example: ``exports_for(host.vars, "certs")["cert_path"]`` -> ``"/etc/app/cert.pem"``
    """
    from .facts import HostFacts

    return load(role).call("exports", v, HostFacts(), default={})
