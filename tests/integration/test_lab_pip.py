"""pip inside a lab host works as on the control machine (issue 12): the lab binds this machine's
pip settings, constraints file, CA bundle and local mirrors read-only into the container
(mtls_deploy/lab/package_index.py). Host py-pip (SSH 127.0.0.1:2341), a bare lab host of this
module's own."""

import os
import shlex

import pytest

from mtls_deploy import lab
from mtls_deploy.connection import Remote, SshTarget
from mtls_deploy.lab.package_index import (
    container_index,
    local_path,
    read_pip_settings,
    user_home,
)

from .conftest import ROOT, needs_lab

pytestmark = needs_lab

PIP_HOST = lab.LabHost("py-pip", "127.0.0.1", 2341, "deploy", sudo=True)
VENV = "/tmp/lab-pip-venv"


def host_vars() -> dict:
    return {
        "ansible_host": PIP_HOST.address,
        "ansible_port": PIP_HOST.ssh_port,
        "ansible_user": PIP_HOST.user,
        "ansible_become": True,
        "ansible_ssh_private_key_file": str(ROOT / ".lab" / "id_ed25519"),
        "ssh_known_hosts_file": str(ROOT / ".lab" / "known_hosts"),
    }


@pytest.fixture(scope="module")
def host():
    """py-pip booted fresh, with python3-venv installed (as the python role would)."""
    lab.reset([PIP_HOST], ROOT / ".lab")
    try:
        with Remote(SshTarget.from_vars(PIP_HOST.name, host_vars())) as connection:
            install = "apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null"
            connection.run(install, sudo=True, check=True, timeout=600)
            yield connection
    finally:
        lab.down([PIP_HOST])


@pytest.fixture(scope="module")
def here():
    """This machine's pip settings as a lab host gets them."""
    return container_index(read_pip_settings(os.environ, user_home()), os.path.exists)


@pytest.fixture(scope="module")
def flask_install(host):
    """``pip install flask`` in a new virtualenv, as the unprivileged login user."""
    command = f"python3 -m venv {VENV} && {VENV}/bin/pip install flask 2>&1"
    return host.run(command, check=True, timeout=300).stdout


def test_pip_installs_flask_in_a_virtualenv_as_an_unprivileged_user(host, flask_install):
    version = host.run(f"{VENV}/bin/python -c 'import flask; print(flask.__name__)'", check=True)
    assert version.stdout.strip() == "flask"
    assert "Successfully installed" in flask_install


def test_pip_inside_reads_this_machines_settings(host, here, flask_install):
    assert here.pip_conf, "this machine sets nothing for pip: the test proves nothing here"
    inside = host.run(f"{VENV}/bin/pip config list", check=True).stdout
    for line in here.pip_conf.splitlines():
        if " = " in line:
            option, value = line.split(" = ", 1)
            assert f".{option}='{value}'" in inside, (option, inside)
    extra = read_pip_settings(os.environ, user_home()).get("global", {}).get("extra-index-url")
    for url in (extra or "").split():
        assert url in flask_install  # "Looking in indexes: https://pypi.org/simple, file://..."


def test_every_bound_path_is_there_read_only(host, here):
    mounts = host.run("cat /proc/self/mountinfo", check=True).stdout.splitlines()
    targets = {line.split()[4]: line.split()[5] for line in mounts}  # mount point: options
    for _, target in [*here.binds, ("", "/etc/pip.conf")]:
        assert targets.get(target, "").startswith("ro"), (target, targets.get(target))


def test_a_local_mirror_alone_serves_flask(host, here, flask_install):
    settings = read_pip_settings(os.environ, user_home()).get("global", {})
    mirrors = [u for u in settings.get("extra-index-url", "").split() if u.startswith("file:")]
    if not mirrors:
        pytest.skip("this machine has no local index mirror")
    assert os.path.isdir(local_path(mirrors[0]))
    download = (
        f"{VENV}/bin/pip download --no-deps --isolated --index-url {shlex.quote(mirrors[0])}"
        " -d /tmp/lab-pip-dl flask 2>&1 && ls /tmp/lab-pip-dl"
    )
    assert ".whl" in host.run(download, check=True, timeout=120).stdout


def test_the_hosts_own_ca_bundle_stays_its_own(host):
    """update-ca-certificates (the ACME lab trusts Pebble this way) still writes the bundle."""
    mounts = host.run("cat /proc/self/mountinfo", check=True).stdout.splitlines()
    assert "/etc/ssl/certs/ca-certificates.crt" not in [line.split()[4] for line in mounts]
    host.run("update-ca-certificates", sudo=True, check=True)
