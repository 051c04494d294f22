"""The cached Debian base root filesystem, built once with debootstrap, and running the
commands that build and copy roots."""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError
from .spec import RELEASES, Progress, cache_dir

DEFAULT_RELEASE = "bookworm"
BASE_PACKAGES = (  # curl, openssl, ca-certificates: as on a Debian cloud image (smoke test, --csr)
    "systemd,systemd-sysv,dbus,openssh-server,sudo,python3,iproute2,curl,openssl,ca-certificates"
)


def base_name(release: str = DEFAULT_RELEASE) -> str:
    """``base-bookworm-1a2b3c4d``: one base per release, and a change to the package list
    builds a new base, never reusing a stale one."""
    command = debootstrap_command(Path("/"), release)
    digest = hashlib.sha256(" ".join(command).encode()).hexdigest()
    return f"base-{release}-{digest[:8]}"


def ensure_base(progress: Progress, release: str = DEFAULT_RELEASE) -> Path:
    """The cached Debian base root filesystem of ``release``, built once with debootstrap
    (a minute or a few)."""
    base = cache_dir() / base_name(release)
    if base.is_dir():
        return base
    with _locked(cache_dir() / "base.lock"):
        if not base.is_dir():  # another process may have built it while we waited
            started = time.monotonic()
            progress(f"building the Debian {RELEASES[release]} base in {base} (minutes, once)")
            build_base(base, release)
            progress(f"built {base.name} in {time.monotonic() - started:.0f} s")
    return base


def build_base(base: Path, release: str = DEFAULT_RELEASE) -> None:
    """debootstrap into a temporary directory and rename it: an interrupted build leaves no base."""
    for leftover in base.parent.glob(f"{base.name}.partial-*"):
        shutil.rmtree(leftover)
    partial = Path(tempfile.mkdtemp(prefix=f"{base.name}.partial-", dir=base.parent))
    log = base.parent / f"{base.name}.log"
    with open(log, "wb") as out:
        result = subprocess.run(
            debootstrap_command(partial, release), stdout=out, stderr=subprocess.STDOUT
        )
    if result.returncode != 0:
        raise UserError(failure_reason(log, release))
    for deb in (partial / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    partial.chmod(0o755)  # mkdtemp made it 0700: users in the container could not reach /
    partial.rename(base)


def failure_reason(log: Path, release: str) -> str:
    """One line for a failed debootstrap: an unknown signing key is the keyring's fault (this
    machine's debian-archive-keyring predates ``release``), anything else most likely the
    network's."""
    text = log.read_text(errors="replace")
    if "NO_PUBKEY" in text or "unknown key" in text:
        return (
            f"debootstrap cannot check {release}'s signature, see {log}: update the keyring"
            " (`apt-get install debian-archive-keyring`)"
        )
    return f"debootstrap failed, see {log}: check that deb.debian.org is reachable"


def debootstrap_command(target: Path, release: str = DEFAULT_RELEASE) -> list[str]:
    """The debootstrap command that builds a minimal Debian ``release`` with systemd and
    OpenSSH. Debian 12's debootstrap and keyring know trixie (scripts/trixie is a link to
    sid's script; debian-archive-keyring has the trixie keys)."""
    include = f"--include={BASE_PACKAGES}"
    return ["debootstrap", "--variant=minbase", include, release, str(target)]


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
