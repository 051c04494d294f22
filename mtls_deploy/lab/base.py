"""The cached Debian base root filesystem, built once with debootstrap, and running the
commands that build and copy roots."""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError
from .spec import Progress, cache_dir

SUITE = "bookworm"
BASE_PACKAGES = (  # curl, openssl, ca-certificates: as on a Debian cloud image (smoke test, --csr)
    "systemd,systemd-sysv,dbus,openssh-server,sudo,python3,iproute2,curl,openssl,ca-certificates"
)


def base_name() -> str:
    """``base-bookworm-1a2b3c4d``: a change to the package list builds a new base, never
    reusing a stale one."""
    digest = hashlib.sha256(" ".join(debootstrap_command(Path("/"))).encode()).hexdigest()
    return f"base-{SUITE}-{digest[:8]}"


def ensure_base(progress: Progress) -> Path:
    """The cached Debian base root filesystem, built once with debootstrap (about a minute)."""
    base = cache_dir() / base_name()
    if base.is_dir():
        return base
    with _locked(cache_dir() / "base.lock"):
        if not base.is_dir():  # another process may have built it while we waited
            progress(f"building the Debian 12 base in {base} (about a minute, once)")
            build_base(base)
    return base


def build_base(base: Path) -> None:
    """debootstrap into a temporary directory and rename it: an interrupted build leaves no base."""
    for leftover in base.parent.glob(f"{base.name}.partial-*"):
        shutil.rmtree(leftover)
    partial = Path(tempfile.mkdtemp(prefix=f"{base.name}.partial-", dir=base.parent))
    log = base.parent / f"{base.name}.log"
    with open(log, "wb") as out:
        result = subprocess.run(debootstrap_command(partial), stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise UserError(f"debootstrap failed, see {log}: check that deb.debian.org is reachable")
    for deb in (partial / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    partial.chmod(0o755)  # mkdtemp made it 0700: users in the container could not reach /
    partial.rename(base)


def debootstrap_command(target: Path) -> list[str]:
    """The debootstrap command that builds a minimal Debian 12 with systemd and OpenSSH."""
    include = f"--include={BASE_PACKAGES}"
    return ["debootstrap", "--variant=minbase", include, SUITE, str(target)]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def run_command(argv: list[str]) -> None:
    """Run a command; a failure becomes a one-line UserError with its last line of output."""
    try:
        subprocess.run(argv, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as error:
        output = (error.stderr or error.stdout or "").strip().splitlines()
        reason = output[-1] if output else f"exit status {error.returncode}"
        raise UserError(f"`{' '.join(argv)}` failed: {reason}") from None
