"""The application's directory on the control machine, found and read before any connection:
``app_src`` resolved from the project directory, the project's ``pki/``, ``dist/`` and
``inventory/`` it must not hold, and the app's environment, whose ``{env: NAME}`` values must be set here."""

import os
from pathlib import Path

from ..errors import BadInput
from ..project import project_path
from .environment import resolved
from .tree import Tree, read_tree

# Where the PKI and the bundles are (as mtls_deploy.pki reads them; not imported: start-up time),
# and the inventory (EAB keys, app_environment values).
PROJECT_SECRET_DIRS = {
    "MTLS_DEPLOY_PKI_DIR": "pki",
    "MTLS_DEPLOY_DIST_DIR": "dist",
    "MTLS_DEPLOY_INVENTORY": "inventory",
}


def app_source(host) -> Path:
    """``app_src`` of ``host`` as a directory of this machine, or one ``BadInput`` line."""
    src = str(host.vars.get("app_src") or "")
    if not src:
        raise BadInput(
            f"{host.name}: app_src is not set: set it to your application's directory "
            "(relative to the project) in the host's host_vars or group_vars"
        )
    path = project_path(os.path.expanduser(src))
    if not path.is_dir():
        raise BadInput(
            f"{host.name}: app_src {src} is not a directory (looked for {path}; set in "
            f"{host.source_of('app_src')}): create it or fix app_src"
        )
    return path


def project_secret_dirs() -> list[Path]:
    """The project's ``pki/``, ``dist/`` and ``inventory/`` (or where the environment moved
    them)."""
    return [
        Path(os.environ.get(env) or project_path(name)) for env, name in PROJECT_SECRET_DIRS.items()
    ]


def local_tree(host) -> Tree:
    """The host's application tree, walked, excluded and checked (``tree.read_tree``); a
    refusal names the host."""
    exclude = [str(p) for p in host.vars.get("app_exclude") or []]
    root = app_source(host)
    try:
        tree = read_tree(root, exclude, project_secret_dirs())
    except BadInput as refused:
        raise BadInput(f"{host.name}: {refused}") from None
    if not tree.entries:
        raise BadInput(f"{host.name}: app_src {tree.root} holds nothing to deploy")
    return tree


def check_sources(hosts) -> None:
    """For every host with ``app_src``: the directory exists and every environment value is at
    hand; else one ``BadInput`` line, before anything connects."""
    for host in hosts:
        if host.vars.get("app_src"):
            app_source(host)
            resolved(host.name, host.vars.get("app_environment"))
