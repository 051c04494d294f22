"""A bundle switched whole: consumers never pair a new certificate with an old key.

On the consumer, each delivered bundle is a version directory inside the bundle directory,
behind a ``current`` link that one ``rename(2)`` switches, and the files keep their usual
paths as links into it::

    ~/.mtls/api/                      0700, the login user's (a real directory, as ever)
        v-<serial>-<digest>/          0700: bob.key (0600), bob.crt, api-ca.crt, bob.p12, ...
        current -> v-<serial>-<digest>
        bob.key -> current/bob.key    (the paths in the README and curl commands keep working)

The new version is written and sha256-checked in full before ``current`` moves; the previous
version stays (two are kept, older ones pruned), so a reader that resolved ``current`` once
(``readlink -f ~/.mtls/api/current``) reads a matching key and certificate even while the next
version lands. ``bob.pem`` (the certificate, then the key, 0600) is one file for the clients
that read both from one path (``curl --cert bob.pem``): one open, never half of two versions.

Why links and not only a combined PEM: the separate files are what existing commands name; a
combined file alone would change every consumer's configuration.
"""

import hashlib

from cryptography import x509

from .operations import Step
from .resources import Command, Directory, File

VERSION_PREFIX = "v-"
CURRENT = "current"
KEPT = 2  # the current version and the one before it

# argv: folder, version, file names. Atomic: each link is made beside and renamed over
# (``mv -T``: rename(2)); a previous flat bundle's regular files become links the same way.
SWITCH = r"""set -e
d=$1; v=$2; shift 2
rm -f -- "$d/.current.new"; ln -s -- "$v" "$d/.current.new"; mv -fT -- "$d/.current.new" "$d/current"
for n in "$@"; do
  [ "$(readlink -- "$d/$n" 2>/dev/null)" = "current/$n" ] && continue
  rm -f -- "$d/.$n.new"; ln -s -- "current/$n" "$d/.$n.new"; mv -fT -- "$d/.$n.new" "$d/$n"
done
for p in "$d"/*; do
  [ -L "$p" ] && [ ! -e "$p" ] && case "$(readlink -- "$p")" in current/*) rm -f -- "$p";; esac
done
keep=$(ls -1dt -- "$d"/v-* | grep -vxF -- "$d/$v" | head -n 1)
for p in "$d"/v-*; do
  [ "$p" = "$d/$v" ] || [ "$p" = "$keep" ] || rm -rf -- "$p"
done
"""

# argv as SWITCH; read-only: succeeds when nothing is left to switch or prune.
SWITCHED = r"""d=$1; v=$2; shift 2
[ "$(readlink -- "$d/current")" = "$v" ] || exit 1
for n in "$@"; do [ "$(readlink -- "$d/$n")" = "current/$n" ] || exit 1; done
[ "$(ls -1d -- "$d"/v-* | wc -l)" -le 2 ]
"""


def version_name(files) -> str:
    """``v-<certificate serial>-<digest of every file>``: a new name for any change (a new
    certificate, or only a new ``api-ca.crt``). Example: ``v-3f2a...-9c1d04e2``."""
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.name):
        digest.update(f"{f.name}\0{len(f.content)}\0".encode() + f.content)
    return f"{VERSION_PREFIX}{_serial(files)}-{digest.hexdigest()[:8]}"


def _serial(files) -> str:
    for f in files:
        if f.name.endswith(".crt") and f.name != "api-ca.crt":
            try:
                return format(x509.load_pem_x509_certificate(f.content).serial_number, "x")
            except ValueError:
                break
    return "bundle"


def with_combined_pem(name: str, files) -> list:
    """``files`` and ``<name>.pem``: certificate then key, one private file (when both are there)."""
    from .deliver import PRIVATE_MODE, BundleFile

    by_name = {f.name: f for f in files}
    cert, key = by_name.get(f"{name}.crt"), by_name.get(f"{name}.key")
    if cert is None or key is None or f"{name}.pem" in by_name:
        return list(files)
    combined = cert.content.rstrip(b"\n") + b"\n" + key.content
    return [*files, BundleFile(f"{name}.pem", combined, PRIVATE_MODE)]


def versioned_resources(folder: str, files) -> list:
    """The bundle directory, the version directory and its files, then the switch (guarded:
    it runs only when ``current`` or a link is not yet right, or an old version is left). Pure."""
    from .deliver import DIR_MODE, PRIVATE_MODE, folder_resource

    version = version_name(files)
    inside = f"{folder}/{version}"
    names = [f.name for f in files]
    argv = (folder, version, *names)
    return [
        folder_resource(folder),
        Directory(inside, DIR_MODE),
        *(
            File(f"{inside}/{f.name}", f.content, f.mode, secret=f.mode == PRIVATE_MODE)
            for f in files
        ),
        Command(
            (("sh", "-c", SWITCH, "sh", *argv),), unless=(("sh", "-c", SWITCHED, "sh", *argv),)
        ),
    ]


def deliver_versioned(remote, folder: str, name: str, files) -> tuple[bool, str]:
    """Write ``files`` as a new version of ``folder`` and switch ``current`` to it; (changed,
    reason with the absolute path). One round trip when the version is already current."""
    from .deliver import _rewritten, _why, converge, shown_path

    files = with_combined_pem(name, files)
    resources = versioned_resources(folder, files)
    consumer, steps = converge(remote, folder, resources)
    where = shown_path(consumer.home, folder)
    version = resources[1].path.rsplit("/", 1)[-1]
    if not any(s.changed for s in steps):
        return (
            False,
            f"unchanged in {where}/: {CURRENT} -> {version}, sha256 of {len(files)} files match",
        )
    written = [s for s in steps if s.changed and _rewritten(s, consumer.facts)]
    text = f"{len(written)} files written in {version}/, sha256 checked; {CURRENT} -> {version}"
    return True, f"{where}/: {text}{_why(steps)}"


def step_for(remote, folder: str, name: str, files) -> Step:
    """``deliver_versioned`` as the recap's step for client ``name``."""
    from .errors import UserError

    try:
        changed, reason = deliver_versioned(remote, folder, name, files)
    except UserError as error:
        return Step("bundle", name, "failed", str(error))
    return Step("bundle", name, "changed" if changed else "ok", reason)


# argv: folder, client name. The versioned layout back to plain files, for ``--csr`` (its key is
# made on the consumer, in place): each link into current/ becomes a copy of its file (renamed
# over the link: the path never misses), bob.pem goes (it would pair the old key), then
# current and the versions.
FLATTEN = r"""set -e
umask 077
d=$1; name=$2
[ -d "$d" ] && [ ! -L "$d" ] || exit 0
for p in "$d"/*; do
  n=${p##*/}
  [ -L "$p" ] && [ "$n" != current ] || continue
  case "$(readlink -- "$p")" in current/*) ;; *) continue;; esac
  if [ "$n" = "$name.pem" ]; then rm -f -- "$p"; continue; fi
  cp -p -- "$p" "$d/.$n.flat"; mv -fT -- "$d/.$n.flat" "$p"
done
rm -f -- "$d/current"; rm -rf -- "$d"/v-*
"""


def flatten(remote, folder: str, name: str) -> None:
    """Turn a versioned bundle on the consumer back into plain files (for ``--csr``)."""
    from .errors import UserError
    from .shell import render

    done = remote.run_script(render((("sh", "-c", FLATTEN, "sh", folder, name),)) + "\n")
    if not done.ok:
        raise UserError(
            f"{folder}: cannot turn the versioned bundle into files: {done.stderr.strip()}"
        )
