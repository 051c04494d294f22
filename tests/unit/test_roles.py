"""The nginx, backend_php and backend_python roles: which resources, at which paths, with which
modes, owners, validation and notifications; their handlers; their defaults and READMEs."""

import re
import shlex
import shutil
import subprocess

import pytest
import yaml

from mtls_deploy.errors import BadInput
from mtls_deploy.facts import HostFacts
from mtls_deploy.resources import Absent, Directory, File, Handler, Packages, Service, User
from mtls_deploy.role_loader import PACKAGE_ROLES as ROLES_DIR
from mtls_deploy.role_loader import load
from mtls_deploy.templating import TEMPLATES_DIR

backend_php = load("backend_php").module
backend_python = load("backend_python").module
nginx = load("nginx").module

FACTS = HostFacts(
    os_id="debian",
    os_version="12",
    packages={"nginx": "1.22.1-9+deb12u1", "php8.2-fpm": "8.2.36-1~deb12u1", "libssl3": "3.0.19-1"},
)
ENGINE_HANDLERS = {"daemon-reload"}


def host_vars(**overrides) -> dict:
    v = {
        "inventory_hostname": "api1",
        "server_name": "api1.lab.test",
        "https_listen": "127.0.0.1",
        "https_port": 8441,
        "tls_dir": "/etc/nginx/mtls",
        "backend": "php",
    }
    return as_the_engine_gives({**v, **overrides})


def as_the_engine_gives(v: dict, role: str = "nginx") -> dict:
    """``v`` as the engine hands it to ``role``: over every role's defaults (applied once, by
    the inventory), plus what the roles it depends on export to it."""
    from mtls_deploy import role_loader
    from mtls_deploy.inventory import role_defaults

    merged = {k: x for layer in role_defaults() for k, x in layer.values.items()} | v
    roles = role_loader.host_roles({**merged, "roles": [role]})
    return role_loader.with_exports(roles, merged, HostFacts())[role]


def by_path(resources: list) -> dict:
    return {r.path: r for r in resources if isinstance(r, File | Absent | Directory)}


def of_type(resources: list, kind) -> list:
    return [r for r in resources if isinstance(r, kind)]


# --- nginx ------------------------------------------------------------------------------------


def test_nginx_resources():
    resources = nginx.resources(host_vars(), FACTS)
    assert of_type(resources, Packages) == [Packages(("nginx",))]
    site = by_path(resources)["/etc/nginx/conf.d/api.conf"]
    assert (site.mode, site.owner, site.group, site.secret) == (0o644, "root", "root", False)
    assert (site.validate, site.notify) == ("nginx", ("reload nginx",))
    assert site.content == nginx.render_site(host_vars(), FACTS)
    default = by_path(resources)["/etc/nginx/sites-enabled/default"]
    assert isinstance(default, Absent)
    assert (default.validate, default.notify) == ("nginx", ("reload nginx",))
    assert of_type(resources, Service) == [Service("nginx")]


def test_default_site_goes_before_nginx_starts():
    resources = nginx.resources(host_vars(), FACTS)
    names = [getattr(r, "path", getattr(r, "name", None)) for r in resources]
    assert names.index("/etc/nginx/sites-enabled/default") < names.index("nginx")


def test_nginx_handler_reloads_a_running_nginx_and_starts_a_stopped_one():
    handler = nginx.handlers(host_vars(), FACTS)[0]
    assert (handler.name, handler.order) == ("reload nginx", 60)
    assert "systemctl reload nginx" in handler.command
    assert "systemctl restart nginx" in handler.command


def test_nginx_restart_handler_runs_after_the_reload():
    reload, restart = nginx.handlers(host_vars(), FACTS)
    assert (restart.name, restart.order) == ("restart nginx", 61)
    assert restart.order > reload.order  # when both run, the restarted nginx has everything
    assert restart.command.startswith("systemctl restart nginx || ")


def test_nginx_drop_in_comes_before_nginx_starts_and_restarts_it():
    resources = nginx.resources(host_vars(), FACTS)
    files = by_path(resources)
    folder = files["/etc/systemd/system/nginx.service.d"]
    assert isinstance(folder, Directory) and (folder.mode, folder.owner) == (0o755, "root")
    drop_in = files["/etc/systemd/system/nginx.service.d/hardening.conf"]
    assert (drop_in.mode, drop_in.owner, drop_in.validate) == (0o644, "root", None)
    assert drop_in.notify == ("daemon-reload", "restart nginx")  # a reload keeps the old sandbox
    assert drop_in.content == nginx.render_hardening(host_vars())
    assert resources.index(drop_in) < resources.index(Service("nginx"))


