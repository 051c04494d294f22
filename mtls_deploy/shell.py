"""Commands as roles declare them, and the shell text the engine sends for them.

A role gives a command either as argv (a tuple of argument tuples, run in order, stopping at
the first failure), where any value may come from the inventory, or as a str: a fixed shell
script written in the role, which carries no inventory value. Argv needs no quoting by its
author: ``render`` quotes every argument with ``shlex.join``.
"""

import shlex

Argv = tuple[str, ...]
ShellCommand = str | tuple[Argv, ...]


def render(command: ShellCommand) -> str:
    """The shell text for ``command``: a str as written; argv quoted word by word, several
    joined with ``&&``, so the first failure stops them and is their exit status.

    Example: ``render((("systemctl", "restart", "a b.service"),))`` ->
    ``"systemctl restart 'a b.service'"``
    """
    if isinstance(command, str):
        return command
    return " && ".join(shlex.join(_checked(argv)) for argv in _checked_list(command))


def statement(command: ShellCommand) -> str:
    """``render(command)`` as one statement of a ``set -e`` script: in a subshell, whose
    failure stops the script even when its last line is an ``&&`` list (a failure inside
    ``a && b`` alone would not stop it)."""
    return f"(\n{render(command)}\n)"


def condition(command: ShellCommand) -> str:
    """``render(command)`` as the test of an ``if``, its output kept off the facts."""
    return f"(\n{render(command)}\n) >/dev/null 2>&1"


def _checked_list(command) -> tuple:
    if not isinstance(command, tuple | list) or not command:
        raise TypeError(f"a command is a str or a non-empty tuple of argv tuples, not {command!r}")
    return tuple(command)


def _checked(argv) -> Argv:
    """An argv is a non-empty tuple of str: a bare str here would be split into letters."""
    if not isinstance(argv, tuple | list) or not argv or not all(isinstance(a, str) for a in argv):
        raise TypeError(f"an argv is a non-empty tuple of str, not {argv!r}")
    if any("\0" in a for a in argv):
        raise ValueError(f"an argument holds a NUL byte, which no shell can pass on: {argv!r}")
    return tuple(argv)
