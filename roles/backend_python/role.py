"""backend_python: the API as a WSGI app on Debian's uWSGI (FastCGI mode), socket-activated.

systemd owns the socket (``<python_unit>.socket``, mode 0600, owned by nginx's user) and hands
it to uWSGI, which speaks FastCGI on it (``protocol = fastcgi``). The service runs as its own
user in a sandbox that ``systemd-analyze security`` rates at most 2.0.
"""

from mtls_deploy.facts import HostFacts
from mtls_deploy.resources import Directory, File, Handler, Packages, Service, User
from mtls_deploy.templating import TEMPLATES_DIR, render

PACKAGES = ("uwsgi-core", "uwsgi-plugin-python3")
APP = "backend_python/app.py"  # copied as is
UNIT_DIR = "/etc/systemd/system"
RESTART = ("restart backend",)
RESTART_ALL = ("restart backend socket",)


def front_controller(v: dict) -> str:
    """The application file (nginx's ``SCRIPT_FILENAME``; uWSGI loads it by its own setting)."""
    return f"{v['python_app_dir']}/app.py"


def exports(v: dict, facts: HostFacts) -> dict:
    """For the nginx site: the socket systemd listens on (``fastcgi_pass``), the app file."""
    return {"fastcgi_socket": v["python_socket"], "front_controller": front_controller(v)}


def template_context(v: dict) -> dict:
    """The ``python_*`` variables."""
    return {k: value for k, value in v.items() if k.startswith("python_")}


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
        Packages(PACKAGES),
        User(v["python_user"]),
        Directory(v["python_app_dir"], mode=0o755),
        File(front_controller(v), (TEMPLATES_DIR / APP).read_bytes(), notify=RESTART),
        Directory(v["python_config_dir"], mode=0o755),
        File(ini, files[ini], notify=RESTART),
        File(socket_unit, files[socket_unit], notify=("daemon-reload", *RESTART_ALL)),
        File(service_unit, files[service_unit], notify=("daemon-reload", *RESTART)),
        Service(f"{unit}.socket"),
        Service(f"{unit}.service"),
    ]


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
        Handler("restart backend", (("systemctl", "restart", f"{unit}.service"),), order=40),
    ]
