"""Glue between Invoke tasks and the engine: user errors become one line and an exit status."""

import functools
import inspect
import json
import sys

from invoke import Exit, Task
from invoke import task as invoke_task
from invoke.parser import Argument

from .errors import BadInput, UserError


class WholeNumberArgument(Argument):
    """An integer flag whose bad value (``--days ten``) is one line and exit 2.

    Invoke casts with ``int()`` while it parses the command line, before any task runs, and lets
    the ``ValueError`` out as a traceback; ``Exit`` is what its ``Program`` prints as one line.
    """

    def set_value(self, value, cast: bool = True) -> None:
        """Set the flag's value, cast to ``int``; a value that is not one ends the run."""
        try:
            super().set_value(value, cast)
        except ValueError:
            flag = f"--{self.names[0]}"
            raise Exit(
                f"error: {flag} {value!r} is not a whole number: give digits, e.g. {flag} 30",
                code=BadInput.exit_code,
            ) from None


# Every argument is a flag: a required one made positional (Invoke's default) swallows the next
# word, so `inv renew-client --help` ran the task with the name "--help". No short flag is
# made up either: Invoke gave -d to --days, --diff or --deliver by task, and -h (its help) to --host.
FLAG_STYLE = {"positional": [], "auto_shortflags": False}


class CheckedTask(Task):
    """An Invoke ``Task`` whose integer flags are ``WholeNumberArgument``s and whose required
    flags, when missing, end the run in one line naming the flag (exit 2)."""

    called_as = ""  # the name in the namespace ("pki.show"), set by ``name_tasks``
    one_of: tuple[str, ...] = ()  # flags of which one is needed ("name", "names_file")

    def get_arguments(self, ignore_unknown_help=None) -> list[Argument]:
        """Invoke's arguments for this task, integer ones swapped for checked ones, required
        ones marked so in ``--help``."""
        arguments = [_checked(a) for a in super().get_arguments(ignore_unknown_help)]
        required = self.required_flags()
        for argument in arguments:
            if argument.name in required:
                argument.help = f"{argument.help or ''} (required)".lstrip()
        return arguments

    def __call__(self, *args, **kwargs):
        """Run the task once every flag it requires was given."""
        name = self.called_as or self.name.replace("_", "-")
        if missing := [flag for flag in self.required_flags() if kwargs.get(flag) is None]:
            flags = " and ".join(map(_flag, missing))
            raise Exit(f"error: {name} needs {flags}", code=BadInput.exit_code)
        if self.one_of and all(kwargs.get(flag) is None for flag in self.one_of):
            first, *others = map(_flag, self.one_of)
            alternatives = " or ".join(others)
            raise Exit(f"error: {name} needs {first} (or {alternatives})", code=BadInput.exit_code)
        return super().__call__(*args, **kwargs)

    def required_flags(self) -> list[str]:
        """The task's parameters without a default (the context ``c`` aside)."""
        parameters = list(inspect.signature(self.body).parameters.values())[1:]
        return [p.name for p in parameters if p.default is inspect.Parameter.empty]


def _flag(parameter: str) -> str:
    return "--" + parameter.strip("_").replace("_", "-")  # from_ -> --from


def name_tasks(collection) -> None:
    """Tell each task of ``collection`` its name there, for its error lines."""
    for name in collection.task_names:
        collection[name].called_as = name


def _checked(argument: Argument) -> Argument:
    if argument.kind is not int or argument.incrementable:
        return argument
    return WholeNumberArgument(
        names=argument.names,
        kind=int,
        default=argument.default,
        help=argument.help,
        positional=argument.positional,
        optional=argument.optional,
        attr_name=argument.attr_name,
    )


def task(*args, one_of: tuple[str, ...] = (), **kwargs):
    """Like ``invoke.task``, but a ``UserError`` prints one line and exits non-zero, and so does
    a bad value for an integer flag or a missing required flag (``CheckedTask``); every argument
    is a flag (``--name bob``, never a bare word) and none has a short form (``FLAG_STYLE``).
    ``one_of``: flags of which one must be given (``one_of=("name", "names_file")``).

    Example::

        @task(help={"name": "client name"})
        def issue_client(c, name): ...
    """

    def decorate(body):
        @functools.wraps(body)
        def run(c, *a, **kw):
            try:
                return body(c, *a, **kw)
            except UserError as error:
                raise Exit(f"error: {error}", code=error.exit_code) from None
            except KeyboardInterrupt:
                raise Exit("interrupted", code=130) from None
            except OSError as error:  # the last net: a file problem no check foresaw
                raise Exit(f"error: {_describe(error)}", code=1) from None

        checked = invoke_task(run, klass=CheckedTask, **{**FLAG_STYLE, **kwargs})
        checked.one_of = one_of
        return checked

    if len(args) == 1 and callable(args[0]) and not kwargs:
        return decorate(args[0])
    return decorate


def _describe(error: OSError) -> str:
    where = f"{error.filename}: " if error.filename else ""
    return f"{where}{error.strerror or error}: check that it exists and is yours to read and write"


def at_least(value: int, flag: str, minimum: int, meaning: str = "") -> int:
    """``value`` if it is ``minimum`` or more, else ``BadInput`` naming ``flag`` (exit 2).

    Example: ``at_least(serial, "--serial", 0, "0 (the default) runs every host at once")``.
    """
    if value < minimum:
        note = f" ({meaning})" if meaning else ""
        raise BadInput(f"{flag} {value} is too small: use {minimum} or more{note}")
    return value


def print_json(document) -> None:
    """Print one JSON document on stdout (the ``--json`` output of every task)."""
    json.dump(document, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def split_names(value: str | None) -> list[str]:
    """``"api1, bob"`` -> ``["api1", "bob"]``; ``None`` or ``""`` -> ``[]``."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def raise_on_failure(group_result) -> None:
    """Exit 2 when any host failed (as ansible-playbook does); the report is already printed."""
    if group_result.failed:
        names = ", ".join(r.host for r in group_result.failed)
        raise Exit(f"failed on: {names}", code=2)
