"""``inv maintain --install-timer``: run ``inv maintain`` unattended on the control machine.

Where systemd is the init system (``/run/systemd/system`` exists, as ``sd_booted`` tests), a
service and a timer in ``/etc/systemd/system/`` (then ``systemctl enable --now``); else a cron
entry in ``/etc/cron.d/mtls-deploy``. Both run the same schedule (``--every``: minutes that
divide an hour, hours that divide a day, or ``1d``, at 03:17 with up to 10 minutes of jitter
under systemd), as the user who installs it, from the project directory, with
``MTLS_DEPLOY_PROJECT`` and ``MTLS_DEPLOY_CA_PASSPHRASE_FILE`` set: the passphrase file must be
there, the user's own and 0600 (or 0400), or nothing is written: an unattended run without a
passphrase would fail every night. ``--root DIR`` writes under DIR instead of ``/`` (tests,
images) and enables nothing.
"""

import datetime as dt
import os
import pwd
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..durations import parse_duration
from ..errors import BadInput, UserError
from ..project import checkout

UNIT = "mtls-deploy-maintain"
CRON_FILE = "etc/cron.d/mtls-deploy"
UNIT_DIR = "etc/systemd/system"
PASSPHRASE_FILE_ENV = "MTLS_DEPLOY_CA_PASSPHRASE_FILE"
EVERY_HINT = "use minutes that divide an hour (15m, 30m), hours that divide a day (1h, 6h) or 1d"
UNSAFE = re.compile(r"[\x00-\x1f\x7f%\"'\\$`]")  # what cron or systemd would read as syntax
DAILY = (17, 3)  # 03:17: away from the hour, when every other job starts


@dataclass(frozen=True)
class Schedule:
    """One schedule in both notations: cron's five fields and systemd's OnCalendar."""

    every: str
    cron: str
    on_calendar: str


@dataclass(frozen=True)
class Job:
    """What runs: as ``user``, in ``project``, with the passphrase file, logging to ``log``;
    ``python`` runs Invoke on the tool's own tasks.py (in the checkout ``tool``), or, when the
    tool is installed (``tool`` is None), the installed command's program."""

    user: str
    project: Path
    passphrase_file: Path
    python: Path
    tool: Path | None = checkout()  # the directory of tasks.py; None when installed

    @property
    def log(self) -> Path:
        return self.project / "maintain.log"


def schedule(every: str) -> Schedule:
    """``"15m"`` -> ``*/15 * * * *`` and ``*:0/15``; ``BadInput`` for what cron cannot say."""
    try:
        delta = parse_duration(every)
    except ValueError as problem:
        raise BadInput(f"--every {problem}") from None
    minutes = int(delta.total_seconds()) // 60
    if delta == dt.timedelta(days=1):
        return Schedule(every, f"{DAILY[0]} {DAILY[1]} * * *", f"*-*-* 0{DAILY[1]}:{DAILY[0]}:00")
    if delta.total_seconds() % 3600 == 0 and 24 % (minutes // 60) == 0 and minutes < 1440:
        hours = minutes // 60
        return Schedule(every, f"{DAILY[0]} */{hours} * * *", f"0/{hours}:{DAILY[0]}:00")
    if delta.total_seconds() % 60 == 0 and 0 < minutes < 60 and 60 % minutes == 0:
        return Schedule(every, f"*/{minutes} * * * *", f"*:0/{minutes}")
    raise BadInput(f"--every {every} is not a schedule cron can keep: {EVERY_HINT}")


def job_from_environment(project: Path) -> Job:
    """The job for ``project``, refused in one line without a usable passphrase file."""
    name = os.environ.get(PASSPHRASE_FILE_ENV)
    if not name:
        raise UserError(
            f"{PASSPHRASE_FILE_ENV} is not set: an unattended run would have no CA passphrase; "
            f"write it to a 0600 file and export {PASSPHRASE_FILE_ENV}=/path/to/it"
        )
    from ..pki import passphrase

    passphrase.from_file(passphrase.CA)  # missing, not 0600, not ours: one line, nothing written
    job = Job(
        pwd.getpwuid(os.geteuid()).pw_name,
        project.resolve(),
        Path(name).resolve(),
        Path(sys.executable),
    )
    for path in (job.project, job.passphrase_file, job.python, job.tool or ""):
        if UNSAFE.search(str(path)):
            raise BadInput(f"{path}: a path with quotes, %, $ or control characters cannot go "
                           "into a cron line or a unit file: move it")  # fmt: skip
    return job


def command(job: Job) -> str:
    """The command both schedulers run (paths checked by ``job_from_environment``): Invoke over
    the checkout's tasks.py, or the installed ``mtls-deploy`` command's program."""
    if job.tool is None:
        return f'"{job.python}" -m mtls_deploy.program maintain'
    return f'"{job.python}" -m invoke --search-root "{job.tool}" maintain'


def render_units(job: Job, when: Schedule) -> dict[str, bytes]:
    """``{file name: content}`` of the systemd service and timer."""
    from ..templating import render

    service = render(
        "maintain/mtls-deploy-maintain.service.j2",
        user=job.user,
        project=job.project,  # WorkingDirectory= takes the rest of the line, no quotes
        project_env=f'"MTLS_DEPLOY_PROJECT={job.project}"',
        passphrase_env=f'"{PASSPHRASE_FILE_ENV}={job.passphrase_file}"',
        command=command(job),
    )
    timer = render("maintain/mtls-deploy-maintain.timer.j2", every=when.every,
                   on_calendar=when.on_calendar, jitter="10min" if when.every == "1d" else "30s")  # fmt: skip
    return {f"{UNIT}.service": service, f"{UNIT}.timer": timer}


def render_cron(job: Job, when: Schedule) -> bytes:
    """The ``/etc/cron.d/mtls-deploy`` file."""
    from ..templating import render

    return render(
        "maintain/cron.j2",
        every=when.every,
        log=job.log,
        project=f'"{job.project}"',
        passphrase_file=f'"{job.passphrase_file}"',
        schedule=when.cron,
        user=job.user,
        command=f'cd "{job.project}" && {command(job)} >>"{job.log}" 2>&1',
    )


def uses_systemd(root: Path) -> bool:
    """Whether systemd runs the machine under ``root`` (``sd_booted``'s test)."""
    return (root / "run/systemd/system").is_dir()


def install(
    project: Path, every: str, root: Path = Path("/"), scheduler: str | None = None
) -> list[str]:
    """Write the timer (or cron entry) under ``root``; enable it when ``root`` is ``/``.
    Returns what was done, a line each."""
    when, job = schedule(every), job_from_environment(project)
    chosen = scheduler or ("systemd" if uses_systemd(root) else "cron")
    if chosen == "systemd":
        files = {f"{UNIT_DIR}/{name}": data for name, data in render_units(job, when).items()}
    else:
        files = {CRON_FILE: render_cron(job, when)}
    done = [_write(root / path, data) for path, data in files.items()]
    if chosen == "systemd" and root == Path("/"):
        done.append(_enable())
    return done


def _write(path: Path, data: bytes) -> str:
    from ..files import atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data, 0o644)
    except PermissionError:
        raise UserError(f"cannot write {path}: run as root (sudo -E keeps "
                        f"{PASSPHRASE_FILE_ENV}), or give --root DIR") from None  # fmt: skip
    return f"wrote {path}"


def _enable() -> str:
    for args in (["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", f"{UNIT}.timer"]):
        done = subprocess.run(args, capture_output=True, text=True)
        if done.returncode:
            raise UserError(f"{' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return f"enabled {UNIT}.timer (systemctl list-timers {UNIT}.timer shows the next run)"
