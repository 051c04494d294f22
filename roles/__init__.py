"""Roles: what a host should have, as lists of desired-state resources (``mtls_deploy.resources``).

Each role is ``roles/<name>/`` with ``defaults.yml`` (every public variable, with a comment),
``schema.yml`` (every variable the role reads: type, pattern or choices or range, description;
checked for every host before anything connects, see ``mtls_deploy/schema.py``), ``role.py``
(``resources(v, facts)`` and ``handlers(v, facts)``; a handler that carries a value gives its
command as argv) and a README.
"""

from functools import cache
from pathlib import Path

ROLES_DIR = Path(__file__).resolve().parent

BACKEND_ROLES = {"php": "backend_php", "python": "backend_python"}


@cache
def _read_defaults(name: str) -> tuple:
    import yaml

    values = yaml.safe_load((ROLES_DIR / name / "defaults.yml").read_text()) or {}
    return tuple(values.items())


def with_defaults(name: str, v: dict) -> dict:
    """``v`` over the role's own defaults: a role function works even when it is called with
    another role's variables (the nginx role asking a backend role for its socket).

    Example: ``with_defaults("backend_php", {"server_name": "api1"})["php_socket"]``
    """
    return {**dict(_read_defaults(name)), **v}


def backend_role_name(v: dict) -> str:
    """The role that serves the API on this host: ``backend_php`` (default) or ``backend_python``."""
    from mtls_deploy.errors import BadInput

    backend = v.get("backend") or "php"
    if backend not in BACKEND_ROLES:
        raise BadInput(f"backend must be php or python, not {backend!r}")
    return BACKEND_ROLES[backend]
