"""backend_proxy: the user's own HTTP server (uvicorn, gunicorn, a Go or Node binary) behind nginx.

The server runs from ``proxy_command`` (a list of arguments, never a shell string) as sandboxed
instances of the template unit ``<proxy_unit>@.service``, each listening on
``/run/<proxy_unit>/<instance>/app.sock``. An instance's own drop-in (``release.conf``, copied
from the staged settings this role writes) says which release it runs and how, so a running
instance keeps the settings it started with. nginx connects to ``<app_current>/.proxy.sock``, a
symlink in each release to its instance's socket: connect() follows symlinks, so switching
``current`` moves new requests to the new instance with no nginx reload (keep-alive clients stay).

A release switch (``release``): start the new release's instance beside the old one and wait
until it answers ``proxy_ready_path`` (else stop it: nothing switched), switch, enable it, then
stop the old one (SIGTERM: in-flight requests finish). New settings (a provision) reach the
current release the same way: a second instance, ready before the release's link is switched.
The shell side is ``templates/release/instances.sh`` (``mtls_deploy/release/instances.py``).
"""

import re

from mtls_deploy.errors import BadInput
from mtls_deploy.facts import HostFacts
from mtls_deploy.release.instances import MARK, instances
from mtls_deploy.release.steps import ReleaseContext, ReleaseSteps
from mtls_deploy.release.venv import build_venv, retire_venvs
from mtls_deploy.resources import Directory, File, Handler, Packages, User
from mtls_deploy.templating import render

PACKAGES = ("curl", "python3-venv")  # curl: the readiness check; venv: requirements.txt
UNIT_DIR = "/etc/systemd/system"
LOCATIONS = "nginx/locations/proxy.conf.j2"
SOCKET_LINK = ".proxy.sock"  # in each release: -> /run/<proxy_unit>/<instance>/app.sock
RESTART = ("restart proxy instances",)
ENVIRONMENT_CHANGED = ("app environment changed",)  # role app's notice: app.env changed
# {socket}, {release}, {venv}; a word in braces that is none of them is a typo, refused.
PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
# systemd's quoting inside "...": backslash and quote escaped (C escapes), % is a specifier,
# $ a variable in ExecStart=.
EXEC_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "%": "%%", "$": "$$"})
ENV_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "%": "%%"})


def instance_paths(v: dict) -> dict[str, str]:
    """What the placeholders stand for in the staged settings (``%i``: the instance's name;
    ``MARK``: the release's path)."""
    return {
        "socket": f"/run/{v['proxy_unit']}/%i/app.sock",
        "release": MARK,
        "venv": f"{MARK}/.venv",
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


def staged_path(v: dict) -> str:
    """``/etc/mtls-deploy/<api_name>/<proxy_unit>.conf``, beside the app's env file."""
    return f"{v['app_env_file'].rsplit('/', 1)[0]}/{v['proxy_unit']}.conf"


def unit_path(v: dict) -> str:
    """``/etc/systemd/system/<proxy_unit>@.service``."""
    return f"{UNIT_DIR}/{v['proxy_unit']}@.service"


def template_context(v: dict) -> dict:
    """The ``proxy_*`` and ``app_*`` variables, and what the templates compute from them."""
    return {
        **{k: value for k, value in v.items() if k.startswith(("proxy_", "app_"))},
        "proxy_socket": socket_link(v),
        "staged": staged_path(v),
        "relaxations": list(dict.fromkeys(v["proxy_hardening"])),
    }


def render_unit(v: dict) -> bytes:
    """The template unit ``<proxy_unit>@.service``: the sandbox every instance shares."""
    return render("backend_proxy/proxy@.service.j2", **template_context(v))


def render_staged(v: dict) -> bytes:
    """The settings each new instance copies: its release, command and environment."""
    return render(
        "backend_proxy/instance.conf.j2",
        **template_context(v),
        mark=MARK,
        exec_start=exec_start(v),
        environment=environment_lines(v),
    )


def resources(v: dict, facts: HostFacts) -> list:
    """curl and python3-venv, the user, the virtualenvs' and shared dirs, the template unit and
    the staged settings. Instances are started and stopped by releases and by the handler."""
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
        # The instances' socket directories: ours whole (removed with the role).
        Directory(f"/run/{v['proxy_unit']}", tree=True),
        *shared,
        File(unit_path(v), render_unit(v), notify=("daemon-reload", *RESTART)),
        File(staged_path(v), render_staged(v), notify=RESTART),
    ]


def handlers(v: dict, facts: HostFacts) -> list[Handler]:
    """After the unit, the staged settings or the app's environment changed: the current
    release again, blue/green (a new instance ready before the switch, the old one retired).
    A new instance that does not answer fails the run; the old one keeps serving."""
    unit, root = v["proxy_unit"], v["app_root"]
    restart = instances("restart", SOCKET_LINK, unit, staged_path(v), root, *readiness(v))
    return [Handler(RESTART[0], restart, order=40, listen=ENVIRONMENT_CHANGED)]


def readiness(v: dict) -> tuple[str, str]:
    """(path, timeout) of the readiness check."""
    return v["proxy_ready_path"], str(v["proxy_start_timeout"])


# --- a release switch ---------------------------------------------------------------------------


def build_steps(ctx: ReleaseContext) -> tuple:
    """The release's virtualenv when it has a requirements.txt (a server that is not Python,
    or Python's standard library alone, needs none)."""
    return (build_venv(ctx),) if "requirements.txt" in ctx.files else ()


def release(v: dict, facts: HostFacts, ctx: ReleaseContext) -> ReleaseSteps:
    """The steps of a switch to ``ctx.release``: build its virtualenv, start its instance
    beside the running one and wait for it, enable it once ``current`` points at the release
    (nginx follows the symlink), stop the previous release's instance, remove the virtualenvs
    no release links any more."""
    unit = v["proxy_unit"]
    old = (instances("retire", SOCKET_LINK, unit, ctx.previous),) if ctx.previous else ()
    retire = (*old, retire_venvs(ctx))
    return ReleaseSteps(
        user=v["proxy_user"],
        build=build_steps(ctx),
        start=(instances("start", SOCKET_LINK, unit, staged_path(v), ctx.release, *readiness(v)),),
        activate=(instances("activate", SOCKET_LINK, unit, ctx.release),),
        retire=retire,
    )
