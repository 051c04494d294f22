"""backend_php with the user's application (the app role's ``app_src``): the pool, the site's
locations, the environment include and the release hook; without ``app_src`` nothing changes.
On a lab host: tests/integration/test_php_app.py."""

import os
import subprocess
from pathlib import Path

import pytest

from mtls_deploy.errors import BadInput
from mtls_deploy.facts import HostFacts
from mtls_deploy.release.steps import ReleaseContext
from mtls_deploy.resources import Absent, Directory, File, Packages
from mtls_deploy.role_loader import load

php = load("backend_php").module
nginx = load("nginx").module

FACTS = HostFacts(
    packages={"nginx": "1.22.1-9+deb12u1", "php8.2-fpm": "8.2.36-1~deb12u1", "libssl3": "3.0.19-1"}
)
POOL = "/etc/php/8.2/fpm/pool.d/api.conf"
ENV_INCLUDE = "/etc/php/8.2/fpm/pool.d/api.env.conf"
DROP_IN = "/etc/systemd/system/php8.2-fpm.service.d/hardening.conf"
APP = {
    "app_src": "examples/php-orders",
    "app_shared": ["var/", "storage"],
    "php_front_controller": "lib/Request.class.php",
}


def given(role: str, **overrides) -> dict:
    """The variables ``role`` receives on host api1 (``backend: php``): every role's defaults,
    ``overrides``, and the exports of the roles it depends on."""
    from mtls_deploy import role_loader
    from mtls_deploy.inventory import role_defaults

    v = {
        "inventory_hostname": "api1",
        "server_name": "api1.lab.test",
        "https_listen": "127.0.0.1",
        "https_port": 8441,
        "backend": "php",
        **overrides,
    }
    merged = {k: x for layer in role_defaults() for k, x in layer.values.items()} | v
    roles = role_loader.host_roles({**merged, "roles": ["nginx"]})
    return role_loader.with_exports(roles, merged, HostFacts())[role]


def by_path(resources: list) -> dict:
    return {r.path: r for r in resources if isinstance(r, File | Absent | Directory)}


def pool_lines(**overrides) -> list[str]:
    return php.render_pool(given("backend_php", **overrides)).decode().splitlines()


def site_lines(**overrides) -> list[str]:
    text = nginx.render_site(given("nginx", **overrides), FACTS).decode()
    return [line.strip() for line in text.splitlines()]


# --- without app_src: as before ---------------------------------------------------------------


def test_without_app_src_the_role_wants_what_it_wanted_before():
    resources = php.resources(given("backend_php"), FACTS)
    files = by_path(resources)
    assert [r for r in resources if isinstance(r, Packages)] == [Packages(("php-fpm",))]
    assert isinstance(files[ENV_INCLUDE], Absent)  # an app's environment, gone with the app
    assert not [p for p in files if p.startswith("/srv/api/")]
    assert "/srv/api-php/index.php" in files
    assert "-/srv/api/shared" not in files[DROP_IN].content.decode()


def test_without_app_src_the_pool_opens_the_builtin_directory_only():
    lines = pool_lines()
    assert "php_admin_value[open_basedir] = /srv/api-php/" in lines
    assert not [line for line in lines if line.startswith("env[")]


def test_without_app_src_the_site_runs_the_builtin_front_controller():
    lines = site_lines()
    assert "fastcgi_param SCRIPT_FILENAME /srv/api-php/index.php;" in lines
    assert not [line for line in lines if "realpath_root" in line or line.startswith("root ")]


# --- with app_src -----------------------------------------------------------------------------


def test_with_an_app_composer_is_installed_and_shared_dirs_belong_to_the_pool_user():
    resources = php.resources(given("backend_php", **APP), FACTS)
    files = by_path(resources)
    assert [r for r in resources if isinstance(r, Packages)] == [Packages(("php-fpm", "composer"))]
    for name in ("var", "storage"):
        shared = files[f"/srv/api/shared/{name}"]
        assert (shared.owner, shared.group, shared.mode) == ("api-php", "api-php", 0o750)


def test_with_an_app_the_sandbox_lets_php_fpm_write_the_shared_dirs_only():
    drop_in = by_path(php.resources(given("backend_php", **APP), FACTS))[DROP_IN]
    writable = next(x for x in drop_in.content.decode().splitlines() if x.startswith("ReadWrite"))
    assert "-/srv/api/shared" in writable.split()
    assert "/srv/api/releases" not in writable and "/srv/api/current" not in writable


def test_with_an_app_the_pool_opens_the_releases_and_the_shared_dirs():
    lines = pool_lines(**APP)
    assert "php_admin_value[open_basedir] = /srv/api/releases/:/srv/api/shared/" in lines
    assert "clear_env = yes" in lines


