"""backend_python: the API as a WSGI app on Debian's uWSGI (FastCGI mode), socket-activated.

systemd owns the socket (``<python_unit>.socket``, mode 0600, owned by nginx's user) and hands
it to uWSGI, which speaks FastCGI on it (``protocol = fastcgi``). The service runs as its own
user in a sandbox that ``systemd-analyze security`` rates at most 2.0.

With the ``app`` role's ``app_src`` (``app_enabled``), uWSGI serves the user's WSGI callable
(``python_wsgi``) from ``/srv/<api_name>/current`` with that release's virtualenv, and the
``release`` hook gives the pipeline its steps: a virtualenv per distinct requirements.txt
(built once, then reused), an import of the callable before the switch, a chain reload after.
"""

from mtls_deploy.facts import HostFacts
from mtls_deploy.release.steps import ReleaseContext, ReleaseSteps
from mtls_deploy.release.venv import build_venv, retire_venvs
from mtls_deploy.resources import Directory, File, Handler, Packages, Service, User
from mtls_deploy.templating import TEMPLATES_DIR, render

PACKAGES = ("uwsgi-core", "uwsgi-plugin-python3")
APP_PACKAGES = ("python3-venv",)  # python3 -m venv with pip, by the python3 uWSGI embeds
APP = "backend_python/app.py"  # copied as is
UNIT_DIR = "/etc/systemd/system"
RESTART = ("restart backend",)
RESTART_ALL = ("restart backend socket",)
# The app role's notification when app.env changed: systemd reads it at start only.
ENVIRONMENT_CHANGED = ("app environment changed",)
APP_VARIABLES = ("app_enabled", "app_current", "app_env_file", "app_shared_root")


def app_enabled(v: dict) -> bool:
    """True when the ``app`` role deploys the user's application (``app_src`` is set)."""
    return bool(v.get("app_enabled"))


def front_controller(v: dict) -> str:
    """The application file (nginx's ``SCRIPT_FILENAME``; uWSGI loads it by its own setting):
    with an app, the module of ``python_wsgi`` under ``current``."""
    if app_enabled(v):
        module = str(v["python_wsgi"]).partition(":")[0].replace(".", "/")
        return f"{v['app_current']}/{module}.py"
    return f"{v['python_app_dir']}/app.py"


def exports(v: dict, facts: HostFacts) -> dict:
    """For the nginx site: the socket systemd listens on (``fastcgi_pass``), the app file, and
    ``fastcgi_retry``: a uWSGI worker that a graceful reload (a chain reload, a restart) reaches
    between accept() and reading the request exits with the connection unanswered (uWSGI's
    ``gracefully_kill``), so nginx sends such a request once more; never a POST or PATCH."""
    return {
        "fastcgi_socket": v["python_socket"],
        "front_controller": front_controller(v),
        "fastcgi_retry": True,
    }


def template_context(v: dict) -> dict:
    """The ``python_*`` variables, and where the app lives (the ``app`` role's exports)."""
    context = {k: value for k, value in v.items() if k.startswith("python_")}
    context["app_enabled"] = app_enabled(v)
    if app_enabled(v):
        context |= {k: v[k] for k in APP_VARIABLES}
    return context


def render_units(v: dict) -> dict[str, bytes]:
    """{path: content} of uwsgi.ini and the socket and service units."""
    context = template_context(v)
    unit = f"{UNIT_DIR}/{context['python_unit']}"
    return {
        f"{context['python_config_dir']}/uwsgi.ini": render(
            "backend_python/uwsgi.ini.j2", **context
        ),
        f"{unit}.socket": render("backend_python/api.socket.j2", **context),
        f"{unit}.service": render("backend_python/api.service.j2", **context),
    }


def resources(v: dict, facts: HostFacts) -> list:
    """Packages, user, app, uwsgi.ini, socket and service units; socket and service running."""
    unit = v["python_unit"]
    files = render_units(v)
    ini, socket_unit, service_unit = files
    return [
        Packages((*PACKAGES, *APP_PACKAGES) if app_enabled(v) else PACKAGES),
        User(v["python_user"]),
        Directory(v["python_app_dir"], mode=0o755),
        File(f"{v['python_app_dir']}/app.py", (TEMPLATES_DIR / APP).read_bytes(), notify=RESTART),
        Directory(v["python_config_dir"], mode=0o755),
        File(ini, files[ini], notify=RESTART),
        File(socket_unit, files[socket_unit], notify=("daemon-reload", *RESTART_ALL)),
        File(service_unit, files[service_unit], notify=("daemon-reload", *RESTART)),
        *app_directories(v),
        Service(f"{unit}.socket"),
        Service(f"{unit}.service"),
    ]


