"""``inv deploy`` and ``inv rollback``: releases of the user's application (``app_src``), kept
out of tasks.py so that it stays one page; tasks.py adds them to its namespace. Like every
task: parse flags, call one function, print, exit."""

from invoke import Exit

from .cli import split_names, task

HOST_HELP = "API hosts or Ansible patterns, comma-separated: api1,api2 or 'api*'"


@task(
    help={
        "host": HOST_HELP,
        "check": "say what would be deployed; send and change nothing",
        "json": "print one JSON document",
    }
)
def deploy(c, host, check=False, json=False):
    """Upload app_src as a new release and switch current to it (nothing sent if unchanged).

    The host must have been provisioned (inv provision, which also deploys). Exit 1 when a
    release is refused or not switched; the running release keeps serving. Ex: inv deploy --host api1
    """
    from .hosts import select
    from .release.hosts import deploy_hosts

    _exit_on_failure(deploy_hosts(select(split_names(host), None), check, json))


@task(
    help={
        "host": HOST_HELP,
        "to": "the release to switch to (default: the one before current)",
        "json": "print one JSON document",
    }
)
def rollback(c, host, to=None, json=False):
    """Switch current back to the release before it, or to --to RELEASE. Ex: inv rollback --host api1"""
    from .hosts import select
    from .release.hosts import rollback_hosts

    _exit_on_failure(rollback_hosts(select(split_names(host), None), to, json))


def _exit_on_failure(group_result) -> None:
    if group_result.failed:
        names = ", ".join(r.host for r in group_result.failed)
        raise Exit(f"failed on: {names}", code=1)
