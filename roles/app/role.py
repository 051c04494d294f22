"""app: where the user's own application lives on the host, and its environment file.

The releases themselves are uploaded by the release pipeline (``mtls_deploy/release/``, ``inv
deploy``), not by a provision: this role makes their directories and the root-only environment
file, and tells the backend roles that depend on it where they are (``exports``). Without
``app_src`` it wants nothing and the backends keep their built-in front controllers.
"""

from mtls_deploy.facts import HostFacts
from mtls_deploy.release.environment import env_file, resolved
from mtls_deploy.resources import Directory, File

# A backend that hands app.env to its app lists this in a handler's ``listen`` (a restart or
# graceful reload); nothing else notices a changed environment.
ENVIRONMENT_CHANGED = ("app environment changed",)
CONFIG_ROOT = "/etc/mtls-deploy"


def app_root(v: dict) -> str:
    """``/srv/<api_name>``: releases, ``current`` and the shared directories."""
    return f"/srv/{v['api_name']}"


def env_file_path(v: dict) -> str:
    """``/etc/mtls-deploy/<api_name>/app.env``: the app's environment, root-only."""
    return f"{CONFIG_ROOT}/{v['api_name']}/app.env"


def shared_dirs(v: dict) -> list[str]:
    """``app_shared`` without trailing slashes, each once: ``[var/, storage]`` -> ``[var, storage]``."""
    return list(dict.fromkeys(str(d).rstrip("/") for d in v.get("app_shared") or []))


def exports(v: dict, facts: HostFacts) -> dict:
    """Where the app lives, for the backend roles (which create the shared dirs as their user)."""
    root = app_root(v)
    return {
        "app_enabled": bool(v.get("app_src")),
        "app_root": root,
        "app_current": f"{root}/current",
        "app_env_file": env_file_path(v),
        "app_shared": shared_dirs(v),
        "app_shared_root": f"{root}/shared",
    }


def resources(v: dict, facts: HostFacts) -> list:
    """With ``app_src``: the release tree's directories (root's) and the environment file
    (0600 root, a secret: never diffed or printed). Without: nothing."""
    if not v.get("app_src"):
        return []
    root, path = app_root(v), env_file_path(v)
    content = env_file(resolved(v.get("inventory_hostname", "host"), v.get("app_environment")))
    # Trees: releases, current, shared state and virtualenvs (the pipeline's and the backends'),
    # the environment and staged settings; when we created them, unprovision takes them whole.
    return [
        Directory(root, tree=True),
        Directory(f"{root}/releases"),
        Directory(f"{root}/shared"),
        Directory(CONFIG_ROOT),
        Directory(path.rsplit("/", 1)[0], mode=0o700, tree=True),
        File(path, content, mode=0o600, secret=True, notify=ENVIRONMENT_CHANGED),
    ]
