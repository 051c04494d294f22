"""inv maintain --install-timer: the schedule in both notations, the systemd units (checked
with systemd-analyze verify when it is installed) and the cron entry, and its refusals."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mtls_deploy.errors import BadInput, UserError
from mtls_deploy.maintain import timer

ENV = timer.PASSPHRASE_FILE_ENV


@pytest.mark.parametrize(
    ("every", "cron", "calendar"),
    [("1d", "17 3 * * *", "*-*-* 03:17:00"), ("6h", "17 */6 * * *", "0/6:17:00"),
     ("1h", "17 */1 * * *", "0/1:17:00"), ("15m", "*/15 * * * *", "*:0/15"),
     ("30m", "*/30 * * * *", "*:0/30")],
)  # fmt: skip
def test_every_reads_the_same_in_cron_and_in_systemd(every, cron, calendar):
    assert timer.schedule(every) == timer.Schedule(every, cron, calendar)


@pytest.mark.parametrize("every", ["7m", "5h", "2d", "90s", "45m", "daily", "0m"])
def test_a_schedule_cron_cannot_keep_is_one_line(every):
    with pytest.raises(BadInput, match=r"^--every .*"):
        timer.schedule(every)


@pytest.fixture
def secret_file(tmp_path, monkeypatch):
    path = tmp_path / "ca pass"  # a space: quoted in both files
    path.write_text("lab-only-passphrase\n")
    path.chmod(0o600)
    monkeypatch.setenv(ENV, str(path))
    return path


def test_refused_without_the_passphrase_file_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(UserError, match=f"^{ENV} is not set: an unattended run"):
        timer.install(tmp_path, "1d", tmp_path / "root", "cron")
    assert not (tmp_path / "root").exists()


def test_refused_when_the_passphrase_file_is_not_0600(tmp_path, secret_file):
    secret_file.chmod(0o644)
    with pytest.raises(UserError, match="0600"):
        timer.install(tmp_path, "1d", tmp_path / "root", "cron")
    assert not (tmp_path / "root").exists()


def test_refused_when_a_path_would_be_syntax(tmp_path, secret_file):
    project = tmp_path / "100%"
    project.mkdir()
    with pytest.raises(BadInput, match="cannot go into a cron line or a unit file"):
        timer.install(project, "1d", tmp_path / "root", "cron")


def test_the_cron_entry_runs_maintain_from_the_project_with_both_variables(tmp_path, secret_file):
    root = tmp_path / "root"
    assert timer.install(tmp_path, "15m", root, "cron") == [f"wrote {root}/etc/cron.d/mtls-deploy"]
    text = (root / "etc/cron.d/mtls-deploy").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    user = Path("/proc/self").owner()
    assert lines[:3] == ["SHELL=/bin/sh", f'MTLS_DEPLOY_PROJECT="{tmp_path}"',
                         f'{ENV}="{secret_file}"']  # fmt: skip
    assert lines[3].startswith(
        f'*/15 * * * * {user} cd "{tmp_path}" && "{sys.executable}" -m invoke'
    )
    assert lines[3].endswith(f'maintain >>"{tmp_path}/maintain.log" 2>&1')
    assert oct((root / "etc/cron.d/mtls-deploy").stat().st_mode & 0o777) == "0o644"


def test_the_cron_command_runs_in_sh_as_written(tmp_path, secret_file):
    line = timer.render_cron(timer.job_from_environment(tmp_path), timer.schedule("1d")).decode()
    command = line.strip().splitlines()[-1].split(" ", 6)[6]
    fake = command.replace(f'"{sys.executable}" -m invoke', "echo ran")
    assert subprocess.run(["sh", "-c", fake], check=True).returncode == 0
    assert (tmp_path / "maintain.log").read_text().startswith("ran --search-root")


def test_the_systemd_units_are_a_oneshot_service_and_a_persistent_timer(tmp_path, secret_file):
    root = tmp_path / "root"
    written = timer.install(tmp_path, "6h", root, "systemd")
    assert len(written) == 2  # --root: written, not enabled
    units = root / timer.UNIT_DIR
    service = (units / "mtls-deploy-maintain.service").read_text()
    assert f'Environment="MTLS_DEPLOY_PROJECT={tmp_path}"' in service
    assert f'Environment="{ENV}={secret_file}"' in service
    assert "Type=oneshot" in service and f"WorkingDirectory={tmp_path}\n" in service
    timer_text = (units / "mtls-deploy-maintain.timer").read_text()
    assert "OnCalendar=0/6:17:00" in timer_text and "Persistent=true" in timer_text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_accepts_the_units(tmp_path, secret_file):
    root = tmp_path / "root"
    timer.install(tmp_path, "1d", root, "systemd")
    units = sorted((root / timer.UNIT_DIR).iterdir())
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", *map(str, units)],
                          capture_output=True, text=True, env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "mtls-deploy-maintain" not in done.stderr, done.stderr


def test_systemd_is_chosen_where_it_runs(tmp_path):
    assert not timer.uses_systemd(tmp_path)
    (tmp_path / "run/systemd/system").mkdir(parents=True)
    assert timer.uses_systemd(tmp_path)


def test_an_unknown_scheduler_is_one_line(tmp_path, secret_file):
    from mtls_deploy.maintain_tasks import _install

    with pytest.raises(BadInput, match=r"^--scheduler 'upstart': use systemd or cron$"):
        _install("1d", str(tmp_path / "root"), "upstart")
    assert not (tmp_path / "root").exists()
