"""One command line (issue "Ready for real servers"): every task of the namespace, walked through
Invoke's own ``Program`` in this process, as ``inv`` runs it.

Each task: ``--help`` shows its docstring (no required argument swallows "--help" as a value);
a short flag means one long flag everywhere, or is absent; hosts are ``--host`` in every task;
its ``inv --list`` line is a whole sentence; a missing required flag is one line naming it, exit 2.
"""

import inspect
import re
from pathlib import Path

import pytest
from invoke import Collection
from invoke.loader import FilesystemLoader

ROOT = Path(__file__).resolve().parents[2]


def load_namespace() -> Collection:
    """The namespace of tasks.py, loaded as ``inv`` loads it."""
    module, _ = FilesystemLoader(start=str(ROOT)).load("tasks")
    return Collection.from_module(module)


NAMESPACE = load_namespace()
TASK_NAMES = sorted(NAMESPACE.task_names)


def required_flags(name: str) -> list[str]:
    """The flags task ``name`` cannot run without (its parameters with no default)."""
    parameters = list(inspect.signature(NAMESPACE[name].body).parameters.values())[1:]
    return [p.name for p in parameters if p.default is inspect.Parameter.empty]


def flag_names(name: str) -> dict[str, list[str]]:
    """Task ``name``'s flags: long name -> its short names."""
    context = next(c for c in NAMESPACE.to_contexts() if c.name == name)
    arguments = {id(a): a for a in context.flags.values()}.values()
    return {
        next(n for n in a.names if len(n) > 1): [n for n in a.names if len(n) == 1]
        for a in arguments
    }


def test_the_walk_sees_every_task():
    assert len(TASK_NAMES) >= 25 and {"renew-client", "lab.up", "pki.rollover"} <= set(TASK_NAMES)
    assert [n for n in TASK_NAMES if required_flags(n)], "no task with a required flag to try"


@pytest.mark.parametrize("name", TASK_NAMES)
def test_help_shows_the_tasks_docstring(inv, name):
    code, out, err = inv(name, "--help")
    first_line = inspect.getdoc(NAMESPACE[name].body).splitlines()[0]
    assert (code, err) == (0, "")
    assert f"Usage: inv [--core-opts] {name} [" in out and first_line in out


@pytest.mark.parametrize("name", TASK_NAMES)
def test_help_lists_flags_only_as_flags(inv, name):
    """No argument is positional: a bare word after the task is never taken as its value."""
    context = next(c for c in NAMESPACE.to_contexts() if c.name == name)
    assert context.positional_args == []


def test_a_short_flag_means_one_long_flag_everywhere_or_is_absent():
    meaning: dict[str, set[str]] = {}
    for name in TASK_NAMES:
        for long, shorts in flag_names(name).items():
            for short in shorts:
                meaning.setdefault(short, set()).add(long)
    assert {s: longs for s, longs in meaning.items() if len(longs) > 1} == {}
    assert "h" not in meaning, "-h is Invoke's help"


@pytest.mark.parametrize("name", TASK_NAMES)
def test_hosts_are_named_host_in_every_task(name):
    assert "hosts" not in flag_names(name)


def test_dash_h_after_a_task_is_its_help(inv):
    code, out, _ = inv("inventory", "-h")
    assert code == 0 and "--host" in out and "Docstring:" in out


@pytest.mark.parametrize("name", TASK_NAMES)
def test_each_list_line_is_a_whole_sentence(name):
    """``inv --list`` shows the docstring's first line: it must be the whole first paragraph and
    end as a sentence does (a full stop, or an example command at its end)."""
    lines = inspect.getdoc(NAMESPACE[name].body).splitlines()
    assert len(lines) == 1 or lines[1] == "", f"{name}: the first sentence runs on: {lines[:2]}"
    assert lines[0].endswith(".") or re.search(r"\. Ex: inv \S+.*[^,;:]$", lines[0]), lines[0]


def test_list_shows_no_cut_sentence(inv):
    code, out, _ = inv("--list")
    entries = re.split(r"\n  (?=\S)", out.split("\n\n", 1)[1].strip())
    assert code == 0 and len(entries) == len(TASK_NAMES)
    for entry in entries:
        shown = " ".join(entry.split()[1:])
        assert shown.endswith(".") or re.search(r"Ex: inv \S+", shown), entry


@pytest.mark.parametrize("name", [n for n in TASK_NAMES if required_flags(n)])
def test_a_missing_required_flag_is_one_line_naming_it_exit_2(inv, name):
    code, out, err = inv(name)
    flag = "--" + required_flags(name)[0].strip("_").replace("_", "-")
    assert code == 2 and out == ""
    assert err.startswith(f"error: {name} needs {flag}") and err.count("\n") == 1, err


def test_the_old_missing_argument_wording_is_gone(inv):
    code, _, err = inv("renew-client")
    assert (code, err) == (2, "error: renew-client needs --name\n")
    code, _, err = inv("pki.rollover", "--start")
    assert (code, err) == (2, "error: pki.rollover needs --ca\n")


@pytest.mark.parametrize("name", ["issue-client", "revoke-client"])
def test_neither_name_nor_names_file_is_one_line_naming_both(inv, name):
    code, out, err = inv(name)
    assert (code, out, err) == (2, "", f"error: {name} needs --name (or --names-file)\n")


@pytest.mark.parametrize("name", [n for n in TASK_NAMES if required_flags(n)])
def test_help_marks_required_flags(inv, name):
    _, out, _ = inv(name, "--help")
    assert out.count("(required)") == len(required_flags(name)), out
