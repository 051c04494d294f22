"""backend_proxy: the user's own HTTP server (uvicorn, gunicorn, a Go or Node binary) behind nginx.

The server runs from ``proxy_command`` (a list of arguments, never a shell string) as one
sandboxed instance per release of the template unit ``<proxy_unit>@.service`` (instance = the
release id), listening on ``/run/<proxy_unit>/<release id>/app.sock``. nginx connects to
``<app_current>/.proxy.sock``, a symlink in each release to its own instance's socket: connect()
follows symlinks, so switching ``current`` moves new requests to the new instance with no nginx
reload (keep-alive clients stay connected). A release switch (``release``): start the new
instance beside the old one and wait until it answers ``proxy_ready_path`` (else stop it: nothing
switched), switch, enable it, then stop the old one (SIGTERM: in-flight requests finish).
"""

import re

from mtls_deploy.errors import BadInput
from mtls_deploy.facts import HostFacts
from mtls_deploy.release.steps import ReleaseContext, ReleaseSteps
from mtls_deploy.resources import Directory, File, Handler, Packages, User
from mtls_deploy.templating import render

PACKAGES = ("curl", "python3-venv")  # curl: the readiness check; venv: requirements.txt
UNIT_DIR = "/etc/systemd/system"
LOCATIONS = "nginx/locations/proxy.conf.j2"
SOCKET_LINK = ".proxy.sock"  # in each release: -> /run/<proxy_unit>/<release id>/app.sock
RESTART = ("restart proxy instances",)
ENVIRONMENT_CHANGED = ("app environment changed",)  # role app's notice: app.env changed
# {socket}, {release}, {venv}; a word in braces that is none of them is a typo, refused.
PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
# systemd's quoting inside "...": backslash and quote escaped (C escapes), % is a specifier,
# $ a variable in ExecStart=.
EXEC_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "%": "%%", "$": "$$"})
ENV_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "%": "%%"})


def instance_paths(v: dict, instance: str = "%i") -> dict[str, str]:
    """What the placeholders stand for, for one instance (``%i``: the unit's own specifier)."""
    release = f"{v['app_root']}/releases/{instance}"
    return {
        "socket": f"/run/{v['proxy_unit']}/{instance}/app.sock",
        "release": release,
        "venv": f"{release}/.venv",
    }


def exec_word(argument: str, places: dict[str, str]) -> str:
    """One argument of ExecStart=, double-quoted: the user's text escaped for systemd, each
    placeholder replaced by its path (which may use the ``%i`` specifier).

    Example: ``exec_word("--name=50% $HOME", {})`` -> ``'"--name=50%% $$HOME"'``
    """
    pieces, last = [], 0
    for match in PLACEHOLDER.finditer(argument):
        if match.group(1) not in places:
            known = ", ".join(f"{{{name}}}" for name in places)
            raise BadInput(
                f"proxy_command: unknown placeholder {match.group(0)} in {argument!r}; "
                f"the placeholders are {known}"
            )
        pieces += [argument[last : match.start()].translate(EXEC_ESCAPES), places[match.group(1)]]
        last = match.end()
    pieces.append(argument[last:].translate(EXEC_ESCAPES))
    return '"' + "".join(pieces) + '"'


def exec_start(v: dict) -> str:
    """ExecStart='s value: every argument of ``proxy_command`` quoted, placeholders replaced."""
    command = list(v["proxy_command"])
    if not command:
        raise BadInput(
            "proxy_command is empty: give your server's command as a list, e.g. "
            '["{venv}/bin/uvicorn", "--uds", "{socket}", "app:app"]'
        )
    if not command[0].startswith(("/", "{venv}", "{release}")):
        raise BadInput(
            f"proxy_command: the program {command[0]!r} must be an absolute path or start with "
            "{venv} or {release}"
        )
    places = instance_paths(v)
    return " ".join(exec_word(argument, places) for argument in command)


def environment_lines(v: dict) -> list[str]:
    """``"NAME=value"`` for each of ``proxy_environment``, quoted for Environment=."""
    return [
        f'"{name}={str(value).translate(ENV_ESCAPES)}"'
        for name, value in sorted(v["proxy_environment"].items())
    ]


def socket_link(v: dict) -> str:
    """Where nginx connects: the symlink in the current release (``app_current``, exported
    by role app, which this role depends on)."""
    return f"{v.get('app_current', '')}/{SOCKET_LINK}"


def exports(v: dict, facts: HostFacts) -> dict:
    """For the nginx site: the proxy locations template and the socket it connects to."""
    return {"nginx_locations": LOCATIONS, "proxy_socket": socket_link(v)}


def render_unit(v: dict) -> bytes:
    """The template unit ``<proxy_unit>@.service``."""
    context = {k: value for k, value in v.items() if k.startswith(("proxy_", "app_"))}
    return render(
        "backend_proxy/proxy@.service.j2",
        **context,
        proxy_socket=socket_link(v),
        exec_start=exec_start(v),
        environment=environment_lines(v),
        relaxations=list(dict.fromkeys(v["proxy_hardening"])),
    )


def unit_path(v: dict) -> str:
    """``/etc/systemd/system/<proxy_unit>@.service``."""
    return f"{UNIT_DIR}/{v['proxy_unit']}@.service"


