"""backend_php: the API's front controller on PHP-FPM, in a pool of its own under its own user.

Paths depend on the PHP version (``/etc/php/8.2/fpm/pool.d/``): it comes from ``php_version``,
else from the installed ``php<version>-fpm`` (the engine gathers facts again after installing
packages). Until php-fpm is installed, only the package is known.

With the ``app`` role's ``app_src`` (``app_enabled``), the pool serves the user's application
instead of the built-in front controller: ``php_front_controller`` under the release nginx
resolves through ``current`` (``$realpath_root``), ``open_basedir`` the releases and the shared
directories, ``app_environment`` as ``env[...]`` in a root-only pool include, and a ``release``
hook for the pipeline: ``composer install --no-dev``, ``php -l``, a graceful pool reload.
"""

import re

from mtls_deploy.errors import BadInput
from mtls_deploy.facts import HostFacts
from mtls_deploy.release.environment import resolved
from mtls_deploy.release.steps import ReleaseContext, ReleaseSteps
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
# Relative, inside the release: segments of safe characters, none starting with a dot.
FRONT_CONTROLLER_PATH = re.compile(
    r"([A-Za-z0-9_-][A-Za-z0-9_.-]*/)*[A-Za-z0-9_-][A-Za-z0-9_.-]*\.php"
)
# php-fpm's env[NAME]: a name as in a shell.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The app role's notification when app.env changed: the pool's include changed with it.
ENVIRONMENT_CHANGED = ("app environment changed",)


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


def app_enabled(v: dict) -> bool:
    """True when the ``app`` role deploys the user's application (``app_src`` is set)."""
    return bool(v.get("app_enabled"))


def exports(v: dict, facts: HostFacts) -> dict:
    """For the nginx site: the pool's socket (``fastcgi_pass``) and the front controller; with
    an app, the document root (``current``) and the front controller relative to it, which the
    site resolves per request (``$realpath_root``)."""
    found = {"fastcgi_socket": v["php_socket"], "front_controller": front_controller(v)}
    if app_enabled(v):
        found |= {"document_root": v["app_current"], "front_controller": app_front_controller(v)}
    return found


def app_front_controller(v: dict) -> str:
    """``php_front_controller``, a relative path inside the release (``lib/Request.class.php``)."""
    path = str(v["php_front_controller"])
    if not FRONT_CONTROLLER_PATH.fullmatch(path):
        raise BadInput(
            f"php_front_controller must be a .php file relative to the release, such as "
            f"index.php or lib/Request.class.php (no '..', no leading '/'), not {path!r}"
        )
    return path


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
    if app_enabled(v):  # the app's state: the rest of the system stays read-only
        writable[f"-{v['app_shared_root']}"] = None
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
    context = {k: value for k, value in v.items() if k.startswith("php_")}
    return render(
        POOL_TEMPLATE, **context, app_enabled=app_enabled(v), open_basedir=open_basedir(v)
    )


def open_basedir(v: dict) -> str:
    """What the pool's scripts may open: the built-in front controller's directory; with an
    app, every release and the shared directories. Not ``current``: PHP resolves it through
    each worker's realpath cache (120 s), so right after a switch a worker would refuse the
    new release's files until the reload replaced it."""
    if not app_enabled(v):
        return f"{v['php_app_dir']}/"
    return f"{v['app_root']}/releases/:{v['app_shared_root']}/"


def packages(v: dict) -> Packages:
    """``php<version>-fpm`` when the version is pinned, else the distribution's ``php-fpm``;
    with an app, Debian's ``composer`` too (the tree is not known before a release, so it is
    installed whether or not the app has a composer.json)."""
    version = str(v.get("php_version") or "")
    names = (f"php{version}-fpm",) if version else ("php-fpm",)
    return Packages((*names, "composer") if app_enabled(v) else names)


def env_include_path(v: dict, version: str) -> str:
    """The pool's ``env[...]`` lines: a root-only include beside the pool (pool.d/*.conf)."""
    return f"/etc/php/{version}/fpm/pool.d/{v['php_pool']}.env.conf"


def env_value(name: str, value) -> str:
    """``value`` (one line: ``resolved`` checked it) as php-fpm's ini reads it back exactly,
    double-quoted, with backslash, quote and dollar escaped."""
    text = str(value)
    if not ENV_NAME.fullmatch(str(name)):
        raise BadInput(f"app_environment: {name!r} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)")
    if text.startswith("$"):  # php-fpm reads env[X] = $Y as "the master's variable Y"
        raise BadInput(
            f"app_environment: php-fpm reads a value starting with '$' as the name of a "
            f"variable; the value of {name} cannot start with '$' (prefix it in the app)"
        )
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'env[{name}] = "{escaped}"'


