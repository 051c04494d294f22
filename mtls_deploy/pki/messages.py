"""The PKI's one-line errors about its directory: unreadable files, a full disk, a bad owner."""

import errno
from pathlib import Path

from ..errors import UserError


def display(path: Path) -> str:
    """``path`` relative to the working directory when it is below it, for messages."""
    try:
        return str(path.relative_to(Path.cwd())) or "."
    except ValueError:
        return str(path)


def unreadable(path: Path, error: OSError, verb: str = "read") -> UserError:
    """``cannot read pki/index.sqlite3: Permission denied; ...`` with the usual fix."""
    return UserError(f"cannot {verb} {display(path)}: {error.strerror}; {own_it(path.parent)}")


def own_it(folder: Path) -> str:
    """How to make the PKI directory ``folder`` the user's own again."""
    return (
        "the PKI directory must be yours: fix its owner or mode "
        f"(for example `sudo chown -R $USER {display(folder)}`)"
    )


def read_head(path: Path, size: int) -> bytes | None:
    """The first ``size`` bytes of ``path``, ``None`` if it does not exist; ``UserError`` if it
    cannot be read (a PKI directory of another user, mode 0700)."""
    try:
        with open(path, "rb") as file:
            return file.read(size)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError as error:
        raise unreadable(path, error) from None


def storage_error(error: Exception, root: Path, committed: bool) -> UserError:
    """One line for a write that failed in ``root``: what happened, what the index holds, the fix."""
    outcome = (
        "recorded in the index; the next run finishes the files"
        if committed
        else "nothing was recorded in the index"
    )
    if getattr(error, "errno", None) == errno.ENOSPC or "disk is full" in str(error):
        return UserError(
            f"disk full writing {_where(error, root)}: {outcome}; free some space and re-run"
        )
    if getattr(error, "errno", None) in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = f"{error.strerror}; {outcome}"
        return UserError(f"cannot write in {display(root)}/: {reason}; {own_it(root)}")
    return UserError(f"could not update the PKI in {display(root)}/: {error}; {outcome}")


def _where(error: Exception, root: Path) -> str:
    filename = getattr(error, "filename", None)
    return display(Path(filename)) if filename else f"{display(root)}/"
