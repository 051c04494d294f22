"""backend_python: the API as a WSGI app on Debian's uWSGI (FastCGI mode).

Without an app (the built-in front controller): systemd owns the socket (``<python_unit>.socket``,
mode 0600, owned by nginx's user) and hands it to uWSGI, which speaks FastCGI on it
(``protocol = fastcgi``), in ``<python_unit>.service``.

With the ``app`` role's ``app_src`` (``app_enabled``), uWSGI serves the user's WSGI callable
(``python_wsgi``) as instances of the template unit ``<python_unit>@.service``, one per release
(two while a new one gets ready), each with the release's virtualenv and its own socket
``/run/<python_unit>/<instance>/app.sock``. nginx connects to ``<app_current>/.python.sock``, a
link in each release to its instance's socket, so a switch of ``current`` moves new requests to
the new instance with no reload of nginx or uWSGI, and the old instance, which nothing new
reaches, stops gracefully (``mtls_deploy/release/instances.py``). The ``release`` hook gives the
pipeline its steps: a virtualenv per distinct requirements.txt (built once, then reused), an
import of the callable, the new instance ready before the switch, the old one retired after.

Every service runs as its own user in a sandbox that ``systemd-analyze security`` rates at most
2.0.
"""

import hashlib

from mtls_deploy.facts import HostFacts
from mtls_deploy.release.instances import MARK, instances
from mtls_deploy.release.steps import ReleaseContext, ReleaseSteps
from mtls_deploy.release.venv import build_venv, retire_venvs
from mtls_deploy.resources import Absent, Directory, File, Handler, Packages, Service, User
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
SOCKET_LINK = ".python.sock"  # in each release: -> /run/<python_unit>/<instance>/app.sock
# How long a new instance may take to load the app and say it is ready (systemd's notify).
START_TIMEOUT = "60"


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
    """For the nginx site: the socket (``fastcgi_pass``) and the app file. With an app, the
    socket is the current release's link to its instance; without, systemd's socket. And
    ``fastcgi_retry``: nginx sends a request once more (never a POST or PATCH) when the backend
    closed its connection unread. A graceful stop of uWSGI's workers (a restart without an app)
    does that to a worker it reaches between accept() and reading the request (uWSGI's
    ``gracefully_kill``); with an app, a switch stops only an instance nothing new reaches."""
    socket = socket_link(v) if app_enabled(v) else v["python_socket"]
    return {
        "fastcgi_socket": socket,
        "front_controller": front_controller(v),
        "fastcgi_retry": True,
    }


def socket_link(v: dict) -> str:
    """Where nginx connects with an app: the link in the current release."""
    return f"{v['app_current']}/{SOCKET_LINK}"


def template_context(v: dict) -> dict:
    """The ``python_*`` variables, and where the app lives (the ``app`` role's exports)."""
    context = {k: value for k, value in v.items() if k.startswith("python_")}
    context["app_enabled"] = app_enabled(v)
    if app_enabled(v):
        context |= {k: v[k] for k in APP_VARIABLES}
    return context


def ini_path(v: dict) -> str:
    return f"{v['python_config_dir']}/uwsgi.ini"


def render_ini(v: dict) -> bytes:
    return render("backend_python/uwsgi.ini.j2", **template_context(v))


def render_units(v: dict) -> dict[str, bytes]:
    """{path: content} of uwsgi.ini and the units: without an app, the socket and the service;
    with one, the template unit and the staged settings of its instances."""
    context = template_context(v)
    ini = render_ini(v)
    unit = f"{UNIT_DIR}/{context['python_unit']}"
    if not app_enabled(v):
        return {
            ini_path(v): ini,
            f"{unit}.socket": render("backend_python/api.socket.j2", **context),
            f"{unit}.service": render("backend_python/api.service.j2", **context),
        }
    staged = render(
        "backend_python/instance.conf.j2",
        **context,
        mark=MARK,
        ini_sha256=hashlib.sha256(ini).hexdigest(),
    )
    return {
        ini_path(v): ini,
        f"{unit}@.service": render(
            "backend_python/api@.service.j2", **context, staged=staged_path(v)
        ),
        staged_path(v): staged,
    }


def staged_path(v: dict) -> str:
    """``/etc/mtls-deploy/<api_name>/<python_unit>.conf``, beside the app's env file."""
    return f"{v['app_env_file'].rsplit('/', 1)[0]}/{v['python_unit']}.conf"


def resources(v: dict, facts: HostFacts) -> list:
    """Packages, user, the built-in app, uwsgi.ini and the units: without an app, the socket and
    the service, running; with one, the template unit and its staged settings (instances are
    started and stopped by releases and by the handler), and the layout without an app gone."""
    files = render_units(v)
    common = [
        Packages((*PACKAGES, *APP_PACKAGES) if app_enabled(v) else PACKAGES),
        User(v["python_user"]),
        Directory(v["python_app_dir"], mode=0o755),
        File(f"{v['python_app_dir']}/app.py", (TEMPLATES_DIR / APP).read_bytes(), notify=RESTART),
        Directory(v["python_config_dir"], mode=0o755),
        File(ini_path(v), files[ini_path(v)], notify=RESTART),
    ]
    return common + (app_resources(v, files) if app_enabled(v) else socket_resources(v, files))