def resources(v: dict, facts: HostFacts) -> list:
    """curl and python3-venv, the user, the virtualenvs' and shared dirs, the template unit.
    The instances are started and stopped by releases (``release``), not here."""
    if not v.get("app_enabled"):
        raise BadInput(
            "backend proxy runs your own server: set app_src (your application's directory) "
            "and proxy_command"
        )
    user = v["proxy_user"]
    shared = [
        Directory(f"{v['app_shared_root']}/{name}", mode=0o750, owner=user, group=user)
        for name in v["app_shared"]
    ]
    return [
        Packages(PACKAGES),
        User(user),
        Directory(f"{v['app_root']}/venvs", mode=0o755, owner=user, group=user),
        *shared,
        File(unit_path(v), render_unit(v), notify=("daemon-reload", *RESTART)),
    ]


def handlers(v: dict, facts: HostFacts) -> list[Handler]:
    """After the unit or the app's environment changed, restart the running instances (a
    release switch needs none)."""
    restart = (("systemctl", "try-restart", f"{v['proxy_unit']}@*.service"),)
    return [Handler(RESTART[0], restart, order=40, listen=ENVIRONMENT_CHANGED)]


# --- a release switch ---------------------------------------------------------------------------

# As the app's user in the release being built: the virtualenv of this requirements.txt,
# built once (a marker says it is complete) and shared by every release that has the same file.
BUILD_VENV = r"""
set -e
venv=$1
if [ ! -e "$venv/.complete" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  hashes=
  if grep -q -e '--hash=' requirements.txt; then hashes=--require-hashes; fi
  "$venv/bin/pip" install --no-cache-dir --disable-pip-version-check --no-input --quiet \
    $hashes -r requirements.txt
  touch "$venv/.complete"
fi
ln -sfn "../../venvs/${venv##*/}" .venv
""".strip()

# As root, before the switch: the release's socket link, then its instance started and asked
# for the ready path over its socket until it answers 2xx, exits, or the time is up. Not ready:
# stopped again, with the server's last log line as the reason (the last line of stderr).
START_AND_WAIT = r"""
unit=$1 socket=$2 link=$3 path=$4 timeout=$5
ln -sfn "$socket" "$link.new" && mv -T "$link.new" "$link"
since=$(date '+%Y-%m-%d %H:%M:%S')
systemctl start "$unit" || true
end=$(( $(date +%s) + timeout ))
while [ "$(date +%s)" -lt "$end" ]; do
  if curl -fsS -o /dev/null --max-time 2 --unix-socket "$socket" "http://localhost$path" \
      2>/dev/null; then
    exit 0
  fi
  systemctl is-active --quiet "$unit" || break
  sleep 0.1
done
sleep 0.3
why=$(journalctl _SYSTEMD_UNIT="$unit" --since "$since" -n 1 -o cat --no-pager 2>/dev/null)
systemctl stop "$unit" || true
echo "$unit did not answer GET $path within ${timeout}s${why:+: $why}" >&2
exit 1
""".strip()

# As root, after activate: the old instance gets a moment for requests nginx connected to it
# just before the switch, then SIGTERM (systemd waits TimeoutStopSec for in-flight ones).
RETIRE = 'sleep 1; systemctl disable --now --quiet "$1"'


def instance(v: dict, release_id: str) -> str:
    """``api-proxy@20261130T081500Z-1a2b3c4d5e6f.service``."""
    return f"{v['proxy_unit']}@{release_id}.service"


def build_steps(ctx: ReleaseContext) -> tuple:
    """The release's virtualenv when it has a requirements.txt."""
    if "requirements.txt" not in ctx.files:
        return ()
    venv = f"{ctx.root}/venvs/{ctx.digests['requirements.txt'][:12]}"
    return ((("sh", "-c", BUILD_VENV, "sh", venv),),)


def start_steps(v: dict, ctx: ReleaseContext) -> tuple:
    """Start the release's instance beside the running one; ready or stopped again."""
    paths = instance_paths(v, ctx.release_id)
    unit, link = instance(v, ctx.release_id), f"{ctx.release}/{SOCKET_LINK}"
    timeout = str(v["proxy_start_timeout"])
    argv = ("sh", "-c", START_AND_WAIT, "sh", unit, paths["socket"], link, v["proxy_ready_path"])
    return (((*argv, timeout),),)


def retire_steps(v: dict, ctx: ReleaseContext) -> tuple:
    """Stop and disable the instance of the release ``current`` pointed at before."""
    if not ctx.previous:
        return ()
    previous = ctx.previous.rstrip("/").rsplit("/", 1)[-1]
    if previous == ctx.release_id:
        return ()
    return ((("sh", "-c", RETIRE, "sh", instance(v, previous)),),)


def release(v: dict, facts: HostFacts, ctx: ReleaseContext) -> ReleaseSteps:
    """The steps of a switch to ``ctx.release``: build its virtualenv, start its instance and
    wait for it, enable it once ``current`` points at it (nginx follows the symlink), stop the
    previous one."""
    unit = instance(v, ctx.release_id)
    return ReleaseSteps(
        user=v["proxy_user"],
        build=build_steps(ctx),
        start=start_steps(v, ctx),
        activate=((("systemctl", "enable", "--now", "--quiet", unit),),),
        retire=retire_steps(v, ctx),
    )
