"""The manifest on a real host: provisioned with the PHP backend, the host's manifest lists what
backend_php put there; switched to the Python backend, the next provision takes PHP's pool, app
directory, user and unit drop-in away and stops PHP-FPM; its packages stay (still recorded, for
unprovision --packages), with Debian's www pool back as php8.2-fpm ships it and none of their
units enabled (PHP's session-cleaning timer neither); the Python backend answers, and the runs
after that change nothing. A no-op run stays one round trip."""

import json
import shlex

import pytest

from mtls_deploy.facts import MANIFEST

from .conftest import ApiHost, lab_world, needs_lab

pytestmark = [*needs_lab, pytest.mark.slow]

# Its own name and ports (other modules use 2201-2271 and 2291-2299, 8441-8481 and 8499).
HOST = ApiHost("swap1", 2281, 8491, "php")
POOL = "/etc/php/8.2/fpm/pool.d/api.conf"
APP_DIR = "/srv/api-php"
DROP_IN_DIR = "/etc/systemd/system/php8.2-fpm.service.d"
DROP_IN = f"{DROP_IN_DIR}/hardening.conf"
EMPTY = ("directories", "files", "units", "users")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with lab_world(tmp_path_factory, [HOST], name="Manifest Test") as made:
        yield made


def on_host(world, command: str) -> str:
    done = world.sudo(HOST.name, command)
    assert done.returncode == 0, (command, done.stderr)
    return done.stdout


def recorded(world) -> dict:
    return json.loads(on_host(world, f"cat {MANIFEST}"))["roles"]


def changed(result) -> list[tuple[str, str]]:
    return [(s.kind, s.name) for s in result.steps if s.changed]


def test_the_php_backend_s_files_directory_user_and_unit_are_recorded(world):
    result = world.provision(HOST.name)
    assert not result.failed, [s for s in result.steps if s.status == "failed"]
    php = recorded(world)["backend_php"]
    assert POOL in php["files"] and DROP_IN in php["files"]
    assert APP_DIR in php["directories"] and DROP_IN_DIR in php["directories"]
    assert php["users"] == ["api-php"] and php["units"] == ["php8.2-fpm"]
    assert php["packages"] == ["php-fpm"]  # missing before our apt-get
    found = on_host(world, f"stat -c '%U:%G %a' {MANIFEST} /var/lib/mtls-deploy")
    assert found.split("\n")[:2] == ["root:root 644", "root:root 755"]


def test_a_no_op_run_is_one_round_trip_and_leaves_the_manifest_as_it_was(world):
    before = on_host(world, f"sha256sum {MANIFEST}; stat -c %Y {MANIFEST}")
    world.provision(HOST.name)  # fills the fact cache with facts that hold the manifest
    result = world.provision(HOST.name)
    assert result.recap()["changed"] == 0 and not result.failed
    assert result.data["ssh_channels"] == 1
    assert on_host(world, f"sha256sum {MANIFEST}; stat -c %Y {MANIFEST}") == before


def test_switching_to_python_takes_away_what_php_had_put_there(world):
    result = world.provision(HOST.name, backend="python")
    assert not result.failed, [s for s in result.steps if s.status == "failed"]
    done = changed(result)
    for step in [("unit", "php8.2-fpm"), ("file", POOL), ("directory", APP_DIR)]:
        assert step in done, done
    assert ("user", "api-php") in done and ("manifest", MANIFEST) in done
    assert world.sudo(HOST.name, "systemctl is-enabled php8.2-fpm").stdout.strip() == "disabled"
    assert world.sudo(HOST.name, "systemctl is-active php8.2-fpm").stdout.strip() == "inactive"
    gone = [POOL, APP_DIR, DROP_IN, DROP_IN_DIR]
    assert on_host(world, " ; ".join(f"test -e {p} && echo {p} || true" for p in gone)) == ""
    assert world.sudo(HOST.name, "getent passwd api-php").returncode == 2
    on_host(world, "dpkg-query -W php8.2-fpm")  # packages stay (unprovision --packages)
    assert ("conffiles", "php8.2-fpm") in done and ("unit", "phpsessionclean.timer") in done
    assert on_host(world, "dpkg --verify php8.2-fpm php-common; test -f /etc/php/8.2/fpm/pool.d/www.conf && echo back") == "back\n"  # fmt: skip
    enabled = on_host(world, "systemctl list-unit-files --state=enabled --no-legend 'php*'; true")
    assert enabled == "" and "php-fpm" not in on_host(world, "ps -eo comm")
    code, body = world.curl(HOST.name)
    assert code == 200 and body["verified"] == "SUCCESS", body


def test_after_the_switch_the_manifest_lists_no_php_and_nothing_changes(world):
    roles = recorded(world)
    assert "backend_python" in roles
    assert roles["backend_php"] == {"packages": ["php-fpm"], **dict.fromkeys(EMPTY, [])}
    assert world.provision(HOST.name, check=True, backend="python").recap()["changed"] == 0
    again = world.provision(HOST.name, backend="python")
    assert again.recap()["changed"] == 0 and not again.failed, changed(again)


def test_a_damaged_manifest_stops_the_host_in_one_line_and_changes_nothing(world):
    from mtls_deploy.errors import UserError
    from mtls_deploy.provision import RunOptions, provision_host

    good = on_host(world, f"cat {MANIFEST}")
    on_host(world, f"printf '{{broken' > {MANIFEST}")
    try:
        with pytest.raises(UserError, match=f"^{MANIFEST} on the host cannot be read") as caught:
            provision_host(world.host(HOST.name, backend="python"), RunOptions())
        assert on_host(world, f"cat {MANIFEST}") == "{broken"  # nothing applied
    finally:
        on_host(world, f"printf '%s' {shlex.quote(good)} > {MANIFEST}")
    assert "\n" not in str(caught.value)
    assert world.provision(HOST.name, backend="python").recap()["changed"] == 0