def test_every_pool_reload_lets_requests_finish_and_opcache_skips_stat():
    for lines in (pool_lines(), pool_lines(**APP)):
        assert lines.index("[global]") < lines.index("[api]")
        assert "process_control_timeout = 30s" in lines
        assert "php_admin_flag[opcache.validate_timestamps] = off" in lines
    assert "php_admin_flag[opcache.validate_timestamps] = on" in pool_lines(
        php_opcache_validate_timestamps=True
    )
    assert "process_control_timeout = 5m" in pool_lines(php_request_timeout="5m")


def test_the_pool_leaves_opcache_enable_alone():
    """opcache is on in FPM by default; php_admin_flag[opcache.enable] made every worker log
    "Zend OPcache can't be temporary enabled" as it started (seen on the lab)."""
    assert not [x for x in pool_lines(**APP) if "opcache.enable" in x and not x.startswith(";")]


def test_with_an_app_nginx_resolves_current_per_request():
    lines = site_lines(**APP)
    assert "root /srv/api/current;" in lines
    assert "fastcgi_param SCRIPT_FILENAME $realpath_root/lib/Request.class.php;" in lines
    assert "fastcgi_param DOCUMENT_ROOT $realpath_root;" in lines
    # after fastcgi_params' own DOCUMENT_ROOT ($document_root, the link): the later one wins
    assert lines.index("include fastcgi_params;") < lines.index(
        "fastcgi_param DOCUMENT_ROOT $realpath_root;"
    )


@pytest.mark.parametrize(
    "bad", ["/etc/passwd.php", "../x.php", "lib/../../x.php", "index.phtml", "a b.php", ".x.php"]
)
def test_a_front_controller_outside_the_release_is_refused(bad):
    with pytest.raises(BadInput, match="php_front_controller must be a .php file relative"):
        php.exports(given("backend_php", **{**APP, "php_front_controller": bad}), FACTS)


def test_the_schema_refuses_the_same_front_controllers():
    from mtls_deploy import schema

    spec = schema.role_schema("backend_php")["php_front_controller"]
    assert schema.check_value("lib/Request.class.php", spec) == "lib/Request.class.php"
    with pytest.raises(ValueError, match="a .php file relative to the release"):
        schema.check_value("../x.php", spec)


# --- the environment --------------------------------------------------------------------------


def test_the_environment_is_a_root_only_secret_include_that_reloads_the_pool(monkeypatch):
    monkeypatch.setenv("ORDERS_TOKEN_SOURCE", "s3cr3t-from-env")
    environment = {"ORDERS_GREETING": "hello", "ORDERS_TOKEN": {"env": "ORDERS_TOKEN_SOURCE"}}
    v = given("backend_php", **APP, app_environment=environment)
    include = by_path(php.resources(v, FACTS))[ENV_INCLUDE]
    assert (include.mode, include.owner, include.group, include.secret) == (
        0o600,
        "root",
        "root",
        True,
    )
    assert (include.validate, include.notify) == ("php-fpm", ("restart backend",))
    assert include.content.decode().splitlines()[1:] == [
        "[api]",
        'env[ORDERS_GREETING] = "hello"',
        'env[ORDERS_TOKEN] = "s3cr3t-from-env"',
    ]
    assert "s3cr3t" not in php.render_pool(v).decode()  # the 0644 pool holds no value


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ('a"b', r'env[X] = "a\"b"'),
        ("a\\b", r'env[X] = "a\\b"'),
        ("pa$$ ${HOME}", r'env[X] = "pa\$\$ \${HOME}"'),
        ("x;y=z #", 'env[X] = "x;y=z #"'),
    ],
)
def test_env_values_are_quoted_as_php_fpm_reads_them(value, line):
    assert php.env_value("X", value) == line


def test_a_value_php_fpm_would_read_as_a_variable_name_is_refused_without_showing_it():
    with pytest.raises(BadInput, match="TOKEN cannot start with") as refused:
        php.env_value("TOKEN", "$2y$10$hash")
    assert "2y" not in str(refused.value)


