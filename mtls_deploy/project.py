"""The project directory: the folder that holds ``inventory/``, ``pki/``, ``dist/`` and ``.lab/``.

One rule finds it, for every command:

1. ``mtls-deploy --project DIR`` (the installed command's flag; it sets the variable below, so
   what the command starts, the maintain timer included, sees the same directory);
2. else ``$MTLS_DEPLOY_PROJECT``, when it is set;
3. else the nearest directory holding an ``inventory/`` directory, starting with the current
   directory and going up through its parents.

So ``cd docs && inv pki.list`` reads the project's ``pki/``, not a new ``docs/pki/``. No project
directory is one clear error (``UserError``) saying how to fix it.

Relative paths resolve from the project directory, never from the current directory: the
defaults ``inventory/``, ``pki/``, ``dist/``, ``.lab/``, and the relative paths written in the
inventory (``ansible_ssh_private_key_file``, ``ssh_known_hosts_file``). ``~`` still means the
home directory. ``$MTLS_DEPLOY_INVENTORY``, ``$MTLS_DEPLOY_PKI_DIR`` and ``$MTLS_DEPLOY_DIST_DIR``
still name one folder each; a relative value there is read from the current directory, as any
path typed in a shell is.
"""

import os
from pathlib import Path

from .errors import UserError

PROJECT_ENV = "MTLS_DEPLOY_PROJECT"
MARKER = "inventory"
PACKAGE = Path(__file__).resolve().parent


def choose_project(chosen: str) -> Path:
    """``--project DIR``: check ``chosen`` and put it in force, for this process and the ones it
    starts; one line (``UserError``) when it is no directory."""
    path = _checked_env_dir(chosen, flag="--project")
    os.environ[PROJECT_ENV] = str(path)
    return path


def project_dir(start: Path | None = None) -> Path:
    """The project directory by the rule above; ``start`` defaults to the current directory.

    Example: in ``/srv/api/docs`` with ``/srv/api/inventory/``, ``project_dir()`` is ``/srv/api``.
    """
    chosen = os.environ.get(PROJECT_ENV)
    if chosen:
        return _checked_env_dir(chosen)
    start = (start or Path.cwd()).absolute()
    for folder in (start, *start.parents):
        if os.path.isdir(folder / MARKER):  # False, not an error, for a folder we cannot search
            return folder
    raise UserError(
        f"no project directory: neither {start} nor a parent holds {MARKER}/; cd into your "
        f"project (the directory with {MARKER}/), set {PROJECT_ENV} or give mtls-deploy "
        "--project DIR"
    )


def project_path(path: str | Path) -> Path:
    """``path`` resolved from the project directory; absolute and ``~`` paths are kept as given.

    Example: ``project_path("pki")`` -> ``/srv/api/pki``; ``project_path("/etc/x")`` -> ``/etc/x``.
    """
    if is_relative(path):
        return project_dir() / path
    return Path(path)


def is_relative(path: str | Path) -> bool:
    """True for a path that resolves from some directory: not absolute, not ``~``-based."""
    return not (Path(path).is_absolute() or str(path).startswith("~"))


def _checked_env_dir(chosen: str, flag: str = "") -> Path:
    """``chosen`` as an absolute directory; named as ``flag`` (``--project``), else as the
    variable, in the one line when it is no directory."""
    path = Path(chosen).expanduser().absolute()
    if os.path.isdir(path):
        return path
    if flag:
        raise UserError(
            f"{flag} {chosen} is not a directory: give your project directory (the one with "
            f"{MARKER}/), or leave {flag} out to use the current directory's project"
        )
    raise UserError(
        f"{PROJECT_ENV}={chosen} is not a directory: set it to your project directory "
        f"(the one with {MARKER}/), or unset it to use the current directory's project"
    )


# --- the tool's own files: in a checkout, or installed ----------------------------------------


def checkout() -> Path | None:
    """The checkout the package runs from (the directory with ``tasks.py`` beside the
    package), or ``None`` when it is installed (``pip install``, ``pipx install``)."""
    root = PACKAGE.parent
    return root if (root / "tasks.py").is_file() and (root / "roles").is_dir() else None


def package_data(name: str) -> Path:
    """The tool's own ``roles`` or ``templates`` folder: the checkout's top-level one, or the
    copy the wheel ships inside the package (``mtls_deploy/_roles``, see pyproject.toml).

    Example: ``package_data("templates")`` -> ``/srv/mtls-deploy/templates`` in a checkout,
    ``.../site-packages/mtls_deploy/_templates`` when installed.
    """
    shipped = PACKAGE / f"_{name}"
    return shipped if shipped.is_dir() else PACKAGE.parent / name