def render_env(v: dict) -> bytes:
    """The pool include holding ``app_environment`` (values from the inventory or the control
    machine's environment): secret, so never rendered in a diff or a report."""
    values = resolved(v.get("inventory_hostname", "host"), v.get("app_environment"))
    lines = [env_value(name, value) for name, value in sorted(values.items())]
    header = "; Managed by mtls-deploy (role backend_php): app_environment for the pool.\n"
    return (header + f"[{v['php_pool']}]\n" + "".join(f"{x}\n" for x in lines)).encode()


def app_resources(v: dict, version: str) -> list:
    """With an app: the shared directories (the pool's user writes there) and the pool's
    environment (root-only, secret); without, no environment include."""
    include = env_include_path(v, version)
    if not app_enabled(v):
        return [Absent(include, validate=FPM_TEST, notify=RESTART)]
    shared = [
        Directory(f"{v['app_shared_root']}/{d.strip('/')}", mode=0o750, owner=v["php_user"],
                  group=v["php_user"])
        for d in v.get("app_shared") or ()
    ]  # fmt: skip
    secret = File(include, render_env(v), mode=0o600, secret=True, validate=FPM_TEST,
                  notify=RESTART)  # fmt: skip
    return [*shared, secret]


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
    found += app_resources(v, version)
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
# $1: the newest installed php-fpm's version (php-fpm8.2 -> 8.2), when no fact names it.
NEWEST_FPM = (
    'set -- "$(ls /usr/sbin/php-fpm[0-9]* 2>/dev/null | sed "s|^/usr/sbin/php-fpm||" '
    '| sort -V | tail -n 1)"\n'
    '[ -n "$1" ] || { echo "php-fpm is not installed: run inv provision first" >&2; exit 1; }\n'
)
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
    "restart php-fpm" (its unit changed): the same test, then a real restart. When both are
    notified (a first run) only the restart runs: php-fpm's reload (SIGUSR2) returns before
    the master has re-executed, and a restart right behind it found the old master still on
    the socket ("Another FPM instance seems to already listen"; seen once in CI)."""
    version = php_version(v, facts)
    if version is None:
        return []
    return [
        Handler(
            "restart backend",
            (("sh", "-c", RELOAD_FPM, "php-fpm", version),),
            order=40,
            listen=ENVIRONMENT_CHANGED,
        ),
        Handler(
            "restart php-fpm",
            (("sh", "-c", RESTART_FPM, "php-fpm", version),),
            order=41,
            covers=("restart backend",),
        ),
    ]


# --- releases of the user's application (the app role's pipeline calls ``release``) ------------

# composer's error is a block of wrapped lines followed by the command's usage: with a wide
# terminal (COLUMNS) each message is one line. The reason: the line after "In <file> line <n>:"
# (an exception), else the first "- " line of "Problem 1" (an unresolvable requirement), else
# the last line that is neither blank nor usage.
COMPOSER_INSTALL = """out=$(COLUMNS=1000 composer install --no-dev --no-interaction --no-progress \\
    --no-ansi --optimize-autoloader 2>&1) && exit 0
printf '%s\\n' "$out" | sed -e 's/^ *//' -e 's/ *$//' | awk '
    after == 1 && NF { block = $0; after = 2 }
    /^In .* line [0-9]+:$/ { after = 1 }
    /^- / && problem == "" { problem = substr($0, 3) }
    NF && !/^install \\[/ { last = $0 }
    END { print "composer install failed: " (block != "" ? block : problem != "" ? problem : last) }' >&2
exit 1"""
# php -l says "Could not open input file" on stdout: name the missing file ourselves. The
# parse error goes to stderr as one line, its last.
LINT_FRONT_CONTROLLER = """[ -f "$1" ] || { echo "php_front_controller $1 is not in the release" >&2; exit 1; }
php -d display_errors=stderr -d log_errors=0 -l "$1" >/dev/null"""


def release(v: dict, facts: HostFacts, ctx: ReleaseContext) -> ReleaseSteps:
    """What the pipeline runs for one release: ``composer install --no-dev`` when the tree has
    a composer.json, ``php -l`` of the front controller (both as the pool's user, in the
    release being built), then after the switch a graceful pool reload: php-fpm's test first,
    then the in-flight requests finish (``process_control_timeout``) while new workers start
    on the new ``current``; a stopped php-fpm is started."""
    build = ((("sh", "-c", COMPOSER_INSTALL, "composer-install"),),)
    lint = (("sh", "-c", LINT_FRONT_CONTROLLER, "php-lint", app_front_controller(v)),)
    return ReleaseSteps(
        user=v["php_user"],
        build=build if "composer.json" in ctx.files else (),
        check=(lint,),
        activate=(reload_pool(v, facts),),
    )


def reload_pool(v: dict, facts: HostFacts):
    """The "restart backend" handler's graceful reload, for the version the facts know; without
    facts (no provision from this machine yet), for the newest php-fpm on the host."""
    version = php_version(v, facts)
    if version is None:
        return (("sh", "-c", NEWEST_FPM + RELOAD_FPM, "php-fpm"),)
    return (("sh", "-c", RELOAD_FPM, "php-fpm", version),)
