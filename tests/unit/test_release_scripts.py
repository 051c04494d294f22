"""The release scripts (mtls_deploy/release/remote.py) run for real, as root, by sh on this
machine, in a scratch /srv-like directory: extract, shared links, build and check as an
unprivileged user, rename; the switch with its undo; pruning; and the probe read back."""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from mtls_deploy import apply
from mtls_deploy.release import plan, remote
from mtls_deploy.release.steps import ReleaseContext, ReleaseSteps
from mtls_deploy.release.transfer import tar_of
from mtls_deploy.release.tree import read_tree
from tests.unit.locks import holding

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the scripts chown and runuser: root")
USER = "nobody"
OLD, NEW = "20261130T080000Z-0a2b3c4d5e6f", "20261130T090000Z-1a2b3c4d5e6f"


@pytest.fixture
def host(monkeypatch):
    """A scratch 'host': <base>/srv/api with releases/ and shared/, readable by others (the
    build runs as nobody), and its own lock file (<base>/run/lock/...): removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="release-host-"))
    base.chmod(0o755)
    monkeypatch.setattr(apply, "HOST_LOCK", f"{base}/run/lock/mtls-deploy.lock")
    monkeypatch.setattr(apply, "LOCK_WAIT", 1)
    for folder in ("srv/api/releases", "srv/api/shared", "app"):
        (base / folder).mkdir(parents=True)
    (base / "app" / "index.php").write_text("<?php echo 1;")
    (base / "app" / "var").mkdir()
    (base / "app" / "var" / "from-the-tree").write_text("replaced by the shared link")
    yield base
    shutil.rmtree(base)


def ctx_for(base: Path, release_id: str, previous: str | None = None, rollback=False):
    root = f"{base}/srv/api"
    release = f"{root}/releases/{release_id}"
    return ReleaseContext(
        api_name="api", root=root, release=release,
        build_dir=release if rollback else f"{release}.partial", release_id=release_id,
        current=f"{root}/current", previous=f"{root}/releases/{previous}" if previous else None,
        shared_root=f"{root}/shared", shared=("var",), env_file=f"{base}/app.env",
        rollback=rollback,
    )  # fmt: skip


def sh(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True)


def upload(base: Path) -> str:
    path = base / "upload.tar"
    with tar_of(read_tree(base / "app")) as source:
        path.write_bytes(source.read())
    return str(path)


def install(base, release_id=NEW, **steps) -> subprocess.CompletedProcess:
    ctx = ctx_for(base, release_id)
    return sh(remote.install_script(ctx, ReleaseSteps(user=USER, **steps), upload(base)))


def test_install_builds_as_the_user_then_hands_the_release_to_root(host):
    built = (("sh", "-c", "id -un > built-by && touch var/state"),)
    done = install(host, build=(built,), check=((("test", "-f", "index.php"),),))
    assert done.returncode == 0, done.stderr
    release = host / "srv/api/releases" / NEW
    assert (release / "built-by").read_text() == "nobody\n"
    assert release.stat().st_uid == 0 and (release / "built-by").stat().st_uid == 0
    assert oct((release / "index.php").stat().st_mode & 0o777) == "0o644"
    assert os.readlink(release / "var") == f"{host}/srv/api/shared/var"
    shared = host / "srv/api/shared/var"
    assert (shared / "state").exists() and shared.stat().st_uid != 0  # the app's user's
    assert not (host / "upload.tar").exists() and not Path(f"{release}.partial").exists()


def test_a_failing_check_removes_the_partial_and_names_the_error(host):
    failing = (
        (
            "sh",
            "-c",
            "echo noise >&2; echo \"ModuleNotFoundError: No module named 'x'\" >&2; exit 1",
        ),
    )
    done = install(host, check=(failing,))
    assert done.returncode != 0
    assert remote.failed_phase(done.stdout) == "check"
    assert remote.last_line(done.stderr) == "ModuleNotFoundError: No module named 'x'"
    assert os.listdir(host / "srv/api/releases") == [] and not (host / "upload.tar").exists()


def test_the_build_never_runs_as_root_nor_sees_root_home(host):
    done = install(host, build=((("sh", "-c", 'test "$(id -u)" != 0 && test "$HOME" != /root'),),))
    assert done.returncode == 0, done.stderr


def make_release(base: Path, name: str) -> Path:
    release = base / "srv/api/releases" / name
    release.mkdir()
    return release


def switch(base, steps: ReleaseSteps, previous=None, rollback=False, prune=(), release_id=NEW):
    ctx = ctx_for(base, release_id, previous, rollback)
    before = ReleaseSteps(
        user=USER, activate=((("sh", "-c", "echo reactivated >> $0", f"{base}/log"),),)
    )
    return sh(remote.switch_script(ctx, steps, before, prune))


def current(base: Path) -> str:
    return os.readlink(base / "srv/api/current")


def test_the_switch_is_a_relative_link_and_prunes_before_retire(host):
    for name in (OLD, NEW, "20261130T070000Z-aaaaaaaaaaaa"):
        make_release(host, name)
    (host / "srv/api/current").symlink_to(f"releases/{OLD}")
    retire = (("sh", "-c", "ls $0 > $1", f"{host}/srv/api/releases", f"{host}/seen-by-retire"),)
    steps = ReleaseSteps(user=USER, retire=(retire,))
    done = switch(host, steps, OLD, prune=["20261130T070000Z-aaaaaaaaaaaa"])
    assert done.returncode == 0, done.stderr
    assert current(host) == f"releases/{NEW}"
    assert sorted(os.listdir(host / "srv/api/releases")) == [OLD, NEW]
    assert (host / "seen-by-retire").read_text().split() == [OLD, NEW]


def test_a_switch_removes_builds_a_killed_run_left_an_hour_ago(host):
    make_release(host, OLD), make_release(host, NEW)
    stale, fresh = (
        make_release(host, f"{OLD}.partial"),
        make_release(host, "20261130T100000Z-cccccccccccc.partial"),
    )
    os.utime(stale, (0, 0))
    (host / "srv/api/current").symlink_to(f"releases/{OLD}")
    assert switch(host, ReleaseSteps(user=USER), OLD).returncode == 0
    assert not stale.exists() and fresh.exists()


def test_a_failed_activate_switches_back_and_reactivates_the_previous(host):
    make_release(host, OLD), make_release(host, NEW)
    (host / "srv/api/current").symlink_to(f"releases/{OLD}")
    failing = ReleaseSteps(
        user=USER, activate=((("sh", "-c", "echo 'reload failed' >&2; exit 1"),),)
    )
    done = switch(host, failing, OLD)
    assert done.returncode == 1 and remote.failed_phase(done.stdout) == "activate"
    assert remote.last_line(done.stderr) == "reload failed"
    assert current(host) == f"releases/{OLD}" and (host / "log").read_text() == "reactivated\n"
    assert os.listdir(host / "srv/api/releases") == [OLD]


def test_a_failed_start_switches_nothing(host):
    make_release(host, OLD), make_release(host, NEW)
    (host / "srv/api/current").symlink_to(f"releases/{OLD}")
    done = switch(host, ReleaseSteps(user=USER, start=("exit 3",)), OLD)
    assert done.returncode == 1 and remote.failed_phase(done.stdout) == "start"
    assert current(host) == f"releases/{OLD}" and os.listdir(host / "srv/api/releases") == [OLD]


def test_a_failed_rollback_keeps_its_target(host):
    make_release(host, OLD), make_release(host, NEW)
    (host / "srv/api/current").symlink_to(f"releases/{NEW}")
    failing = ReleaseSteps(user=USER, activate=("exit 1",))
    done = switch(host, failing, NEW, rollback=True, release_id=OLD)
    assert done.returncode == 1 and current(host) == f"releases/{NEW}"
    assert sorted(os.listdir(host / "srv/api/releases")) == [OLD, NEW]


def test_the_probe_reads_back_what_the_scripts_made(host):
    assert plan.parse_probe(
        remote.split_probe(sh(remote.probe_script(f"{host}/srv/api")).stdout)[1]
    ) == plan.HostState(True)
    make_release(host, OLD), make_release(host, NEW), make_release(host, f"{NEW}.partial")
    (host / "srv/api/current").symlink_to(f"releases/{OLD}")
    done = sh(remote.probe_script(f"{host}/srv/api", ("dpkg",)))
    facts, lines = remote.split_probe(done.stdout)
    assert plan.parse_probe(lines) == plan.HostState(True, OLD, (OLD, NEW))
    assert "dpkg" in facts.packages
    assert plan.parse_probe(
        remote.split_probe(sh(remote.probe_script(f"{host}/nothing")).stdout)[1]
    ) == plan.HostState(False)


# --- one run at a time on a host ----------------------------------------------------------------


def held(base: Path, seconds: float) -> subprocess.Popen:
    """Another run holding the host's lock for ``seconds`` (flock(1), as the scripts take it)."""
    lock = Path(apply.HOST_LOCK)
    lock.parent.mkdir(parents=True, exist_ok=True)
    return holding(lock, ["sleep", str(seconds)])


