"""Which roots a host has: an overlay is finished only once its ``lower`` file names the base
(an interrupted creation is made again); a full copy from before overlays still counts."""

import pytest

from mtls_deploy.lab.root import has_root, mount_root, remove_root
from mtls_deploy.lab.spec import paths_for


@pytest.fixture
def paths(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLS_DEPLOY_LAB_ROOT", str(tmp_path / "lab"))
    found = paths_for("api1")
    found.dir.mkdir(parents=True)
    return found


def test_no_root(paths):
    assert not has_root(paths)


def test_a_full_copy_from_before_overlays_is_a_root(paths):
    (paths.root / "etc").mkdir(parents=True)
    assert has_root(paths)
    mount_root(paths)  # nothing to mount for a copy


def test_an_overlay_without_its_lower_file_is_unfinished(paths):
    for folder in (paths.root, paths.upper, paths.work):
        folder.mkdir()
    assert not has_root(paths)
    paths.lower.write_text("/var/cache/mtls-deploy/base-bookworm-07492dde\n")
    assert has_root(paths)


def test_remove_root_deletes_upper_work_lower_and_settings(paths):
    for folder in (paths.root, paths.upper / "etc", paths.work):
        folder.mkdir(parents=True)
    paths.lower.write_text("/nowhere\n")
    paths.settings.write_text("{}")
    remove_root(paths)
    assert not any(p.exists() for p in (paths.root, paths.upper, paths.work, paths.lower))
    assert not paths.settings.exists() and not has_root(paths)


def test_an_overlay_whose_base_is_gone_asks_for_a_reset(paths, tmp_path):
    from mtls_deploy.errors import UserError

    for folder in (paths.root, paths.upper, paths.work):
        folder.mkdir()
    paths.lower.write_text(f"{tmp_path}/cache/base-bookworm-00000000\n")
    with pytest.raises(UserError) as error:
        mount_root(paths)
    assert str(error.value) == (
        f"{paths.root}: its base {tmp_path}/cache/base-bookworm-00000000 is gone:"
        " run `inv lab.reset` for this host"
    )
