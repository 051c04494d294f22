"""Where the PKI's secrets come from: an environment variable, a root-only file, a terminal prompt.

The CA passphrase: ``$MTLS_DEPLOY_CA_PASSPHRASE``, else the file named by
``$MTLS_DEPLOY_CA_PASSPHRASE_FILE`` (for unattended runs: mode 0600 or 0400, owned by the user
running; never on the command line), else a prompt; tried in ``SOURCES`` order. The same
``secret`` serves the backup's passphrase and a new CA passphrase (``pki.passphrase``).
"""

import getpass
import os
import stat
import sys
from dataclasses import dataclass

from ..errors import BadInput, UserError

PASSPHRASE_ENV = "MTLS_DEPLOY_CA_PASSPHRASE"
PASSPHRASE_FILE_ENV = "MTLS_DEPLOY_CA_PASSPHRASE_FILE"
BACKUP_PASSPHRASE_ENV = "MTLS_DEPLOY_BACKUP_PASSPHRASE"
NEW_PASSPHRASE_ENV = "MTLS_DEPLOY_NEW_CA_PASSPHRASE"
MAX_FILE_SIZE = 4096


@dataclass(frozen=True)
class Secret:
    """One secret: its name in prompts and messages, its environment variable, and optionally
    the variable naming a file that holds it."""

    label: str
    env: str
    file_env: str | None = None
    needed_for: str = ""

    def sources_hint(self) -> str:
        """``set X (or X_FILE, naming a 0600 file)`` for messages."""
        also = f" (or {self.file_env}, naming a 0600 file)" if self.file_env else ""
        return f"set {self.env}{also}"


CA = Secret("CA passphrase", PASSPHRASE_ENV, PASSPHRASE_FILE_ENV, "the CA key is encrypted")
BACKUP = Secret("backup passphrase", BACKUP_PASSPHRASE_ENV)
NEW_CA = Secret("new CA passphrase", NEW_PASSPHRASE_ENV)


def ca_passphrase(confirm: bool = False) -> bytes:
    """The CA passphrase: ``$MTLS_DEPLOY_CA_PASSPHRASE``, else ``$MTLS_DEPLOY_CA_PASSPHRASE_FILE``,
    else a terminal prompt, else an error. ``confirm`` asks twice on a terminal (a new PKI).

    Example: ``ca_passphrase()``.
    """
    return secret(CA, confirm)


def secret(which: Secret, confirm: bool = False) -> bytes:
    """``which`` from the first of ``SOURCES`` that has it; one line when none has, or when it
    is empty. Example: ``secret(BACKUP, confirm=True)``."""
    value = next(
        (found for source in SOURCES if (found := source(which, confirm)) is not None), None
    )
    if value is None:
        need = which.needed_for or f"the {which.label} is needed"
        raise UserError(f"{need}: {which.sources_hint()} or run on a terminal to be asked")
    if not value:
        raise BadInput(f"empty {which.label}: {which.sources_hint()} to a non-empty passphrase")
    return value.encode()


def from_environment(which: Secret = CA, confirm: bool = False) -> str | None:
    """``$<which.env>``, or ``None`` when unset (an empty value is refused later)."""
    return os.environ.get(which.env)


def from_file(which: Secret = CA, confirm: bool = False) -> str | None:
    """The first line of the file named by ``$<which.file_env>``, ``None`` when unset.

    The file must be a regular file of the user running, readable by its owner only (0600 or
    0400): else one line saying what to fix. It is never written and never printed."""
    name = os.environ.get(which.file_env) if which.file_env else None
    if not name:
        return None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        raise UserError(f"cannot read {which.file_env} {name}: {error.strerror}") from None
    try:
        _check_private(which, name, os.fstat(fd))
        data = os.read(fd, MAX_FILE_SIZE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_SIZE:
        raise BadInput(f"{which.file_env} {name} is not a passphrase file: over 4 KiB")
    return data.decode("utf-8", "replace").splitlines()[0] if data.strip() else ""


def _check_private(which: Secret, name: str, info: os.stat_result) -> None:
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISREG(info.st_mode):
        raise BadInput(f"{which.file_env} {name} is not a regular file: name the passphrase file")
    if info.st_uid != os.geteuid():
        raise BadInput(
            f"{which.file_env} {name} belongs to uid {info.st_uid}, not to you (uid "
            f"{os.geteuid()}): `chown` it to the user that runs mtls-deploy"
        )
    if mode & 0o177:
        raise BadInput(
            f"{which.file_env} {name} has mode {mode:04o}: others could read it; "
            f"run `chmod 600 {name}` (0600 or 0400 only)"
        )


def from_terminal(which: Secret = CA, confirm: bool = False) -> str | None:
    """The passphrase typed at a prompt (twice with ``confirm``), ``None`` without a terminal."""
    if not _stdin_is_tty():
        return None
    label = which.label[0].upper() + which.label[1:]
    value = _prompt(f"{label}: ", which)
    if confirm and _prompt(f"{label} again: ", which) != value:
        raise BadInput("the two passphrases differ: run the command again")
    return value


SOURCES = (from_environment, from_file, from_terminal)


def _prompt(text: str, which: Secret = CA) -> str:
    try:
        return getpass.getpass(text)
    except EOFError:  # Ctrl-D at the prompt
        raise UserError(
            f"no {which.label} given (end of input): run the command again and type it, "
            f"or set {which.env}"
        ) from None


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):
        return False