def test_a_switch_while_another_run_holds_the_lock_waits_then_gives_up_in_one_line(host):
    make_release(host, OLD), make_release(host, NEW)
    (host / "srv/api/current").symlink_to(f"releases/{OLD}")
    holder = held(host, 5)
    try:
        started = time.monotonic()
        done = switch(host, ReleaseSteps(user=USER), OLD)
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == apply.BUSY_EXIT and remote.failed_phase(done.stdout) == "lock"
    assert done.stderr == (
        f"another mtls-deploy run holds {apply.HOST_LOCK} on this host (waited 1 s): "
        "run again once it is done\n"
    )
    assert 0.9 < waited < 4
    assert current(host) == f"releases/{OLD}" and os.listdir(host / "srv/api/releases") == [OLD]


def test_a_switch_waits_for_a_run_that_ends_within_the_wait_then_goes_on(host):
    make_release(host, OLD), make_release(host, NEW)
    (host / "srv/api/current").symlink_to(f"releases/{OLD}")
    holder = held(host, 0.4)
    done = switch(host, ReleaseSteps(user=USER), OLD)
    assert holder.wait() == 0
    assert done.returncode == 0, done.stderr
    assert current(host) == f"releases/{NEW}"


def test_the_lock_is_held_by_the_switch_until_it_ends(host):
    make_release(host, OLD), make_release(host, NEW)
    (host / "srv/api/current").symlink_to(f"releases/{OLD}")
    probe = ("sh", "-c", "flock -n -E 7 $0 true; echo $? > $1", apply.HOST_LOCK, f"{host}/seen")
    done = switch(host, ReleaseSteps(user=USER, activate=((probe,),)), OLD)
    assert done.returncode == 0, done.stderr
    assert (host / "seen").read_text() == "7\n"  # another taker was refused meanwhile


