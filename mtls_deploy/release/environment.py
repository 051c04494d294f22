"""The app's environment (``app_environment``): values from the inventory or from the control
machine's environment, written as a systemd ``EnvironmentFile`` that only root reads.

A value is a string, or ``{env: NAME}``: the control machine's ``$NAME`` at the time of the
run. Values are secrets: no error line and no report ever shows one.
"""

import os
import re

from ..errors import BadInput

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
NEEDS_ESCAPE = re.compile(r'([\\"$`])')


def resolved(host: str, environment: dict | None, environ=None) -> dict[str, str]:
    """``app_environment`` with every ``{env: NAME}`` replaced by ``$NAME`` of ``environ``
    (default: this process's environment); a variable not set there, or a value of more than
    one line, is one ``BadInput`` line naming the variable, never its value.

    Example: ``resolved("api1", {"DB": {"env": "DB_URL"}}, {"DB_URL": "x"})`` -> ``{"DB": "x"}``
    """
    environ = os.environ if environ is None else environ
    return {name: _value(host, name, value, environ) for name, value in (environment or {}).items()}


def _value(host: str, name: str, value, environ) -> str:
    if isinstance(value, dict):
        source = value.get("env")
        if not isinstance(source, str) or not NAME.fullmatch(source):
            raise BadInput(f"{host}: app_environment.{name} must be a string or {{env: NAME}}")
        if source not in environ:
            raise BadInput(
                f"{host}: app_environment.{name} comes from ${source}, which is not set on this "
                f"machine: export {source} before running, or give the value in the inventory"
            )
        value = environ[source]
    if not isinstance(value, str) or CONTROL.search(value):
        raise BadInput(
            f"{host}: app_environment.{name} must be one line of text (no control characters)"
        )
    return value


def env_file(values: dict[str, str]) -> bytes:
    """``NAME="value"`` lines as systemd's ``EnvironmentFile=`` reads them: double quotes,
    with backslash, quote, dollar and backtick escaped.

    Example: ``env_file({"A": 'x"y'})`` -> ``b'A="x\\\\"y"\\n'``
    """
    return "".join(f'{name}="{_escaped(value)}"\n' for name, value in values.items()).encode()


def _escaped(value: str) -> str:
    return NEEDS_ESCAPE.sub(r"\\\1", value)
