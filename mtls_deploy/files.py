"""Files on the control machine, written so that a crash leaves the old version or the new.

Every write goes to a temporary file in the target's directory and is renamed over the target;
private files are created 0600 from the first byte, directories 0700.
"""

import errno
import functools
import os
import secrets
import shutil
from pathlib import Path

from .errors import UserError

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
PUBLIC_FILE_MODE = 0o644


def atomic_write(
    path,
    data,
    mode: int = PUBLIC_FILE_MODE,
    *,
    durable: bool = True,
    owner: tuple[int, int] | None = None,
) -> None:
    """Replace ``path`` with ``data`` (bytes or str) atomically, with permissions ``mode``
    (and ``owner`` as (uid, gid), set before the rename).

    ``durable=False`` skips the fsyncs; call ``sync_filesystem`` once after a batch instead.

    Example::

        atomic_write("pki/clients/bob/bob.key", key_pem, 0o600)
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        write_new_file(temporary, data, mode, durable=durable)
        if owner:
            os.chown(temporary, *owner)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        fsync_directory(path.parent)


def write_new_file(path, data, mode: int, *, durable: bool = False) -> None:
    """Write ``data`` to ``path`` (created or truncated, never through a symlink) with ``mode``."""
    if isinstance(data, str):
        data = data.encode()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, PRIVATE_FILE_MODE)  # 0600 from the first byte, widened below if asked
    try:
        os.fchmod(fd, mode)
        _write_all(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def make_private_dir(path) -> Path:
    """Create ``path`` and its missing parents with mode 0700; an existing ``path`` is made 0700."""
    path = Path(path)
    try:
        os.mkdir(path, PRIVATE_DIR_MODE)
    except FileNotFoundError:
        path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        return make_private_dir(path)
    except FileExistsError:
        if not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(path)) from None
        if os.stat(path).st_mode & 0o777 != PRIVATE_DIR_MODE:
            os.chmod(path, PRIVATE_DIR_MODE)
    return path


def writable_private_dir(path, fix: str) -> Path:
    """``make_private_dir(path)``, then proof that we can create files in it (a probe file made
    and removed), so a refusal comes before any work whose result would go there.

    Raises ``UserError``: "cannot write in PATH/: REASON; FIX". Example:
    ``writable_private_dir("dist", "set MTLS_DEPLOY_DIST_DIR to a directory of yours")``.
    """
    path = Path(path)
    probe = path / f".probe.{secrets.token_hex(6)}.tmp"
    try:
        make_private_dir(path)
        write_new_file(probe, b"", PRIVATE_FILE_MODE)
        probe.unlink()
    except OSError as error:
        raise UserError(f"cannot write in {path}/: {error.strerror or error}; {fix}") from None
    return path


def fsync_directory(path) -> None:
    """Make the renames inside directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_filesystem(path) -> None:
    """Flush every pending write of the filesystem holding ``path`` (one call per batch).

    Uses Linux ``syncfs(2)``; elsewhere falls back to ``sync(2)``.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        syncfs = _load_syncfs()
        if syncfs is None or syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


@functools.cache
def _load_syncfs():
    """libc's ``syncfs``, found on first use: ``find_library`` runs ldconfig, which every
    command would otherwise pay for at import, writing or not."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


def link_or_copy(source, target) -> None:
    """Hard-link ``source`` as ``target`` (same inode, same mode); copy it across filesystems.

    Safe for files that are only ever replaced by rename, never rewritten in place.
    """
    try:
        os.link(source, target)
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        write_new_file(target, Path(source).read_bytes(), os.stat(source).st_mode & 0o777)


def replace_directory(path, files: dict, *, durable: bool = True) -> Path:
    """Replace directory ``path`` (0700) with one holding exactly ``files``.

    ``files`` maps a file name to ``(data, mode)``, or to an existing ``Path`` to hard-link.
    The new directory is built beside the old one and renamed into place, so readers see the
    complete old set or the complete new set; a failure removes the half-built copy.
    """
    path = Path(path)
    staging = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    staging.mkdir(mode=PRIVATE_DIR_MODE)
    try:
        for name, content in files.items():
            if isinstance(content, Path):
                link_or_copy(content, staging / name)
            else:
                write_new_file(staging / name, *content, durable=durable)
        _swap_in(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if durable:
        fsync_directory(path.parent)
    return path


def _swap_in(staging: Path, path: Path) -> None:
    retired = []
    for _attempt in range(3):
        if path.exists():
            retired.append(path.with_name(f".{path.name}.{secrets.token_hex(6)}.old"))
            os.rename(path, retired[-1])
        try:
            os.rename(staging, path)
            break
        except OSError as error:  # a concurrent writer put its copy in place first: retire it
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
    else:
        raise OSError(errno.EEXIST, "kept being recreated by another process", str(path))
    for old in retired:
        shutil.rmtree(old, ignore_errors=True)


def parse_yaml(text: str):
    """A YAML document as Python data, with libyaml's parser when PyYAML has it (ten times faster:
    every run reads the inventory and each role's defaults and schema). A document it refuses is
    parsed again by the pure-Python parser, whose errors say more (the character, the alias), so
    error messages do not depend on how PyYAML was built.

    Example: ``parse_yaml("a: 1")`` -> ``{"a": 1}``
    """
    import yaml

    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return yaml.load(text, Loader=fast)  # noqa: S506 (CSafeLoader is the safe loader)
        except yaml.YAMLError:
            pass  # the pure-Python parser below says what is wrong, and where
    return yaml.safe_load(text)
