"""The installed command (mtls_deploy/program.py): Invoke's Program with ``--project DIR``, the
same tasks as ``inv``; where the tool finds its own roles and templates; the maintain timer's
command when installed; and the split, hashed locks."""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from invoke import Collection

from mtls_deploy import program as program_module
from mtls_deploy import project
from mtls_deploy.maintain import timer

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements"


@pytest.fixture
def run(capsys, monkeypatch):
    """``mtls-deploy ARGS`` in this process: (exit status, stdout, stderr); the project
    variable is put back afterwards (``--project`` sets it)."""
    monkeypatch.setenv(project.PROJECT_ENV, "placeholder")
    monkeypatch.delenv(project.PROJECT_ENV)

    def mtls_deploy(*argv: str) -> tuple[int, str, str]:
        code = 0
        try:
            program_module.program.run(["mtls-deploy", *argv])
        except SystemExit as done:
            code = done.code or 0
        out, err = capsys.readouterr()
        return code, out, err

    return mtls_deploy


def make_project(folder: Path, host: str) -> Path:
    """A project directory whose inventory has one host, ``host``."""
    (folder / "inventory").mkdir(parents=True)
    (folder / "inventory" / "hosts.yml").write_text(
        f"all:\n  children:\n    api:\n      hosts:\n        {host}: {{ansible_host: 127.0.0.1}}\n"
    )
    return folder


def inventory_hosts(out: str) -> set[str]:
    return {host for hosts in json.loads(out).values() for host in hosts}


def test_project_flag_chooses_the_project_from_anywhere(run, tmp_path, monkeypatch):
    chosen = make_project(tmp_path / "api", "flagged")
    monkeypatch.chdir(tmp_path)  # no inventory/ here or above
    code, out, err = run("--project", str(chosen), "inventory", "--json")
    assert (code, err) == (0, "")
    assert inventory_hosts(out) == {"flagged"}


def test_project_flag_beats_the_variable_and_the_current_directory(run, tmp_path, monkeypatch):
    chosen = make_project(tmp_path / "chosen", "flagged")
    monkeypatch.chdir(make_project(tmp_path / "here", "here"))
    monkeypatch.setenv(project.PROJECT_ENV, str(make_project(tmp_path / "env", "from-env")))
    code, out, _ = run("--project", str(chosen), "inventory", "--json")
    assert code == 0
    assert inventory_hosts(out) == {"flagged"}


def test_without_the_flag_the_variable_then_the_nearest_parent(run, tmp_path, monkeypatch):
    here = make_project(tmp_path / "here", "here")
    (here / "docs").mkdir()
    monkeypatch.chdir(here / "docs")
    assert inventory_hosts(run("inventory", "--json")[1]) == {"here"}
    monkeypatch.setenv(project.PROJECT_ENV, str(make_project(tmp_path / "env", "from-env")))
    assert inventory_hosts(run("inventory", "--json")[1]) == {"from-env"}


def test_project_flag_naming_no_directory_is_one_line(run, tmp_path):
    code, out, err = run("--project", str(tmp_path / "nowhere"), "inventory")
    assert (code, out) == (1, "")
    assert err == (
        f"error: --project {tmp_path}/nowhere is not a directory: give your project directory "
        "(the one with inventory/), or leave --project out to use the current directory's "
        "project\n"
    )


def test_help_names_the_project_flag(run):
    code, out, _ = run("--help")
    assert code == 0
    assert re.search(r"--project=STRING\s+the project directory", out)


def test_the_same_tasks_as_inv_in_a_checkout(inv_program):
    assert project.checkout() == ROOT
    ours = program_module.namespace().task_names
    assert ours == inv_program.namespace.task_names
    assert "provision" in ours and "pki.init" in ours and "bench" in ours


def test_installed_it_lists_no_bench(monkeypatch):
    """bench/ does not ship: the installed command has no task that could only fail."""
    monkeypatch.setattr(program_module, "checkout", lambda: None)
    names = program_module.namespace().task_names
    assert "bench" not in names and "provision" in names
    assert "bench" in Collection.from_module(program_module.tasks).task_names  # inv's untouched


def test_package_data_is_the_checkouts_folder_in_a_checkout():
    assert project.package_data("roles") == ROOT / "roles"
    assert project.package_data("templates") == ROOT / "templates"


def test_package_data_is_the_shipped_copy_when_installed(tmp_path, monkeypatch):
    """A wheel puts roles/ and templates/ inside the package (pyproject.toml)."""
    package = tmp_path / "site-packages" / "mtls_deploy"
    (package / "_roles").mkdir(parents=True)
    (package / "_templates").mkdir()
    monkeypatch.setattr(project, "PACKAGE", package)
    assert project.package_data("roles") == package / "_roles"
    assert project.package_data("templates") == package / "_templates"
    assert project.checkout() is None  # no tasks.py beside site-packages/mtls_deploy


def test_the_timer_runs_the_installed_program_when_installed(tmp_path):
    job = timer.Job("root", tmp_path, tmp_path / "secret", Path(sys.executable), tool=None)
    line = timer.command(job)
    assert line == f'"{sys.executable}" -m mtls_deploy.program maintain'
    # the line runs as written (sh), from anywhere the package is importable
    done = subprocess.run(["sh", "-c", line + " --help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Usage: mtls-deploy [--core-opts] maintain" in done.stdout


def test_the_timer_runs_the_checkouts_tasks_in_a_checkout(tmp_path):
    job = timer.Job("root", tmp_path, tmp_path / "secret", Path(sys.executable))
    assert job.tool == ROOT
    assert timer.command(job) == f'"{sys.executable}" -m invoke --search-root "{ROOT}" maintain'


# --- the locks: runtime apart from the development tools, every pin hashed --------------------


def pins(lock: Path) -> dict[str, str]:
    """``{name: version}`` of a pip-compile lock, asserting that each pin carries hashes."""
    text = lock.read_text()
    found = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\\n\s+--hash=sha256:", text, re.M))
    pinned = re.findall(r"^[A-Za-z0-9_.-]+==", text, re.M)
    assert len(found) == len(pinned), f"{lock.name}: a pin without --hash"
    return {name.lower().replace("_", "-"): version for name, version in found.items()}


def dependency_names(specs: list[str]) -> set[str]:
    return {re.match(r"[A-Za-z0-9_.-]+", s).group().lower() for s in specs}


def test_the_runtime_lock_pins_every_dependency_and_no_dev_tool():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = pins(REQUIREMENTS / "runtime.lock")
    assert dependency_names(meta["dependencies"]) <= runtime.keys()
    assert not dependency_names(meta["optional-dependencies"]["dev"]) & runtime.keys()


def test_the_dev_lock_pins_the_tools_at_the_runtime_versions():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime, dev = pins(REQUIREMENTS / "runtime.lock"), pins(REQUIREMENTS / "dev.lock")
    assert dependency_names(meta["optional-dependencies"]["dev"]) <= dev.keys()
    assert {n: v for n, v in dev.items() if n in runtime} == {
        n: runtime[n] for n in dev.keys() & runtime.keys()
    }