def test_a_switch_after_another_deploy_moved_current_stops_in_one_line(host):
    (
        make_release(host, OLD),
        make_release(host, NEW),
        make_release(host, "20261130T085000Z-bbbbbbbbbbbb"),
    )
    (host / "srv/api/current").symlink_to("releases/20261130T085000Z-bbbbbbbbbbbb")
    done = switch(host, ReleaseSteps(user=USER), OLD)
    assert done.returncode == 1 and remote.failed_phase(done.stdout) == "lock"
    assert remote.last_line(done.stderr) == (
        f"{host}/srv/api/current changed since this run looked (now "
        f"releases/20261130T085000Z-bbbbbbbbbbbb, was releases/{OLD}): another deploy or "
        "rollback ran meanwhile; run again"
    )
    assert current(host) == "releases/20261130T085000Z-bbbbbbbbbbbb"
    assert NEW not in os.listdir(host / "srv/api/releases")
    first = switch(host, ReleaseSteps(user=USER), None, release_id="20261130T085000Z-bbbbbbbbbbbb")
    assert (
        first.returncode == 1 and "(now releases/" in first.stderr and "was none)" in first.stderr
    )


def test_provision_s_apply_takes_the_same_lock(host):
    script = apply.build_script([], [])
    holder = held(host, 5)
    try:
        done = sh(script)
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == apply.BUSY_EXIT
    assert done.stderr.startswith(f"another mtls-deploy run holds {apply.HOST_LOCK} ")
    assert sh(script).returncode == 0  # free again