def test_nginx_hardening_off_removes_the_drop_in():
    resources = nginx.resources(host_vars(nginx_hardening=False), FACTS)
    drop_in = by_path(resources)["/etc/systemd/system/nginx.service.d/hardening.conf"]
    assert isinstance(drop_in, Absent) and drop_in.notify == ("daemon-reload", "restart nginx")
    assert "/etc/systemd/system/nginx.service.d" not in by_path(resources)


def test_nginx_drop_in_lets_nginx_write_its_logs_and_nothing_else():
    unit = unit_settings(nginx.render_hardening(host_vars(nginx_log_dir="/var/log/api")).decode())
    assert unit["ReadWritePaths"] == ["/var/log/nginx /var/log/api /var/lib/nginx /run"]
    assert unit["ProtectSystem"] == ["strict"]
    assert set(unit["CapabilityBoundingSet"][0].split()) == {
        "CAP_NET_BIND_SERVICE",
        "CAP_SETUID",
        "CAP_SETGID",
        "CAP_KILL",
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
    }
    assert unit["MemoryDenyWriteExecute"] == ["yes"]


@pytest.mark.parametrize(
    ("backend", "socket", "script"),
    [
        ("php", "/run/php/api-php.sock", "/srv/api-php/index.php"),
        ("python", "/run/api-python.sock", "/srv/api-python/app.py"),
    ],
)
def test_nginx_points_at_the_hosts_backend(backend, socket, script):
    site = nginx.render_site(host_vars(backend=backend), FACTS).decode()
    # python's socket is named twice in an upstream (a request once more after uWSGI's reload race)
    assert f"fastcgi_pass unix:{socket};" in site or f"server unix:{socket} max_fails=0;" in site
    assert f"fastcgi_param SCRIPT_FILENAME {script};" in site


def test_backend_socket_follows_backend_variables():
    v = host_vars(backend="php", php_socket="/run/php/shop.sock", php_app_dir="/srv/shop")
    site = nginx.render_site(v, FACTS).decode()
    assert "fastcgi_pass unix:/run/php/shop.sock;" in site
    assert "SCRIPT_FILENAME /srv/shop/index.php;" in site


def test_site_name_and_directory_follow_variables():
    v = host_vars(api_name="shop", nginx_site_dir="/etc/nginx/sites-enabled")
    assert "/etc/nginx/sites-enabled/shop.conf" in by_path(nginx.resources(v, FACTS))


@pytest.mark.parametrize("backend", ["ruby", "PHP"])
def test_unknown_backend_is_one_clear_error(backend):
    from mtls_deploy.role_loader import resolve

    with pytest.raises(BadInput, match=f"depends on 'backend_{backend}'.*which is not a role"):
        resolve(["nginx"], {"backend": backend})


def test_the_backend_variable_chooses_the_backend_role():
    from mtls_deploy.role_loader import resolve

    assert resolve(["nginx"], {"backend": "php"}) == ["tls", "acme", "app", "backend_php", "nginx"]
    assert resolve(["nginx"], {"backend": "python"}) == [
        "tls", "acme", "app", "backend_python", "nginx"
    ]  # fmt: skip


@pytest.mark.parametrize("missing", ["server_name", "https_listen", "https_port"])
def test_nginx_needs_the_inventory_variables(missing):
    v = host_vars()
    del v[missing]
    with pytest.raises(BadInput, match=f"{missing} is not set"):
        nginx.resources(v, FACTS)


def test_tls_exports_its_paths_and_names_to_the_roles_that_depend_on_it():
    from mtls_deploy.role_loader import exports_for

    v = {"tls_dir": "/etc/ssl/api", "server_name": "a.test", "server_aliases": ["b.test", "a.test"]}
    assert exports_for(v, "tls") == {
        "tls_certificate": "/etc/ssl/api/server.crt",
        "tls_certificate_key": "/etc/ssl/api/server.key",
        "tls_client_ca": "/etc/ssl/api/client-ca.crt",
        "tls_crl": "/etc/ssl/api/crl.pem",
        "server_names": ["a.test", "b.test"],
    }


def test_nginx_imports_no_other_role():
    """Roles meet through exports and handler names only: no role imports another."""
    for role in ("tls", "nginx", "backend_php", "backend_python"):
        source = (ROLES_DIR / role / "role.py").read_text()
        assert not re.search(r"^\s*(from|import) roles\b", source, re.M), role


