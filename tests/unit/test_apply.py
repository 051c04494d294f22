"""The apply script is plain sh: these tests run it for real in a temporary directory,
with a stand-in validator, to prove that a refused change puts every old file back."""

import os
import subprocess

import pytest

from mtls_deploy import apply as applying
from mtls_deploy.facts import PathState
from mtls_deploy.operations import plan_absent, plan_file
from mtls_deploy.resources import Absent, File, Handler


def owner_of(path):
    import grp
    import pwd

    st = os.stat(path)
    return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name


@pytest.fixture
def site(tmp_path):
    """An existing 'site' file and a 'default' file, as on a host before provisioning."""
    (tmp_path / "site.conf").write_text("old site\n")
    (tmp_path / "default").write_text("default site\n")
    return tmp_path


def steps_for(folder, content: bytes):
    user, group = owner_of(folder)
    new = File(
        str(folder / "site.conf"),
        content,
        owner=user,
        group=group,
        validate="nginx",
        notify=("reload nginx",),
    )
    brand_new = File(
        str(folder / "new.conf"), b"brand new\n", owner=user, group=group, validate="nginx"
    )
    gone = Absent(str(folder / "default"), validate="nginx")
    return [
        plan_file(new, PathState("file", 0o644, user, group, "0" * 64)),
        plan_file(brand_new, PathState("absent")),
        plan_absent(gone, PathState("file", 0o644, user, group)),
    ]


def run(script: str, validator: str, monkeypatch):
    monkeypatch.setitem(applying.VALIDATORS, "nginx", validator)
    return subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True)


HANDLERS = [Handler("reload nginx", "echo reloaded")]


def test_valid_change_lands_and_runs_the_handler_once(site, monkeypatch):
    steps = steps_for(site, b"new site\n")
    monkeypatch.setitem(applying.VALIDATORS, "nginx", "true")
    result = run(applying.build_script(steps, HANDLERS), "true", monkeypatch)
    outcome = applying.parse_outcome(result.stdout, result.stderr)
    assert result.returncode == 0, result.stderr
    assert (site / "site.conf").read_text() == "new site\n"
    assert (site / "new.conf").read_text() == "brand new\n"
    assert not (site / "default").exists()
    assert outcome.done == {0, 1, 2} and outcome.handlers_done == ("reload nginx",)
    assert result.stdout.count("reloaded") == 1
    assert sorted(p.name for p in site.iterdir()) == ["new.conf", "site.conf"]  # no leftovers


def test_refused_change_restores_old_files_and_removes_new_ones(site, monkeypatch):
    steps = steps_for(site, b"broken site\n")
    validator = "echo 'nginx: [emerg] unknown directive \"brokn\" in site.conf:3' >&2; false"
    monkeypatch.setitem(applying.VALIDATORS, "nginx", validator)
    result = run(applying.build_script(steps, HANDLERS), validator, monkeypatch)
    assert result.returncode == 3
    assert (site / "site.conf").read_text() == "old site\n"
    assert (site / "default").read_text() == "default site\n"
    assert not (site / "new.conf").exists()
    assert "reloaded" not in result.stdout  # a refused config is never reloaded
    settled = applying.settle(steps, applying.parse_outcome(result.stdout, result.stderr), 3)
    assert settled[-1].kind == "validate" and "[emerg] unknown directive" in settled[-1].reason
    assert all(s.status == "failed" and s.reason.startswith("reverted") for s in settled[:3])
    assert sorted(p.name for p in site.iterdir()) == ["default", "site.conf"]


def test_a_failing_step_restores_validated_files_written_before_it(site, monkeypatch):
    steps = steps_for(site, b"new site\n")
    steps[2].commands = ["echo 'rm: cannot remove: Permission denied' >&2", "false"]
    result = run(applying.build_script(steps, HANDLERS), "true", monkeypatch)
    assert result.returncode != 0
    assert (site / "site.conf").read_text() == "old site\n"
    assert not (site / "new.conf").exists()
    settled = applying.settle(
        steps, applying.parse_outcome(result.stdout, result.stderr), result.returncode
    )
    assert settled[2].status == "failed" and "Permission denied" in settled[2].reason


def test_truncated_content_is_never_renamed_into_place(site, monkeypatch):
    """A script cut mid-heredoc (a dropped connection) fails the checksum: the old file stays."""
    steps = steps_for(site, b"new site\n" * 100)
    script = applying.build_script(steps[:1], [])
    cut = script[: script.index("MTLS_DEPLOY_EOF\n", script.index("<<'MTLS_DEPLOY_EOF'") + 20) - 40]
    result = run(cut, "true", monkeypatch)
    assert result.returncode != 0
    assert (site / "site.conf").read_text() == "old site\n"


def test_handlers_are_deduplicated_and_ordered():
    a = plan_file(File("/x", b"1", notify=("restart backend", "reload nginx")), PathState("absent"))
    b = plan_file(File("/y", b"2", notify=("reload nginx",)), PathState("absent"))
    handlers = [
        Handler("reload nginx", "r", order=60),
        Handler("restart backend", "b", order=40),
        Handler("unused", "u"),
    ]
    chosen = applying.notified_handlers([a, b], handlers)
    assert [h.name for h in chosen] == ["restart backend", "reload nginx"]


def test_a_dropped_connection_mid_run_restores_validated_files(site, monkeypatch):
    """SIGHUP (sshd gone) after the first file: the trap puts the old site back."""
    steps = steps_for(site, b"new site\n")
    steps[1].commands = [f"kill -HUP $$; sleep 5; echo never > {site}/marker", *steps[1].commands]
    result = run(applying.build_script(steps, HANDLERS), "true", monkeypatch)
    assert result.returncode == 129
    assert (site / "site.conf").read_text() == "old site\n"
    assert not (site / "new.conf").exists() and not (site / "marker").exists()
    assert sorted(p.name for p in site.iterdir()) == ["default", "site.conf"]


def test_a_command_step_runs_in_order_and_notifies(tmp_path, monkeypatch):
    from mtls_deploy.operations import plan_command
    from mtls_deploy.resources import Command

    step = plan_command(
        Command(f"echo ran > {tmp_path}/out", creates=f"{tmp_path}/out", notify=("reload nginx",)),
        PathState("absent"),
        None,
    )
    result = run(applying.build_script([step], HANDLERS), "true", monkeypatch)
    assert result.returncode == 0 and (tmp_path / "out").read_text() == "ran\n"
    assert applying.parse_outcome(result.stdout, result.stderr).handlers_done == ("reload nginx",)