def app_directories(v: dict) -> list[Directory]:
    """With an app: ``venvs/`` (pip builds there as the app's user) and the shared directories
    (the app writes there); without, none."""
    if not app_enabled(v):
        return []
    user = v["python_user"]
    return [
        Directory(venvs_dir(v), mode=0o755, owner=user, group=user),
        *(
            Directory(f"{v['app_shared_root']}/{d.strip('/')}", mode=0o750, owner=user, group=user)
            for d in v.get("app_shared") or ()
        ),
    ]


def venvs_dir(v: dict) -> str:
    """``/srv/<api_name>/venvs``: one virtualenv per distinct requirements.txt."""
    return f"{v['app_root']}/venvs"


def handlers(v: dict, facts: HostFacts) -> list[Handler]:
    """Restart the service (the socket stays open: no request is refused meanwhile); after a
    change to the socket unit, restart the socket too. The unit name travels as an argument."""
    unit = v["python_unit"]
    return [
        Handler(
            "restart backend socket",
            (("systemctl", "restart", f"{unit}.socket", f"{unit}.service"),),
            order=39,
        ),
        Handler(
            "restart backend",
            (("systemctl", "restart", f"{unit}.service"),),
            order=40,
            listen=ENVIRONMENT_CHANGED,
        ),
    ]


# --- releases of the user's application (the app role's pipeline calls ``release``) ------------

# python_wsgi's module imported and its callable found, as uWSGI will (the release on sys.path,
# its virtualenv's python); a failure's last line (ModuleNotFoundError: ...) is the reason.
CHECK_WSGI = """import importlib, sys
module, name = sys.argv[1:3]
app = getattr(importlib.import_module(module), name)
if not callable(app):
    sys.exit(f"{module}:{name} is not callable")"""
# $1: the unit; $2: the master FIFO. Not running: start it (the first release). Running: a
# chain reload, waiting (60 s at most) until uWSGI says the last new worker serves and no
# worker of before is left (their pids: the master's children, from /proc; procps may be
# missing).
ACTIVATE = """unit=$1 fifo=$2
if ! systemctl is-active --quiet "$unit.service"; then
    systemctl reset-failed "$unit.socket" "$unit.service" 2>/dev/null
    systemctl start "$unit.socket" "$unit.service" || exit 1
    systemctl is-active --quiet "$unit.service" && exit 0
    echo "$unit.service did not start: see journalctl -u $unit.service" >&2
    exit 1
fi
if [ ! -p "$fifo" ]; then
    systemctl restart "$unit.service"
    exit
fi
log_since() { journalctl --quiet -o cat -u "$unit.service" ${1:+--after-cursor="$1"}; }
main=$(systemctl show -p MainPID --value "$unit.service")
old=$(cat /proc/"$main"/task/*/children 2>/dev/null)
# uWSGI answers "already running" (and does nothing) while it has not yet noted the end of a
# chain reload before: then ask again, until it says "starting".
tries=0
while :; do
    cursor=$(journalctl --quiet -n 1 --show-cursor -u "$unit.service" | sed -n 's/^-- cursor: //p')
    printf c > "$fifo"
    i=0
    until log_since "$cursor" | grep -q -e 'chain reload starting' -e 'already running'; do
        [ "$i" -lt 50 ] || break
        sleep 0.1
        i=$((i + 1))
    done
    log_since "$cursor" | grep -q 'chain reload starting' && break
    tries=$((tries + 1))
    if [ "$tries" -ge 20 ]; then
        echo "uWSGI did not start a chain reload of $unit.service: see journalctl -u $unit.service" >&2
        exit 1
    fi
    sleep 0.5
done
i=0
while [ "$i" -lt 300 ]; do
    # Done when uWSGI says so and none of the workers that served before is left.
    left=
    for pid in $old; do [ -d "/proc/$pid" ] && left=1; done
    [ -z "$left" ] && log_since "$cursor" | grep -q 'chain reloading complete' && exit 0
    sleep 0.2
    i=$((i + 1))
done
left=
for pid in $old; do [ -d "/proc/$pid" ] && left="$left $pid"; done
echo "uWSGI's chain reload of $unit.service did not end in 60 s (workers of before left:${left:- none}): see journalctl -u $unit.service" >&2
exit 1"""


def release(v: dict, facts: HostFacts, ctx: ReleaseContext) -> ReleaseSteps:
    """What the pipeline runs for one release: the virtualenv of its requirements.txt (built
    by pip as the app's user, or reused) linked at ``.venv``; the import of ``python_wsgi``
    with it; after the switch, a chain reload (or the first start); then the virtualenvs no
    release links any more are removed."""
    module, _, attribute = str(v["python_wsgi"]).partition(":")
    fifo = f"/run/{v['python_unit']}/master.fifo"
    return ReleaseSteps(
        user=v["python_user"],
        build=(build_venv(ctx),),
        check=(((".venv/bin/python", "-B", "-c", CHECK_WSGI, module, attribute),),),
        activate=((("sh", "-c", ACTIVATE, "activate", v["python_unit"], fifo),),),
        retire=(retire_venvs(ctx),),
    )
