"""backend_php: the API's front controller on PHP-FPM, in a pool of its own under its own user.

Paths depend on the PHP version (``/etc/php/8.2/fpm/pool.d/``): it comes from ``php_version``,
else from the installed ``php<version>-fpm`` (the engine gathers facts again after installing
packages). Until php-fpm is installed, only the package is known.
"""

from mtls_deploy.errors import BadInput
from mtls_deploy.facts import HostFacts
from mtls_deploy.resources import Absent, Directory, File, Handler, Packages, Service, User
from mtls_deploy.templating import TEMPLATES_DIR, render
from roles import with_defaults

ROLE = "backend_php"
RESTART = ("restart backend",)
POOL_TEMPLATE = "php/pool.conf.j2"
FRONT_CONTROLLER = "php/index.php"  # copied as is: PHP, not a Jinja template


def php_version(v: dict, facts: HostFacts) -> str | None:
    """``"8.2"``: the ``php_version`` variable, else the installed php-fpm's, else None."""
    version = str(v.get("php_version") or "") or facts.php_version
    if version and not all(part.isdigit() for part in version.split(".")):
        raise BadInput(f"php_version must look like 8.2, not {version!r}")
    return version or None


def backend_socket(v: dict, facts: HostFacts) -> str:
    """The pool's unix socket, for nginx's ``fastcgi_pass``."""
    return with_defaults(ROLE, v)["php_socket"]


def front_controller(v: dict) -> str:
    """The single PHP file every request runs, for nginx's ``SCRIPT_FILENAME``."""
    return f"{with_defaults(ROLE, v)['php_app_dir']}/index.php"


def fpm_service(version: str) -> str:
    """Debian's unit name for this PHP version's FPM."""
    return f"php{version}-fpm"


def pool_path(v: dict, version: str) -> str:
    return f"/etc/php/{version}/fpm/pool.d/{v['php_pool']}.conf"


def render_pool(v: dict) -> bytes:
    """The pool configuration for ``v`` (role defaults filled in)."""
    v = with_defaults(ROLE, v)
    return render(POOL_TEMPLATE, **{k: value for k, value in v.items() if k.startswith("php_")})


def packages(v: dict) -> Packages:
    """``php<version>-fpm`` when the version is pinned, else the distribution's ``php-fpm``."""
    version = str(v.get("php_version") or "")
    return Packages((f"php{version}-fpm",) if version else ("php-fpm",))


def resources(v: dict, facts: HostFacts) -> list:
    """Package, user, front controller, pool; Debian's www pool removed; php-fpm running."""
    v = with_defaults(ROLE, v)
    version = php_version(v, facts)
    if version is None:  # php-fpm not installed yet: the engine only wants the package now
        return [packages(v)]
    app_dir = v["php_app_dir"]
    found = [
        packages(v),
        User(v["php_user"]),
        Directory(app_dir, mode=0o755),
        File(front_controller(v), (TEMPLATES_DIR / FRONT_CONTROLLER).read_bytes(), notify=RESTART),
        File(pool_path(v, version), render_pool(v), notify=RESTART),
    ]
    if v["php_remove_www_pool"]:
        found.append(Absent(f"/etc/php/{version}/fpm/pool.d/www.conf", notify=RESTART))
    found.append(Service(fpm_service(version)))
    return found


def handlers(v: dict, facts: HostFacts) -> list[Handler]:
    """The "restart backend" handler: test the whole FPM configuration first, so a bad pool
    file leaves the running php-fpm alone (a reload with a broken pool stops it), then reload."""
    version = php_version(with_defaults(ROLE, v), facts)
    if version is None:
        return []
    service = fpm_service(version)
    test = (  # on failure, php-fpm's first ERROR line goes last on stderr, where it is reported
        f"{{ out=$(php-fpm{version} --test 2>&1) || "
        f'{{ printf "%s\\n" "$out" | grep -m1 ERROR >&2; false; }}; }}'
    )
    command = f"{test} && systemctl reload-or-restart {service}"
    return [Handler("restart backend", command, order=40)]
