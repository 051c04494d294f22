"""The virtualenv of a release's requirements.txt, for the backends that run Python
(backend_python, backend_proxy): one per distinct file, ``/srv/<api_name>/venvs/<sha12>``,
built once as the app's user and linked at ``<release>/.venv``, shared by every release that
has the same file; removed once no release links it."""

import hashlib

from ..shell import ShellCommand
from .steps import ReleaseContext

# $1: the virtualenv; $2: .venv's relative target. Built by Debian's python3 (uWSGI's plugin
# embeds it), marked complete last: a build that failed half-way is never reused. Hashes are
# required when a requirement line (not a comment) has one. pip's last line is the reason of a
# refusal. One build or retire at a time holds venvs/ (flock on the directory: no lock file the
# app's user could point elsewhere): a second deploy of the same app waits for the first's
# build, then reuses it, and a retire never removes one being built (not linked yet).
BUILD_VENV = """venv=$1 link=$2
exec 9<"${venv%/*}" || exit 1
flock -w VENV_WAIT 9 || {
    echo "another deploy has been building in ${venv%/*} for VENV_WAIT s: run again once it is done" >&2
    exit 1
}
if [ -f "$venv/.complete" ]; then
    echo "virtualenv ${venv##*/}: reused, not rebuilt"
else
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv" || exit 1
    if [ -f requirements.txt ]; then
        set --
        grep -q -e '^[^#]*--hash=' requirements.txt && set -- --require-hashes
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_NO_CACHE_DIR=1 \\
            "$venv/bin/pip" install --quiet "$@" -r requirements.txt || { rm -rf "$venv"; exit 1; }
    fi
    touch "$venv/.complete"
    echo "virtualenv ${venv##*/}: built"
fi
ln -sfn "$link" .venv"""
# $1: /srv/<api_name>. As root after a switch, holding venvs/ as a build does: a virtualenv
# that no release links (kept, or being built: linked before its build lets go) is removed.
RETIRE_VENVS = """cd "$1" || exit 0
exec 9<venvs 2>/dev/null || exit 0
flock -w VENV_WAIT 9 || {
    echo "a build has held $1/venvs for VENV_WAIT s: unused virtualenvs stay until the next deploy" >&2
    exit 0
}
for venv in venvs/*; do
    [ -d "$venv" ] || continue
    used=
    for link in releases/*/.venv; do
        [ "$(readlink "$link")" = "../../$venv" ] && used=1 && break
    done
    [ -n "$used" ] || rm -rf -- "$venv"
done"""
VENV_WAIT = 900  # s that a build or a retire waits for another build: a large app's pip install
BUILD_VENV, RETIRE_VENVS = (
    s.replace("VENV_WAIT", str(VENV_WAIT)) for s in (BUILD_VENV, RETIRE_VENVS)
)
NO_REQUIREMENTS = hashlib.sha256(b"").hexdigest()  # an app without requirements.txt


def venv_name(ctx: ReleaseContext) -> str:
    """``<sha12 of requirements.txt>`` (of empty content when the tree has none)."""
    return ctx.digests.get("requirements.txt", NO_REQUIREMENTS)[:12]


def build_venv(ctx: ReleaseContext) -> ShellCommand:
    """The build step: the release's virtualenv made (or found) and linked at ``.venv``."""
    name = venv_name(ctx)
    return (
        ("sh", "-c", BUILD_VENV, "build-venv", f"{ctx.root}/venvs/{name}", f"../../venvs/{name}"),
    )


def retire_venvs(ctx: ReleaseContext) -> ShellCommand:
    """The retire step: the virtualenvs no release links any more removed."""
    return (("sh", "-c", RETIRE_VENVS, "retire-venvs", ctx.root),)
