"""backend_php: the API's front controller on PHP-FPM, in a pool of its own under its own user.

Paths depend on the PHP version (``/etc/php/8.2/fpm/pool.d/``): it comes from ``php_version``,
else from the installed ``php<version>-fpm`` (the engine gathers facts again after installing
packages). Until php-fpm is installed, only the package is known.
"""

from mtls_deploy.errors import BadInput
from mtls_deploy.facts import HostFacts
from mtls_deploy.resources import (
    Absent,
    Directory,
    File,
    Handler,
    Packages,
    Service,
    User,
    Validator,
)
from mtls_deploy.templating import TEMPLATES_DIR, render

RESTART = ("restart backend",)
POOL_TEMPLATE = "php/pool.conf.j2"
FRONT_CONTROLLER = "php/index.php"  # copied as is: PHP, not a Jinja template
HARDENING_INI = "php/hardening.ini"  # pcre.jit = 0, copied as is
# A sandbox applies when php-fpm starts: a changed drop-in needs a restart (a reload re-executes
# the master inside the old one).
UNIT_CHANGED = ("daemon-reload", "restart php-fpm")
# php-fpm -t checks the pool and the FPM ini once they are in place, before any restart: a pool
# it refuses is put back as it was, and the running php-fpm keeps serving.
FPM_TEST = "php-fpm"


def php_version(v: dict, facts: HostFacts) -> str | None:
    """``"8.2"``: the ``php_version`` variable, else the installed php-fpm's, else None."""
    version = str(v.get("php_version") or "") or installed_php(facts)
    if version and not all(part.isdigit() for part in version.split(".")):
        raise BadInput(f"php_version must look like 8.2, not {version!r}")
    return version or None


def installed_php(facts: HostFacts) -> str | None:
    """``"8.2"`` when php-fpm is installed, from the package name ``php8.2-fpm``."""
    names = [n for n in facts.installed("php*-fpm") if n != "php-fpm"]
    return names[0][3:-4] if names else None


def front_controller(v: dict) -> str:
    """The single PHP file every request runs, for nginx's ``SCRIPT_FILENAME``."""
    return f"{v['php_app_dir']}/index.php"


def exports(v: dict, facts: HostFacts) -> dict:
    """For the nginx site: the pool's socket (``fastcgi_pass``) and the front controller."""
    return {"fastcgi_socket": v["php_socket"], "front_controller": front_controller(v)}


def fpm_service(version: str) -> str:
    """Debian's unit name for this PHP version's FPM."""
    return f"php{version}-fpm"


def pool_path(v: dict, version: str) -> str:
    return f"/etc/php/{version}/fpm/pool.d/{v['php_pool']}.conf"


def drop_in_dir(version: str) -> str:
    return f"/etc/systemd/system/{fpm_service(version)}.service.d"


def jit_ini_path(version: str) -> str:
    """FPM's own conf.d: the CLI keeps its JIT."""
    return f"/etc/php/{version}/fpm/conf.d/90-mtls-deploy-hardening.ini"


def render_hardening(v: dict, version: str) -> bytes:
    """The systemd drop-in that sandboxes Debian's php<version>-fpm.service (writable: the
    sockets' directories, /var/log for its log, PHP sessions when present)."""
    socket_dir = v["php_socket"].rsplit("/", 1)[0] or "/"
    writable = dict.fromkeys(["/run/php", socket_dir, "/var/log", "-/var/lib/php/sessions"])
    return render(
        "systemd/php-fpm-hardening.conf.j2",
        service=fpm_service(version),
        writable=list(writable),
        jit_ini=jit_ini_path(version),
    )


def hardening(v: dict, version: str) -> list:
    """Drop-in and pcre.jit ini in place, or both gone with ``php_hardening: false``."""
    drop_in = f"{drop_in_dir(version)}/hardening.conf"
    if not v["php_hardening"]:
        return [
            Absent(drop_in, notify=UNIT_CHANGED),
            Absent(jit_ini_path(version), notify=RESTART),
        ]
    ini = (TEMPLATES_DIR / HARDENING_INI).read_bytes()
    return [
        File(jit_ini_path(version), ini, validate=FPM_TEST, notify=RESTART),
        Directory(drop_in_dir(version)),
        File(drop_in, render_hardening(v, version), notify=UNIT_CHANGED),
    ]


def render_pool(v: dict) -> bytes:
    """The pool configuration for ``v``."""
    return render(POOL_TEMPLATE, **{k: value for k, value in v.items() if k.startswith("php_")})


def packages(v: dict) -> Packages:
    """``php<version>-fpm`` when the version is pinned, else the distribution's ``php-fpm``."""
    version = str(v.get("php_version") or "")
    return Packages((f"php{version}-fpm",) if version else ("php-fpm",))


def resources(v: dict, facts: HostFacts) -> list:
    """Package, user, front controller, pool; Debian's www pool removed; the unit sandboxed
    (pcre.jit off); php-fpm running."""
    version = php_version(v, facts)
    if version is None:  # php-fpm not installed yet: the engine only wants the package now
        return [packages(v)]
    app_dir = v["php_app_dir"]
    found = [
        packages(v),
        User(v["php_user"]),
        Directory(app_dir, mode=0o755),
        File(front_controller(v), (TEMPLATES_DIR / FRONT_CONTROLLER).read_bytes(), notify=RESTART),
        File(pool_path(v, version), render_pool(v), validate=FPM_TEST, notify=RESTART),
    ]
    if v["php_remove_www_pool"]:
        found.append(Absent(f"/etc/php/{version}/fpm/pool.d/www.conf", notify=RESTART))
    found += hardening(v, version)
    found.append(Service(fpm_service(version)))
    return found


# Fixed scripts; the PHP version arrives as $1 (argv), never inside the script's text.
# On failure, php-fpm's first ERROR line goes last on stderr, where the report takes it from.
TEST_FPM = (
    'out=$("php-fpm$1" --test 2>&1) || { printf "%s\\n" "$out" | grep -m1 ERROR >&2; exit 1; }'
)
RELOAD_FPM = f'{TEST_FPM}\nsystemctl reload-or-restart "php$1-fpm"'
# If it does not come back (a path the sandbox hides), php-fpm's own ERROR line goes last.
RESTART_FPM = (
    f"{TEST_FPM}\n"
    'systemctl restart "php$1-fpm" || '
    '{ tail -n 5 "/var/log/php$1-fpm.log" | grep -m1 ERROR >&2; exit 1; }'
)


def validators(v: dict, facts: HostFacts) -> dict[str, Validator]:
    """``php-fpm<version> -t`` (the version comes from the facts, so from here, not meta.yml);
    its ERROR line says why."""
    version = php_version(v, facts)
    if version is None:
        return {}
    return {FPM_TEST: Validator(FPM_TEST, ((f"php-fpm{version}", "-t"),), error_lines="ERROR")}


def handlers(v: dict, facts: HostFacts) -> list[Handler]:
    """Two handlers. "restart backend": test the whole FPM configuration first, so a bad pool
    file leaves the running php-fpm alone (a reload with a broken pool stops it), then reload.
    "restart php-fpm" (its unit changed): the same test, then a real restart, last, so that
    when both are notified (a first run) the restarted php-fpm has both."""
    version = php_version(v, facts)
    if version is None:
        return []
    return [
        Handler("restart backend", (("sh", "-c", RELOAD_FPM, "php-fpm", version),), order=40),
        Handler("restart php-fpm", (("sh", "-c", RESTART_FPM, "php-fpm", version),), order=41),
    ]
