"""The installed ``mtls-deploy`` command: Invoke's ``Program`` over the package's own tasks, as
Fabric's ``fab`` builds on it. ``inv`` in a checkout runs the same collection (``tasks.py``)."""

from invoke import Collection, Program

from . import __version__, tasks

program = Program(
    name="mtls-deploy",
    binary="mtls-deploy",
    version=__version__,
    namespace=Collection.from_module(tasks),
)


def main() -> None:
    """The console script's entry point."""
    program.run()
