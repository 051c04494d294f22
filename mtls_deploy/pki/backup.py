"""The whole PKI in one encrypted file, and back: ``inv pki.backup --to F``, ``inv pki.restore``.

The archive is a tar of every file of the PKI directory (CA certificates and their encrypted
keys, the index, the CRL, servers/, clients/, smoke/), sealed with AES-256-GCM under a key that
scrypt derives from the backup's own passphrase and a random salt. Layout::

    MAGIC (8) | version (1) | log2 scrypt N (1) | salt (16) | nonce (12) | ciphertext + tag

The header is authenticated data: a changed byte anywhere, or a wrong passphrase, fails the tag
and nothing is written. A restore builds the PKI in a directory beside the target, checks it
(``verify.check``), then swaps it in with one ``renameat2(RENAME_EXCHANGE)``: readers see the
old PKI or the new one, never a mix.
"""

from __future__ import annotations

import ctypes
import errno
import io
import os
import re
import secrets
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..errors import BadInput, UserError
from ..files import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, atomic_write, fsync_directory
from .journal import JOURNAL, LOCK
from .messages import display

MAGIC = b"MTLSPKI\x00"
VERSION = 1
SCRYPT_LOG2_N = 17  # 2**17 * 8 * 128 bytes = 128 MiB of memory: RFC 7914's interactive figure
SALT, NONCE = 16, 12
HEADER = len(MAGIC) + 2 + SALT + NONCE
# a member's name: relative, no "..", only characters the PKI's own names use
MEMBER = re.compile(r"(?!.*(^|/)\.\.?(/|$))[A-Za-z0-9._:+-]+(/[A-Za-z0-9._:+-]+){0,2}")
SKIPPED = {LOCK, JOURNAL}


@dataclass(frozen=True)
class BackupResult:
    """What ``backup`` wrote: where, how many files, how many bytes."""

    path: Path
    files: int
    size: int


# --- the sealed archive (pure: bytes in, bytes out) ----------------------------------------


def seal(plain: bytes, passphrase: bytes, log2_n: int | None = None) -> bytes:
    """``plain`` encrypted under ``passphrase``: header + AES-256-GCM ciphertext."""
    log2_n = log2_n or SCRYPT_LOG2_N
    salt, nonce = os.urandom(SALT), os.urandom(NONCE)
    header = MAGIC + bytes([VERSION, log2_n]) + salt + nonce
    key = _key(passphrase, salt, log2_n)
    return header + AESGCM(key).encrypt(nonce, plain, header)


def unseal(sealed: bytes, passphrase: bytes, source: str = "the backup") -> bytes:
    """The plain archive of ``sealed``; ``BadInput`` for a file that is no backup of ours, a
    wrong passphrase or a damaged file (GCM cannot tell those two apart)."""
    if len(sealed) < HEADER + 16 or not sealed.startswith(MAGIC):
        raise BadInput(
            f"{source} is not an mtls-deploy PKI backup (no {MAGIC[:7].decode()} header)"
        )
    version, log2_n = sealed[len(MAGIC)], sealed[len(MAGIC) + 1]
    if version != VERSION or not 10 <= log2_n <= 22:
        raise BadInput(f"{source} is a backup of format {version}: this version reads {VERSION}")
    salt = sealed[len(MAGIC) + 2 : len(MAGIC) + 2 + SALT]
    nonce = sealed[HEADER - NONCE : HEADER]
    try:
        key = _key(passphrase, salt, log2_n)
        return AESGCM(key).decrypt(nonce, sealed[HEADER:], sealed[:HEADER])
    except InvalidTag:
        raise BadInput(
            f"wrong backup passphrase, or {source} is damaged: nothing was restored "
            "(check MTLS_DEPLOY_BACKUP_PASSPHRASE)"
        ) from None


def _key(passphrase: bytes, salt: bytes, log2_n: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=2**log2_n, r=8, p=1).derive(passphrase)


# --- backup ------------------------------------------------------------------------------------


def backup(store, target: Path, passphrase: bytes) -> BackupResult:
    """Write every file of ``store``'s directory, sealed, to ``target`` (0600, atomically).

    Taken under the PKI's write lock (a killed run's journal finished first), so the archive is
    one consistent state. Example: ``backup(PkiStore.open(), Path("pki.backup"), b"secret")``.
    """
    target = Path(target)
    if target.resolve().is_relative_to(store.path.resolve()):
        raise BadInput(f"{target} is inside the PKI directory: write the backup elsewhere")
    with store._transaction():
        members = collect(store.path)
    sealed = seal(tar_bytes(members), passphrase)
    atomic_write(target, sealed, PRIVATE_FILE_MODE)
    return BackupResult(target, len(members), len(sealed))