# --- backend_php ------------------------------------------------------------------------------


def test_php_before_php_is_installed_only_asks_for_the_package():
    assert backend_php.resources(host_vars(), HostFacts()) == [Packages(("php-fpm",))]
    assert backend_php.handlers(host_vars(), HostFacts()) == []


def test_php_fpm_checks_its_pool_with_the_installed_version():
    """backend_php owns ``php-fpm<version> -t``: from role.py, as the version is a fact."""
    from mtls_deploy.role_loader import load

    checks = load("backend_php").validators(host_vars(), FACTS)
    assert checks["php-fpm"].command == (("php-fpm8.2", "-t"),)
    assert checks["php-fpm"].error_lines == "ERROR"
    assert load("backend_php").validators(host_vars(), HostFacts()) == {}  # not installed yet
    pinned = load("backend_php").validators(host_vars(php_version="8.3"), FACTS)
    assert pinned["php-fpm"].command == (("php-fpm8.3", "-t"),)


def test_php_resources():
    resources = backend_php.resources(host_vars(), FACTS)
    files = by_path(resources)
    assert of_type(resources, Packages) == [Packages(("php-fpm",))]
    assert of_type(resources, User) == [User("api-php")]
    app_dir = files["/srv/api-php"]
    assert (app_dir.mode, app_dir.owner) == (0o755, "root")
    index = files["/srv/api-php/index.php"]
    assert index.content == (TEMPLATES_DIR / "php" / "index.php").read_bytes()
    assert (index.mode, index.owner, index.group, index.notify) == (
        0o644,
        "root",
        "root",
        ("restart backend",),
    )
    pool = files["/etc/php/8.2/fpm/pool.d/api.conf"]
    assert (pool.mode, pool.owner, pool.notify, pool.validate) == (
        0o644,
        "root",
        ("restart backend",),
        "php-fpm",
    )
    www = files["/etc/php/8.2/fpm/pool.d/www.conf"]
    assert isinstance(www, Absent) and www.notify == ("restart backend",)
    assert of_type(resources, Service) == [Service("php8.2-fpm")]


def test_php_drop_in_and_jit_ini_come_before_php_fpm_starts():
    resources = backend_php.resources(host_vars(), FACTS)
    files = by_path(resources)
    ini = files["/etc/php/8.2/fpm/conf.d/90-mtls-deploy-hardening.ini"]
    assert "pcre.jit = 0" in ini.content.decode().splitlines()
    assert (ini.mode, ini.owner, ini.notify) == (0o644, "root", ("restart backend",))
    assert isinstance(files["/etc/systemd/system/php8.2-fpm.service.d"], Directory)
    drop_in = files["/etc/systemd/system/php8.2-fpm.service.d/hardening.conf"]
    assert (drop_in.mode, drop_in.owner) == (0o644, "root")
    assert drop_in.notify == ("daemon-reload", "restart php-fpm")
    assert drop_in.content == backend_php.render_hardening(host_vars(), "8.2")
    service = resources.index(Service("php8.2-fpm"))
    assert resources.index(ini) < service and resources.index(drop_in) < service


def test_php_hardening_off_removes_drop_in_and_jit_ini():
    files = by_path(backend_php.resources(host_vars(php_hardening=False), FACTS))
    drop_in = files["/etc/systemd/system/php8.2-fpm.service.d/hardening.conf"]
    ini = files["/etc/php/8.2/fpm/conf.d/90-mtls-deploy-hardening.ini"]
    assert isinstance(drop_in, Absent) and drop_in.notify == ("daemon-reload", "restart php-fpm")
    assert isinstance(ini, Absent) and ini.notify == ("restart backend",)


def test_php_drop_in_follows_version_and_socket():
    v = host_vars(php_version="8.3", php_socket="/run/api/api.sock")
    resources = backend_php.resources(v, HostFacts(packages={"php8.3-fpm": "8.3.1"}))
    assert "/etc/systemd/system/php8.3-fpm.service.d/hardening.conf" in by_path(resources)
    unit = unit_settings(backend_php.render_hardening(v, "8.3").decode())
    assert unit["ReadWritePaths"] == ["/run/php /run/api /var/log -/var/lib/php/sessions"]
    assert unit["MemoryDenyWriteExecute"] == ["yes"]
    assert "php8.3-fpm.service" in backend_php.render_hardening(v, "8.3").decode()


