"""Glue between Invoke tasks and the engine: user errors become one line and an exit status."""

import functools
import json
import sys

from invoke import Exit
from invoke import task as invoke_task

from .errors import UserError


def task(*args, **kwargs):
    """Like ``invoke.task``, but a ``UserError`` prints one line and exits non-zero.

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

        return invoke_task(run, **kwargs)

    if len(args) == 1 and callable(args[0]) and not kwargs:
        return decorate(args[0])
    return decorate


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