def test_a_missing_control_machine_variable_is_one_line(monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    v = given("backend_php", **APP, app_environment={"T": {"env": "NOT_SET_ANYWHERE"}})
    with pytest.raises(BadInput, match="NOT_SET_ANYWHERE, which is not set"):
        php.resources(v, FACTS)


def test_the_pool_reload_also_follows_the_app_roles_environment_file():
    reload = next(
        h for h in php.handlers(given("backend_php"), FACTS) if h.name == "restart backend"
    )
    assert "app environment changed" in reload.listen


# --- the release hook -------------------------------------------------------------------------


def context(files=("lib/Request.class.php", "composer.json"), rollback=False) -> ReleaseContext:
    release = "/srv/api/releases/20261130T081500Z-1a2b3c4d5e6f"
    return ReleaseContext(
        api_name="api", root="/srv/api", release=release,
        build_dir=release if rollback else f"{release}.partial",
        release_id="20261130T081500Z-1a2b3c4d5e6f", current="/srv/api/current", previous=None,
        shared_root="/srv/api/shared", shared=("var",),
        env_file="/etc/mtls-deploy/api/app.env", files=frozenset(files), rollback=rollback,
    )  # fmt: skip


def test_the_hook_builds_with_composer_checks_the_front_controller_and_reloads_the_pool():
    steps = php.release(given("backend_php", **APP), FACTS, context())
    assert steps.user == "api-php"
    [[(shell, _, script, _)]] = steps.build
    assert shell == "sh" and "composer install --no-dev" in script
    [[lint]] = steps.check
    assert lint[-1] == "lib/Request.class.php" and "php -d" in lint[2]
    [[reload]] = steps.activate
    assert reload == ("sh", "-c", php.RELOAD_FPM, "php-fpm", "8.2")
    assert "systemctl reload-or-restart" in php.RELOAD_FPM  # starts a stopped php-fpm too
    assert steps.start == () and steps.retire == ()


def test_without_composer_json_nothing_is_built():
    steps = php.release(given("backend_php", **APP), FACTS, context(files=("index.php",)))
    assert steps.build == ()
    assert steps.check != ()


def test_without_facts_the_hook_reloads_the_newest_php_fpm_on_the_host():
    [[reload]] = php.release(given("backend_php", **APP), HostFacts(), context()).activate
    assert reload == ("sh", "-c", php.NEWEST_FPM + php.RELOAD_FPM, "php-fpm")


@pytest.mark.parametrize(
    ("installed", "out", "err"),
    [
        (["php-fpm8.2", "php-fpm8.4", "php-fpm8.10"], "reload 8.10\n", ""),
        ([], "", "php-fpm is not installed: run inv provision first\n"),
    ],
)
def test_the_newest_php_fpm_is_found_by_its_binary(tmp_path, installed, out, err):
    for name in installed:
        (tmp_path / name).touch()
    script = php.NEWEST_FPM.replace("/usr/sbin/", f"{tmp_path}/") + 'echo "reload $1"'
    done = subprocess.run(["sh", "-c", script, "x"], capture_output=True, text=True)
    assert (done.stdout, done.stderr) == (out, err)


# --- the scripts the hook runs, with stand-ins for composer and php ---------------------------

COMPOSER_EXCEPTION = """Loading composer repositories with package information

In RemoteFilesystem.php line 476:

  The "https://repo.packagist.org/packages.json" file could not be downloaded: getaddrinfo failed
  Failed to open stream: getaddrinfo failed

install [--prefer-source] [--dry-run] [--] [<packages>...]
"""
COMPOSER_PROBLEM = """Updating dependencies
Your requirements could not be resolved to an installable set of packages.

  Problem 1
    - Root composer.json requires acme/missing ^1, it could not be found in any version.
    - Another line.

Running update with --no-dev does not mean require-dev is ignored.
"""


def run_script(tmp_path: Path, script: str, args: list[str], tool: str, output: str, code: int):
    """``script`` under sh with a stand-in ``tool`` on PATH that prints ``output`` to stderr and
    exits ``code``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stand_in = bin_dir / tool
    stand_in.write_text(f"#!/bin/sh\ncat >&2 <<'EOF'\n{output}EOF\nexit {code}\n")
    stand_in.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(["sh", "-c", script, "x", *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path)  # fmt: skip


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        (COMPOSER_EXCEPTION, 'The "https://repo.packagist.org/packages.json" file could not be'),
        (COMPOSER_PROBLEM, "Root composer.json requires acme/missing ^1, it could not be found"),
        ("Something odd\n\n", "Something odd"),
    ],
)
def test_a_failing_composer_install_says_why_in_its_last_line(tmp_path, output, reason):
    done = run_script(tmp_path, php.COMPOSER_INSTALL, [], "composer", output, 1)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"composer install failed: {reason}")


def test_a_passing_composer_install_is_quiet(tmp_path):
    done = run_script(tmp_path, php.COMPOSER_INSTALL, [], "composer", "Generating autoload\n", 0)
    assert (done.returncode, done.stderr) == (0, "")


def test_a_missing_front_controller_is_named(tmp_path):
    done = run_script(tmp_path, php.LINT_FRONT_CONTROLLER, ["lib/Request.class.php"], "php", "", 0)
    assert done.returncode == 1
    assert done.stderr.strip() == "php_front_controller lib/Request.class.php is not in the release"


def test_php_lint_runs_on_the_front_controller(tmp_path):
    (tmp_path / "index.php").write_text("<?php\n")
    error = "PHP Parse error:  syntax error, unexpected end of file in index.php on line 2\n"
    done = run_script(tmp_path, php.LINT_FRONT_CONTROLLER, ["index.php"], "php", error, 255)
    assert done.returncode == 255
    assert done.stderr.strip().splitlines()[-1] == error.strip()
    assert "php -d display_errors=stderr -d log_errors=0 -l" in php.LINT_FRONT_CONTROLLER