def test_php_pool_content():
    pool = backend_php.render_pool(host_vars()).decode()
    for line in [
        "[api]",
        "user = api-php",
        "listen = /run/php/api-php.sock",
        "listen.owner = www-data",
        "listen.group = www-data",
        "listen.mode = 0600",
        "pm = static",
        "pm.max_children = 4",
        "clear_env = yes",
        "security.limit_extensions = .php",
        "php_admin_value[open_basedir] = /srv/api-php/",
    ]:
        assert line in pool.splitlines(), line
    assert "www-data" not in re.findall(r"^user = (.*)$", pool, re.M)


def test_php_ondemand_pool_has_no_spare_servers():
    pool = backend_php.render_pool(host_vars(php_pm="ondemand")).decode()
    assert "pm = ondemand" in pool and "pm.start_servers" not in pool


def test_php_user_resource_comes_before_the_service():
    resources = backend_php.resources(host_vars(), FACTS)
    kinds = [type(r) for r in resources]
    assert kinds.index(User) < kinds.index(Service)
    assert kinds.index(Service) == len(kinds) - 1


def test_php_version_can_be_pinned():
    v = host_vars(php_version="8.3")
    facts = HostFacts(packages={"php8.3-fpm": "8.3.1"})
    resources = backend_php.resources(v, facts)
    assert of_type(resources, Packages) == [Packages(("php8.3-fpm",))]
    assert "/etc/php/8.3/fpm/pool.d/api.conf" in by_path(resources)
    assert of_type(resources, Service) == [Service("php8.3-fpm")]


def test_php_version_is_checked():
    with pytest.raises(BadInput, match="php_version"):
        backend_php.resources(host_vars(php_version="8.2; rm -rf /"), FACTS)


def test_www_pool_can_be_kept():
    resources = backend_php.resources(host_vars(php_remove_www_pool=False), FACTS)
    assert "/etc/php/8.2/fpm/pool.d/www.conf" not in by_path(resources)


def test_php_handler_tests_the_configuration_before_reloading():
    handler = backend_php.handlers(host_vars(), FACTS)[0]
    assert handler.name == "restart backend"
    ((shell, flag, script, name, version),) = handler.command
    assert (shell, flag, name, version) == ("sh", "-c", "php-fpm", "8.2")
    test, reload = script.splitlines()
    assert '"php-fpm$1" --test' in test
    assert reload == 'systemctl reload-or-restart "php$1-fpm"'


def test_php_restart_handler_tests_then_restarts_after_the_reload():
    reload, restart = backend_php.handlers(host_vars(), FACTS)
    assert (restart.name, restart.order) == ("restart php-fpm", 41)
    assert restart.order > reload.order
    assert restart.covers == ("restart backend",)  # both notified: the restart alone runs
    ((*_, script, _, version),) = restart.command
    test, rest = script.splitlines()
    assert '"php-fpm$1" --test' in test and version == "8.2"
    assert rest.startswith('systemctl restart "php$1-fpm" || ')


def test_php_handlers_carry_the_version_as_an_argument_not_as_shell_text():
    """The scripts are fixed: no value from the inventory is ever part of their text."""
    for handler in backend_php.handlers(host_vars(php_version="8.3"), FACTS):
        ((*_, script, _, version),) = handler.command
        assert version == "8.3" and "8.3" not in script


def run_handler(command, path: str, shell: str = "bash"):
    """A handler's command as the engine sends it (argv quoted), run with stand-in binaries."""
    text = command if isinstance(command, str) else " && ".join(shlex.join(a) for a in command)
    return subprocess.run(
        [shell, "-c", text], capture_output=True, text=True, env={"PATH": f"{path}:/usr/bin:/bin"}
    )


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
@pytest.mark.parametrize(("fpm_test", "reloaded"), [("exit 0", True), ("exit 78", False)])
def test_php_handler_reloads_only_a_valid_configuration(tmp_path, fpm_test, reloaded):
    """Run the handler's command with stand-ins for php-fpm8.2 and systemctl."""
    handler = backend_php.handlers(host_vars(), FACTS)[0]
    for name, body in [
        (
            "php-fpm8.2",
            f"echo NOTICE: checking >&2; echo 'ERROR: [pool api] bad value' >&2; {fpm_test}",
        ),
        ("systemctl", f'echo "$@" > {tmp_path}/reloaded'),
    ]:
        (tmp_path / name).write_text(f"#!/bin/sh\n{body}\n")
        (tmp_path / name).chmod(0o755)
    result = run_handler(handler.command, str(tmp_path))
    assert (result.returncode == 0) is reloaded
    assert (tmp_path / "reloaded").exists() is reloaded
    if reloaded:
        assert (tmp_path / "reloaded").read_text() == "reload-or-restart php8.2-fpm\n"
    else:
        assert result.stderr.strip().splitlines()[-1] == "ERROR: [pool api] bad value"


