"""``inv maintain``, kept out of tasks.py so that it stays one page; tasks.py adds it to its
namespace. Like every task: parse flags, call one function, print, exit."""

from invoke import Exit

from .cli import task


@task(
    help={
        "install_timer": "write a systemd timer (where systemd runs this machine) or a cron "
        "entry that runs maintain unattended; needs MTLS_DEPLOY_CA_PASSPHRASE_FILE (0600)",
        "every": "with --install-timer: 1d (default, at 03:17), 6h, 15m, ...",
        "root": "with --install-timer: write under DIR instead of / and enable nothing",
        "scheduler": "with --install-timer: systemd or cron (default: systemd if it runs here)",
    }
)
def maintain(c, install_timer=False, every="1d", root=None, scheduler=None):
    """Renew what is due (CRL, server and client certificates), push it, warn about CAs.

    Exit 0 ok, 1 warning, 2 critical or a host failed, 3 unknown. For cron or a systemd timer:
    inv maintain --install-timer [--every 1d]. Ex: inv maintain
    """
    if install_timer:
        return _install(every, root, scheduler)
    from .maintain import maintain_main

    code = maintain_main()
    if code:
        raise Exit(code=code)


def _install(every: str, root: str | None, scheduler: str | None) -> None:
    from pathlib import Path

    from .errors import BadInput
    from .maintain.timer import install
    from .project import project_dir

    if scheduler not in (None, "systemd", "cron"):
        raise BadInput(f"--scheduler {scheduler!r}: use systemd or cron")
    for line in install(project_dir(), every, Path(root or "/"), scheduler):
        print(line)
