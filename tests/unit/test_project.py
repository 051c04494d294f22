"""The project directory: $MTLS_DEPLOY_PROJECT, else the nearest parent holding inventory/."""

from pathlib import Path

import pytest

from mtls_deploy.errors import UserError
from mtls_deploy.project import project_dir, project_path


@pytest.fixture
def project(tmp_path, monkeypatch):
    """``tmp_path/api`` with ``inventory/`` and ``docs/guide/``; no $MTLS_DEPLOY_PROJECT."""
    monkeypatch.delenv("MTLS_DEPLOY_PROJECT", raising=False)
    root = tmp_path / "api"
    (root / "inventory").mkdir(parents=True)
    (root / "docs" / "guide").mkdir(parents=True)
    return root


def test_the_current_directory_when_it_holds_inventory(project, monkeypatch):
    monkeypatch.chdir(project)
    assert project_dir() == project


def test_the_nearest_parent_holding_inventory(project, monkeypatch):
    monkeypatch.chdir(project / "docs" / "guide")
    assert project_dir() == project
    assert project_path("pki") == project / "pki"


def test_the_nearest_one_wins(project, monkeypatch):
    inner = project / "docs" / "guide"
    (inner / "inventory").mkdir()
    monkeypatch.chdir(inner)
    assert project_dir() == inner


def test_a_file_named_inventory_is_not_a_project(project, monkeypatch):
    (project / "docs" / "inventory").write_text("not a directory")
    monkeypatch.chdir(project / "docs" / "guide")
    assert project_dir() == project


def test_the_environment_variable_wins(project, tmp_path, monkeypatch):
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setenv("MTLS_DEPLOY_PROJECT", str(other))
    assert project_dir() == other
    assert project_path("dist") == other / "dist"


def test_an_environment_variable_that_is_no_directory_is_one_clear_error(project, monkeypatch):
    monkeypatch.setenv("MTLS_DEPLOY_PROJECT", str(project / "nowhere"))
    with pytest.raises(UserError, match=r"MTLS_DEPLOY_PROJECT=.*/nowhere is not a directory"):
        project_dir()


def test_no_project_directory_says_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.delenv("MTLS_DEPLOY_PROJECT", raising=False)
    assert not any((folder / "inventory").is_dir() for folder in tmp_path.parents)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as raised:
        project_dir()
    assert str(raised.value) == (
        f"no project directory: neither {tmp_path} nor a parent holds inventory/; cd into your "
        "project (the directory with inventory/), set MTLS_DEPLOY_PROJECT or give mtls-deploy "
        "--project DIR"
    )


def test_absolute_and_home_paths_are_kept(project, monkeypatch):
    monkeypatch.chdir(project / "docs")
    assert project_path("/etc/ssh/known_hosts") == Path("/etc/ssh/known_hosts")
    assert project_path("~/.ssh/id_ed25519") == Path("~/.ssh/id_ed25519")
    assert project_path(".lab/id_ed25519") == project / ".lab" / "id_ed25519"


def test_the_default_known_hosts_is_the_projects(project, monkeypatch):
    from mtls_deploy.connection import SshTarget

    monkeypatch.chdir(project / "docs")
    assert SshTarget.from_vars("api1", {}).known_hosts == project / "inventory" / "known_hosts"