# --- backend_python ---------------------------------------------------------------------------


def test_python_resources():
    resources = backend_python.resources(host_vars(backend="python"), FACTS)
    files = by_path(resources)
    assert of_type(resources, Packages) == [Packages(("uwsgi-core", "uwsgi-plugin-python3"))]
    assert of_type(resources, User) == [User("api-python")]
    app = files["/srv/api-python/app.py"]
    assert app.content == (TEMPLATES_DIR / "backend_python" / "app.py").read_bytes()
    assert (app.mode, app.owner, app.notify) == (0o644, "root", ("restart backend",))
    ini = files["/etc/api-python/uwsgi.ini"]
    assert (ini.mode, ini.owner, ini.notify) == (0o644, "root", ("restart backend",))
    socket = files["/etc/systemd/system/api-python.socket"]
    assert socket.notify == ("daemon-reload", "restart backend socket")
    service = files["/etc/systemd/system/api-python.service"]
    assert service.notify == ("daemon-reload", "restart backend")
    assert all(f.validate is None for f in of_type(resources, File))
    assert of_type(resources, Service) == [
        Service("api-python.socket"),
        Service("api-python.service"),
    ]


def test_python_units_come_before_their_services():
    resources = backend_python.resources(host_vars(backend="python"), FACTS)
    paths = [getattr(r, "path", None) for r in resources]
    first_service = next(i for i, r in enumerate(resources) if isinstance(r, Service))
    assert paths.index("/etc/systemd/system/api-python.service") < first_service


def test_python_handlers():
    assert backend_python.handlers(host_vars(), FACTS) == [
        Handler(
            "restart backend socket",
            (("systemctl", "restart", "api-python.socket", "api-python.service"),),
            order=39,
        ),
        Handler("restart backend", (("systemctl", "restart", "api-python.service"),), order=40),
    ]


def test_python_unit_is_an_argument_not_shell_text(tmp_path):
    """The issue's proof: a unit name that ends the command and runs its own. Refused by the
    schema, and even past it the handler hands it to systemctl as one argument."""
    (tmp_path / "systemctl").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/argv\n')
    (tmp_path / "systemctl").chmod(0o755)
    unit = f"api-python.service; touch {tmp_path}/pwned; true"
    handler = backend_python.handlers(host_vars(python_unit=unit), FACTS)[1]
    assert run_handler(handler.command, str(tmp_path), shell="sh").returncode == 0
    assert not (tmp_path / "pwned").exists()
    assert (tmp_path / "argv").read_text().splitlines() == ["restart", f"{unit}.service"]


def test_uwsgi_takes_the_socket_from_systemd_and_speaks_fastcgi():
    ini = backend_python.render_units(host_vars())["/etc/api-python/uwsgi.ini"].decode()
    settings = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition("=") for line in ini.splitlines())
        if value and not key.startswith("#")
    )
    assert settings["protocol"] == "fastcgi"
    assert settings["plugins"] == "python3"
    assert settings["wsgi-file"] == "/srv/api-python/app.py"
    assert settings["die-on-term"] == "true"
    # a socket option would make uWSGI bind a socket of its own (and fail: /run is read-only)
    assert not {"socket", "fastcgi-socket", "http-socket", "uwsgi-socket"} & settings.keys()


