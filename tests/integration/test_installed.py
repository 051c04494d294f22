"""The installed command, as a user outside the checkout gets it: a fresh virtualenv in a
temporary directory, the runtime lock (hashes checked) and ``pip install <checkout>``, then
``mtls-deploy --list`` and a whole run through the installed command in a project directory of
its own (its inventory, ``pki/`` and ``dist/``), found by ``--project``, by
``$MTLS_DEPLOY_PROJECT`` and by the nearest parent holding ``inventory/``: ``lab.reset``,
``pki.init``, ``provision``, ``issue-client`` (delivered), ``smoke-test``, the maintain timer's
command, and ``lab.down``.

Lab hosts of its own: pkg-api (SSH 2380, HTTPS 8580) and the consumer pkg-bob (SSH 2381).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, ApiHost, needs_lab, write_api_consumer_inventory

pytestmark = needs_lab

API = ApiHost("pkg-api", 2380, 8580)
CONSUMER, CONSUMER_PORT = "pkg-bob", 2381
PASSPHRASE = "installed-test"


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any MTLS_DEPLOY_* or PYTHONPATH (the checkout's
    settings must not leak into the installed command), the CA passphrase and ``extra`` set."""
    kept = {k: v for k, v in os.environ.items()
            if not k.startswith("MTLS_DEPLOY_") and k != "PYTHONPATH"}  # fmt: skip
    return {**kept, "MTLS_DEPLOY_CA_PASSPHRASE": PASSPHRASE, **extra}


def run(argv: list, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``argv`` from ``cwd`` with the clean environment; asserts that it succeeded."""
    done = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          env=clean_environment(**env), timeout=600)  # fmt: skip
    assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
    return done


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh virtualenv outside the checkout with the checkout installed (a wheel built by
    pip), its dependencies from requirements/runtime.lock with their hashes checked."""
    folder = tmp_path_factory.mktemp("installed") / "venv"
    assert ROOT not in folder.parents
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    pip = [folder / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run([*pip, "--require-hashes", "-r", ROOT / "requirements" / "runtime.lock"], folder)
    run([*pip, ROOT], folder)
    return folder


@pytest.fixture(scope="module")
def project(tmp_path_factory, venv) -> Path:
    """A project directory of the test's own: its inventory, its lab key and known_hosts
    (``.lab/``, relative paths as in the checkout's inventory); pkg-api and pkg-bob made fresh
    by the installed command's ``lab.reset``, stopped by its ``lab.down`` afterwards."""
    folder = tmp_path_factory.mktemp("project")
    write_api_consumer_inventory(folder / "inventory", API, CONSUMER, CONSUMER_PORT)
    (folder / "inventory" / "group_vars" / "all.yml").write_text(
        "ansible_ssh_private_key_file: .lab/id_ed25519\nssh_known_hosts_file: .lab/known_hosts\n"
    )
    lab_hosts = ["--host", f"{API.name},{CONSUMER}"]
    command = [venv / "bin" / "mtls-deploy", "--project", folder]
    run([*command, "lab.reset", *lab_hosts], tmp_path_factory.getbasetemp())
    try:
        yield folder
    finally:
        run([*command, "lab.down", *lab_hosts], tmp_path_factory.getbasetemp())


def test_the_package_and_its_roles_come_from_the_virtualenv(venv, tmp_path):
    code = (
        "import mtls_deploy, mtls_deploy.role_loader as r, mtls_deploy.templating as t;"
        "print(mtls_deploy.__file__, r.PACKAGE_ROLES, t.TEMPLATES_DIR, sep='\\n')"
    )
    package, roles, templates = run([venv / "bin/python", "-c", code], tmp_path).stdout.split()
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert Path(package).parent == site / "mtls_deploy"
    assert Path(roles) == site / "mtls_deploy" / "_roles"
    assert Path(templates) == site / "mtls_deploy" / "_templates"
    shipped = {p.parent.name for p in Path(roles).glob("*/role.py")}
    assert shipped == {p.parent.name for p in (ROOT / "roles").glob("*/role.py")}


def test_list_outside_any_project(venv, tmp_path):
    listed = run([venv / "bin/mtls-deploy", "--list"], tmp_path).stdout
    for name in ("provision", "pki.init", "issue-client", "smoke-test", "lab.up", "maintain"):
        assert f"  {name} " in listed, name
    assert "  bench " not in listed  # the benchmarks run from a checkout


def test_a_whole_run_through_the_installed_command(venv, project, tmp_path):
    command = venv / "bin" / "mtls-deploy"
    run([command, "--project", project, "pki.init", "--name", "Installed API"], tmp_path)
    assert (project / "pki").is_dir() and not (tmp_path / "pki").exists()
    provisioned = run([command, "provision", "--host", API.name], tmp_path,
                      MTLS_DEPLOY_PROJECT=str(project)).stdout  # fmt: skip
    assert API.name in provisioned
    (project / "docs" / "guide").mkdir(parents=True)  # the nearest parent holding inventory/
    run([command, "issue-client", "--name", CONSUMER], project / "docs" / "guide")
    assert (project / "dist" / CONSUMER / f"{CONSUMER}.crt").is_file()
    smoke = run([command, "--project", project, "smoke-test", "--host", API.name], tmp_path)
    assert "FAIL" not in smoke.stdout, smoke.stdout


def test_the_maintain_timer_runs_the_installed_command(venv, project, tmp_path):
    """After the whole run: the cron entry names the virtualenv's program, and runs."""
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE)
    secret.chmod(0o600)
    root = tmp_path / "root"
    run([venv / "bin/mtls-deploy", "--project", project, "maintain", "--install-timer",
         "--scheduler", "cron", "--root", root], tmp_path,
        MTLS_DEPLOY_CA_PASSPHRASE_FILE=str(secret))  # fmt: skip
    entry = (root / "etc/cron.d/mtls-deploy").read_text().strip().splitlines()[-1]
    command = entry.split(" ", 6)[6]  # five schedule fields, the user, then the command
    assert f'"{venv}/bin/python" -m mtls_deploy.program maintain' in command
    environment = {
        "MTLS_DEPLOY_PROJECT": str(project),
        "MTLS_DEPLOY_CA_PASSPHRASE_FILE": str(secret),
    }
    subprocess.run(["sh", "-c", command], env=clean_environment(**environment), timeout=300)
    log = (project / "maintain.log").read_text()
    assert "Traceback" not in log and API.name in log, log
