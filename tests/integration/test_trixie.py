"""Debian 13 (trixie: nginx 1.26, PHP 8.4, Python 3.13) on a lab world of its own: API host
t13-api (SSH 2390, HTTPS 8590) and consumer t13-bob (SSH 2391), both ``lab_release: trixie``.
The representative subset of the Debian 12 suite: provision with the php backend, then switch
to python; after each, a second provision changes nothing, the smoke test passes, and the
services' sandboxes score as on Debian 12 (test_hardening.py's limits)."""

import json
import re

import pytest

from mtls_deploy import inventory, lab
from mtls_deploy.pki.store import PkiStore

from .conftest import (
    ApiHost,
    inv,
    needs_lab,
    pki_environment,
    provision_cleanly,
    run_on,
    write_api_consumer_inventory,
)

pytestmark = [*needs_lab, pytest.mark.slow]

API = ApiHost("t13-api", 2390, 8590)
CONSUMER, CONSUMER_PORT = "t13-bob", 2391
# (unit, highest exposure accepted): as test_hardening.py on Debian 12
EXPOSURE = {
    "php": [("php-fpm", 5.0), ("nginx.service", 5.0)],
    "python": [("api-python.service", 2.0), ("nginx.service", 5.0)],
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The trixie world, fresh hosts, its own PKI and t13-bob's client; stopped afterwards."""
    base = tmp_path_factory.mktemp("trixie-world")
    folder = write_api_consumer_inventory(
        base / "inventory", API, CONSUMER, CONSUMER_PORT, all_vars={"lab_release": "trixie"}
    )
    with pki_environment(base, "trixie-test"), pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTLS_DEPLOY_INVENTORY", str(folder))
        PkiStore().init(name="Trixie API", key_type="ec")
        hosts = lab.hosts_from_inventory(inventory.load(folder).select())
        lab.reset(hosts)
        try:
            yield folder
        finally:
            lab.down(hosts)


def converge(folder, backend: str) -> dict:
    """Provision t13-api with ``backend``, then again: the second run must change nothing."""
    first = provision_cleanly(folder, API.name, backend=backend)
    second = provision_cleanly(folder, API.name, backend=backend)
    changed = [f"{s.kind} {s.name}: {s.reason}" for s in second.steps if s.status == "changed"]
    return {"first": first, "changed_again": changed}


@pytest.fixture(scope="module")
def php(world):
    runs = converge(world, "php")
    inv("issue-client", "--name", CONSUMER)  # delivers t13-bob's bundle to t13-bob
    return runs


@pytest.fixture(scope="module")
def python(php, world):
    return converge(world, "python")


def smoke() -> dict:
    done = inv("smoke-test", "--json", check=False)
    report = json.loads(done.stdout)
    assert report["passed"] and done.returncode == 0, [
        c for c in report["cases"] if c["result"] != "pass"
    ]
    return report


def exposure(folder, unit: str) -> float:
    if unit == "php-fpm":  # php8.4-fpm.service on trixie
        listed = run_on(
            folder, API.name, "systemctl list-units --plain --no-legend 'php*-fpm.service'"
        )
        unit = listed.split()[0]
    out = run_on(folder, API.name, f"systemd-analyze security --no-pager {unit}", sudo=True)
    match = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", out)
    assert match, out
    return float(match.group(1))


def versions(folder) -> dict[str, str]:
    out = run_on(folder, API.name, "dpkg-query -W -f '${Package} ${Version}\\n' nginx 'php*-fpm'")
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def test_the_hosts_run_debian_13(world):
    for host in (API.name, CONSUMER):
        release = run_on(world, host, ". /etc/os-release; echo $ID $VERSION_ID").split()
        assert release == ["debian", "13"], host


def test_php_provisions_nginx_1_26_and_php_8_4_and_converges(php, world):
    found = versions(world)
    assert found["nginx"].startswith("1.26."), found
    assert found["php8.4-fpm"].startswith("8.4."), found
    assert php["changed_again"] == []


def test_smoke_test_passes_on_php(php):
    smoke()


@pytest.mark.parametrize(("unit", "highest"), EXPOSURE["php"])
def test_php_hardening_scores(php, world, unit, highest):
    assert exposure(world, unit) <= highest


def test_switch_to_python_converges(python):
    assert python["changed_again"] == []


def test_smoke_test_passes_on_python(python):
    smoke()


@pytest.mark.parametrize(("unit", "highest"), EXPOSURE["python"])
def test_python_hardening_scores(python, world, unit, highest):
    assert exposure(world, unit) <= highest


def test_a_system_we_do_not_support_is_refused_in_one_line(python, world):
    """The same host saying it is CentOS Stream 9: refused at fact time, before any change."""
    fake = "printf 'NAME=\"CentOS Stream\"\\nID=centos\\nVERSION_ID=9\\n'"
    run_on(world, API.name, f"mv /etc/os-release /etc/os-release.saved && {fake} > /etc/os-release",
           sudo=True)  # fmt: skip
    try:
        done = inv("provision", "--host", API.name, check=False)
    finally:
        run_on(world, API.name, "mv -f /etc/os-release.saved /etc/os-release", sudo=True)
    assert done.returncode == 2, done.stdout + done.stderr  # a failed host, as ansible-playbook
    assert (
        f"{API.name}  unsupported system (ID=centos VERSION_ID=9 in /etc/os-release): mtls-deploy"
        " provisions Debian 12 or 13 (Ubuntu 22.04 or 24.04 accepted, not tested)"
    ) in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
