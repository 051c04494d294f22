"""The installed ``mtls-deploy`` command: Invoke's ``Program`` over the package's own tasks, as
Fabric's ``fab`` builds on it. ``inv`` in a checkout runs the same collection (``tasks.py``).

It adds one core flag, ``--project DIR`` (``mtls_deploy.project``: the flag, else
``$MTLS_DEPLOY_PROJECT``, else the nearest parent directory holding ``inventory/``). The
benchmarks (``bench``) need the checkout's ``bench/``: an installed command lists no ``bench``.
"""

from invoke import Collection, Exit, Program
from invoke.parser import Argument

from . import __version__, tasks
from .errors import UserError
from .project import checkout

PROJECT_HELP = (
    "the project directory (inventory/, pki/, dist/); default: $MTLS_DEPLOY_PROJECT, else the "
    "nearest parent directory holding inventory/"
)


class MtlsDeploy(Program):
    """Invoke's ``Program`` with ``--project DIR``, put in force before any task runs."""

    def core_args(self) -> list[Argument]:
        """Invoke's core flags and ``--project``."""
        return [*super().core_args(), Argument(names=("project",), help=PROJECT_HELP)]

    def update_config(self, merge: bool = True) -> None:
        """Invoke's config step, then ``--project``: a directory that is none is one line."""
        super().update_config(merge)
        chosen = self.args.project.value
        if chosen is None:
            return
        from .project import choose_project

        try:
            choose_project(chosen)
        except UserError as error:
            raise Exit(f"error: {error}", code=error.exit_code) from None


def namespace() -> Collection:
    """The tasks of ``tasks.py``; without ``bench`` where there is no checkout to run it from."""
    collection = Collection.from_module(tasks)
    if checkout() is None:
        collection.tasks.pop("bench", None)
    return collection


program = MtlsDeploy(
    name="mtls-deploy",
    binary="mtls-deploy",
    version=__version__,
    namespace=namespace(),
)


def main() -> None:
    """The console script's entry point."""
    program.run()


if __name__ == "__main__":  # python -m mtls_deploy.program: what the maintain timer runs
    main()
