"""Where the CA passphrase comes from: ``$MTLS_DEPLOY_CA_PASSPHRASE``, else a terminal prompt.

The sources are tried in ``SOURCES`` order; a passphrase file would be one more source there.
"""

import getpass
import os
import sys

from ..errors import BadInput, UserError

PASSPHRASE_ENV = "MTLS_DEPLOY_CA_PASSPHRASE"


def ca_passphrase(confirm: bool = False) -> bytes:
    """The CA passphrase: ``$MTLS_DEPLOY_CA_PASSPHRASE``, else a terminal prompt, else an error.

    ``confirm`` asks twice on a terminal (for a new PKI). Example: ``ca_passphrase()``.
    """
    value = next((found for source in SOURCES if (found := source(confirm)) is not None), None)
    if value is None:
        raise UserError(
            f"the CA key is encrypted: set {PASSPHRASE_ENV} or run on a terminal to be asked"
        )
    if not value:
        raise BadInput(f"empty CA passphrase: set {PASSPHRASE_ENV} to a non-empty passphrase")
    return value.encode()


def from_environment(confirm: bool = False) -> str | None:
    """``$MTLS_DEPLOY_CA_PASSPHRASE``, or ``None`` when unset (an empty value is refused later)."""
    return os.environ.get(PASSPHRASE_ENV)


def from_terminal(confirm: bool = False) -> str | None:
    """The passphrase typed at a prompt (twice with ``confirm``), ``None`` without a terminal."""
    if not _stdin_is_tty():
        return None
    value = _prompt("CA passphrase: ")
    if confirm and _prompt("CA passphrase again: ") != value:
        raise BadInput("the two passphrases differ: run the command again")
    return value


SOURCES = (from_environment, from_terminal)


def _prompt(text: str) -> str:
    try:
        return getpass.getpass(text)
    except EOFError:  # Ctrl-D at the prompt
        raise UserError(
            f"no CA passphrase given (end of input): run the command again and type it, "
            f"or set {PASSPHRASE_ENV}"
        ) from None


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):
        return False