def collect(root: Path) -> dict[str, tuple[bytes, int]]:
    """``{relative name: (bytes, mode)}`` of every regular file under ``root`` but the lock,
    the journal and temporary files."""
    found = {}
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        if path.is_symlink() or not path.is_file() or _skipped(name):
            continue
        found[name] = (path.read_bytes(), path.stat().st_mode & 0o777)
    return found


def _skipped(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base in SKIPPED or base.endswith((".tmp", ".staged")) or name.startswith(".")


def tar_bytes(members: dict[str, tuple[bytes, int]]) -> bytes:
    """An uncompressed tar of ``members`` (keys and certificates barely compress)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, (data, mode) in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def untar(plain: bytes, source: str) -> dict[str, tuple[bytes, int]]:
    """The members of a backup's tar, each a regular file with a safe relative name."""
    members = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(plain), mode="r:") as tar:
            for info in tar:
                if not info.isfile() or not MEMBER.fullmatch(info.name):
                    raise BadInput(
                        f"{source} holds {info.name!r}, which no PKI holds: not restored"
                    )
                members[info.name] = (tar.extractfile(info).read(), info.mode & 0o644)
    except tarfile.TarError as error:
        raise BadInput(f"{source} holds no readable archive ({error}): not restored") from None
    return members


# --- restore -----------------------------------------------------------------------------------


def restore(source: Path, root: Path, passphrase: bytes, *, force: bool = False, check=None):
    """Put the PKI of backup ``source`` at ``root``: refused over an existing PKI unless
    ``force``; built beside ``root``, checked by ``check(path)`` (a list of problems), then
    swapped in at once. Returns the number of files restored."""
    source, root = Path(source), Path(root)
    if _holds_files(root) and not force:
        raise UserError(
            f"{display(root)}/ already holds a PKI: restoring over it needs --force "
            "(take a backup of it first: `inv pki.backup --to FILE`)"
        )
    members = untar(unseal(_read(source), passphrase, str(source)), str(source))
    if "index.sqlite3" not in members:
        raise BadInput(f"{source} holds no index.sqlite3: not a PKI backup, not restored")
    staging = _build_beside(root, members)
    try:
        problems = check(staging) if check else []
        if problems:
            raise UserError(f"{source} does not hold a sound PKI ({problems[0]}): not restored")
        _swap_in(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return len(members)


def _read(source: Path) -> bytes:
    try:
        return source.read_bytes()
    except OSError as error:
        raise BadInput(f"cannot read {source}: {error.strerror}") from None


def _holds_files(root: Path) -> bool:
    try:
        return any(root.iterdir())
    except FileNotFoundError:
        return False


def _build_beside(root: Path, members: dict) -> Path:
    """A private directory next to ``root`` holding ``members`` (keys 0600, the rest 0644)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.with_name(f".{root.name}.restore-{secrets.token_hex(6)}")
    staging.mkdir(mode=PRIVATE_DIR_MODE)
    try:
        for name, (data, mode) in members.items():
            path = staging / name
            path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
            private = name.endswith(".key") or name.startswith("index") or not mode & 0o044
            atomic_write(path, data, PRIVATE_FILE_MODE if private else 0o644)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def _swap_in(staging: Path, root: Path) -> None:
    """``staging`` becomes ``root`` in one step; the old ``root`` ends up at ``staging`` (and is
    removed by the caller). Without an old ``root``, a plain rename."""
    if not root.exists():
        os.rename(staging, root)
    elif not _exchange(staging, root):
        retired = root.with_name(f".{root.name}.old-{secrets.token_hex(6)}")
        os.rename(root, retired)  # a kernel without RENAME_EXCHANGE: two renames
        os.rename(staging, root)
        os.rename(retired, staging)
    fsync_directory(root.parent)


RENAME_EXCHANGE = 2
AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with Linux's ``renameat2(RENAME_EXCHANGE)``; False when the
    C library or the file system does not offer it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.renameat2
    except (OSError, AttributeError):
        return False
    done = call(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EPERM):
        return False
    raise OSError(code, os.strerror(code), str(b))
