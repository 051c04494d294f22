"""A tree sent as one tar over SFTP, into the login user's home (0600), where the install
script (as root) extracts it and removes it."""

import shutil
import tarfile
import tempfile

from .tree import Tree

SPOOL = 32 << 20  # in memory up to 32 MB, then a temporary file


def tar_of(tree: Tree):
    """The tree as an uncompressed tar in a temporary file, rewound: every member root's,
    files 0644 (0755 when executable), directories 0755, symlinks as they are."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL)  # noqa: SIM115 (the caller closes it)
    with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in tree.entries:
            tar.add(tree.root / entry.path, arcname=entry.path, recursive=False, filter=_owned)
    spool.seek(0)
    return spool


def _owned(member: tarfile.TarInfo) -> tarfile.TarInfo:
    member.uid = member.gid = 0
    member.uname = member.gname = "root"
    if member.isdir() or (member.isfile() and member.mode & 0o111):
        member.mode = 0o755
    elif member.isfile():
        member.mode = 0o644
    return member


def upload(remote, tree: Tree, name: str) -> str:
    """Send ``tree`` as ``~/<name>`` of the login user (mode 0600); its absolute path."""
    sftp = remote.sftp()
    try:
        path = f"{sftp.normalize('.').rstrip('/')}/{name}"
        with tar_of(tree) as source, sftp.open(path, "wb") as target:
            target.chmod(0o600)
            target.set_pipelined(True)
            shutil.copyfileobj(source, target, 1 << 16)
        return path
    finally:
        sftp.close()
