"""``inv unprovision``: the task, kept out of tasks.py (near its 500 lines); tasks.py adds it to
its namespace. Like every task: parse flags, call one function, print, exit."""

from .cli import raise_on_failure, split_names, task


@task(
    help={
        "host": "hosts or Ansible patterns to unprovision (required: never a whole group by default)",
        "packages": "also purge the packages our roles installed (and what came only with them)",
        "check": "say what would be taken away, change nothing",
    }
)
def unprovision(c, host, packages=False, check=False):
    """Take away what provisioning put on hosts, by each host's manifest; packages stay unless --packages.

    Ex: inv unprovision --host api1  |  inv unprovision --host api1 --packages
    """
    from . import report
    from .hosts import select
    from .runner import run_on_hosts
    from .unprovision import unprovision_host

    def work(one):
        return unprovision_host(one, packages=packages, check=check)

    result = run_on_hosts(select(split_names(host), None), work, on_result=report.print_host)
    report.print_recap(result)
    raise_on_failure(result)