def socket_resources(v: dict, files: dict[str, bytes]) -> list:
    """Without an app: systemd's socket and uWSGI's service, both running."""
    unit = f"{UNIT_DIR}/{v['python_unit']}"
    return [
        File(f"{unit}.socket", files[f"{unit}.socket"], notify=("daemon-reload", *RESTART_ALL)),
        File(f"{unit}.service", files[f"{unit}.service"], notify=("daemon-reload", *RESTART)),
        Service(f"{v['python_unit']}.socket"),
        Service(f"{v['python_unit']}.service"),
    ]


def app_resources(v: dict, files: dict[str, bytes]) -> list:
    """With an app: the virtualenvs' and shared directories, the instances' socket directories,
    the template unit, the staged settings; the built-in app's socket and service (a host that
    served it before) stopped and gone."""
    name, unit = v["python_unit"], f"{UNIT_DIR}/{v['python_unit']}"
    user = v["python_user"]
    return [
        Directory(venvs_dir(v), mode=0o755, owner=user, group=user),
        *(
            Directory(f"{v['app_shared_root']}/{d.strip('/')}", mode=0o750, owner=user, group=user)
            for d in v.get("app_shared") or ()
        ),
        Directory(f"/run/{name}", tree=True),  # the instances' socket directories: ours whole
        File(f"{unit}@.service", files[f"{unit}@.service"], notify=("daemon-reload", *RESTART)),
        File(staged_path(v), files[staged_path(v)], notify=RESTART),
        Service(f"{name}.service", running=False, enabled=False),
        Service(f"{name}.socket", running=False, enabled=False),
        Absent(f"{unit}.service", notify=("daemon-reload",)),
        Absent(f"{unit}.socket", notify=("daemon-reload",)),
    ]


def venvs_dir(v: dict) -> str:
    """``/srv/<api_name>/venvs``: one virtualenv per distinct requirements.txt."""
    return f"{v['app_root']}/venvs"


def handlers(v: dict, facts: HostFacts) -> list[Handler]:
    """Without an app: restart the service (the socket stays open: no request is refused
    meanwhile); after a change to the socket unit, restart the socket too. With one: the current
    release again, blue/green (a new instance ready before the switch, the old one retired); a
    new instance that does not start fails the run, and the old one keeps serving. The unit
    name travels as an argument."""
    unit = v["python_unit"]
    if app_enabled(v):
        restart = instances(
            "restart", SOCKET_LINK, unit, staged_path(v), v["app_root"], "", START_TIMEOUT
        )
        return [Handler(RESTART[0], restart, order=40, listen=ENVIRONMENT_CHANGED)]
    return [
        Handler(
            "restart backend socket",
            (("systemctl", "restart", f"{unit}.socket", f"{unit}.service"),),
            order=39,
        ),
        Handler("restart backend", (("systemctl", "restart", f"{unit}.service"),), order=40),
    ]


# --- releases of the user's application (the app role's pipeline calls ``release``) ------------

# python_wsgi's module imported and its callable found, as uWSGI will (the release on sys.path,
# its virtualenv's python); a failure's last line (ModuleNotFoundError: ...) is the reason.
CHECK_WSGI = """import importlib, sys
module, name = sys.argv[1:3]
app = getattr(importlib.import_module(module), name)
if not callable(app):
    sys.exit(f"{module}:{name} is not callable")"""


def release(v: dict, facts: HostFacts, ctx: ReleaseContext) -> ReleaseSteps:
    """What the pipeline runs for one release: the virtualenv of its requirements.txt (built
    by pip as the app's user, or reused) linked at ``.venv``; the import of ``python_wsgi``
    with it; its instance started beside the running one, ready before the switch; after the
    switch, that instance enabled and the previous release's retired; then the virtualenvs no
    release links any more are removed."""
    module, _, attribute = str(v["python_wsgi"]).partition(":")
    unit = v["python_unit"]
    old = (instances("retire", SOCKET_LINK, unit, ctx.previous),) if ctx.previous else ()
    return ReleaseSteps(
        user=v["python_user"],
        build=(build_venv(ctx),),
        check=(((".venv/bin/python", "-B", "-c", CHECK_WSGI, module, attribute),),),
        start=(
            instances("start", SOCKET_LINK, unit, staged_path(v), ctx.release, "", START_TIMEOUT),
        ),
        activate=(instances("activate", SOCKET_LINK, unit, ctx.release),),
        retire=(*old, retire_venvs(ctx)),
    )
