"""Start-up stays cheap while the inventory grows (issue "Architecture"): checking the variables
of every host looks the roles up once, not once per variable of every host."""

from mtls_deploy import inventory, project, role_loader

FLEET = (
    "all:\n  children:\n    api:\n      vars: {backend: php}\n      hosts:\n        api[01:30]:\n"
)


def counted_project_dirs(monkeypatch) -> list:
    calls = []
    real = project.project_dir

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(project, "project_dir", counting)
    return calls


def test_thirty_hosts_find_the_project_directory_once(tmp_path, monkeypatch):
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "hosts.yml").write_text(FLEET)
    monkeypatch.chdir(tmp_path)
    calls = counted_project_dirs(monkeypatch)
    loaded = inventory.load(tmp_path / "inventory")
    assert len(loaded.select(["api*"])) == 30
    assert len(calls) < 30  # fewer than one a host; it was 1,794: every role lookup afresh


def test_outside_the_check_each_lookup_sees_the_folders_as_they_are(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inventory").mkdir()
    assert role_loader.role_folder("mine") is None
    (tmp_path / "roles" / "mine").mkdir(parents=True)
    (tmp_path / "roles" / "mine" / "role.py").write_text("")
    assert role_loader.role_folder("mine") == tmp_path / "roles" / "mine"
    with role_loader.pinned():
        assert role_loader.role_folder("mine") == tmp_path / "roles" / "mine"
        assert "mine" in role_loader.all_roles()
    assert role_loader._pinned is None