def unit_settings(text: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_socket_unit_lets_only_nginx_connect():
    unit = unit_settings(
        backend_python.render_units(host_vars())["/etc/systemd/system/api-python.socket"].decode()
    )
    assert unit["ListenStream"] == ["/run/api-python.sock"]
    assert (unit["SocketUser"], unit["SocketGroup"], unit["SocketMode"]) == (
        ["www-data"],
        ["www-data"],
        ["0600"],
    )
    assert unit["WantedBy"] == ["sockets.target"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("User", "api-python"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX"),
        ("CapabilityBoundingSet", ""),
        ("SystemCallFilter", "@system-service"),
        ("PrivateNetwork", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("Requires", "api-python.socket"),
        ("Type", "notify"),
    ],
)
def test_service_unit_hardening(key, value):
    unit = unit_settings(
        backend_python.render_units(host_vars())["/etc/systemd/system/api-python.service"].decode()
    )
    assert value in unit[key]


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)
def test_service_exposure_is_at_most_2(tmp_path):
    unit = tmp_path / "api-python.service"
    unit.write_bytes(
        backend_python.render_units(host_vars())["/etc/systemd/system/api-python.service"]
    )
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
    )
    match = re.search(r"Overall exposure level for api-python\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)
@pytest.mark.parametrize(
    ("unit", "render"),
    [
        ("nginx.service", lambda: nginx.render_hardening(host_vars())),
        ("php8.2-fpm.service", lambda: backend_php.render_hardening(host_vars(), "8.2")),
    ],
)
def test_drop_in_exposure_is_at_most_5(tmp_path, unit, render):
    """Debian's units set no sandboxing at all, so a bare stand-in rates as they do (9.6):
    the score with the drop-in is the drop-in's. The lab test measures the real units."""
    (tmp_path / "lib/systemd/system").mkdir(parents=True)
    (tmp_path / "lib/systemd/system" / unit).write_text("[Service]\nExecStart=/bin/true\n")
    (tmp_path / f"etc/systemd/system/{unit}.d").mkdir(parents=True)
    (tmp_path / f"etc/systemd/system/{unit}.d/hardening.conf").write_bytes(render())
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", f"--root={tmp_path}", "--no-pager", unit],
        capture_output=True,
        text=True,
    )
    match = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 5.0


# --- every role: notifications, defaults, READMEs ----------------------------------------------

ROLES = {"nginx": nginx, "backend_php": backend_php, "backend_python": backend_python}


@pytest.mark.parametrize("backend", ["php", "python"])
@pytest.mark.parametrize("name", sorted(ROLES))
def test_every_notification_has_a_handler(name, backend):
    v = host_vars(backend=backend)
    role = ROLES[name]
    handlers = {h.name for r in ROLES.values() for h in r.handlers(v, FACTS)} | ENGINE_HANDLERS
    notified = {n for r in role.resources(v, FACTS) for n in getattr(r, "notify", ())}
    assert notified <= handlers


@pytest.mark.parametrize("name", sorted(ROLES))
def test_resources_are_the_same_on_every_call(name):
    v = host_vars()
    assert ROLES[name].resources(v, FACTS) == ROLES[name].resources(dict(v), FACTS)


@pytest.mark.parametrize("name", sorted(ROLES))
def test_defaults_are_commented_and_documented(name):
    text = (ROLES_DIR / name / "defaults.yml").read_text()
    readme = (ROLES_DIR / name / "README.md").read_text()
    for key in yaml.safe_load(text):
        block = re.search(rf"((?:^#.*\n)*)(?:^\w+:.*\n)*^{key}:", text, re.M)
        assert block and block.group(1), f"{key} has no comment above it (or above its group)"
        assert f"`{key}`" in readme, f"{key} is not in roles/{name}/README.md"


@pytest.mark.parametrize("name", sorted(ROLES) + ["tls"])
def test_readme_says_what_each_variable_accepts(name):
    """The Variables table's "accepts" column is the schema's, word for word."""
    from mtls_deploy import schema

    raw = yaml.safe_load((ROLES_DIR / name / "schema.yml").read_text())
    readme = (ROLES_DIR / name / "README.md").read_text()
    for variable, spec in raw.items():
        if "declared_by" in spec:
            continue
        accepts = schema.describe(spec).replace("|", "\\|")
        assert re.search(rf"^\| `{variable}` \| [^|]* \| {re.escape(accepts)} \|", readme, re.M), (
            f"roles/{name}/README.md: {variable} | ... | {accepts}"
        )


def test_a_site_template_from_the_inventory_cannot_read_the_ca_passphrase(tmp_path, monkeypatch):
    """The issue's proof: nginx_site_template reached os through Jinja2's globals."""
    monkeypatch.setenv("MTLS_DEPLOY_CA_PASSPHRASE", "the-ca-passphrase")
    evil = tmp_path / "site.conf.j2"
    evil.write_text(
        '{% extends "nginx/site.conf.j2" %}{% block server_extra %}'
        "# {{ lipsum.__globals__.os.environ.MTLS_DEPLOY_CA_PASSPHRASE }}{% endblock %}"
    )
    with pytest.raises(BadInput) as refused:
        nginx.render_site(host_vars(nginx_site_template=str(evil)), FACTS)
    assert str(refused.value).startswith(f"template {evil}: access to attribute '__globals__'")
    assert "the-ca-passphrase" not in str(refused.value)
