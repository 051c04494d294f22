"""shell.py: how a role's command becomes shell text: argv quoted word by word, a str as
written; as a statement it stops a ``set -e`` script, as a condition it prints nothing."""

import subprocess

import pytest

from mtls_deploy import shell


def sh(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True)


def test_argv_is_quoted_and_several_are_joined_so_the_first_failure_stops_them():
    text = shell.render((("printf", "%s|", "a b", "$HOME"), ("false",), ("echo", "never")))
    assert text == "printf '%s|' 'a b' '$HOME' && false && echo never"
    done = sh(text)
    assert done.stdout == "a b|$HOME|" and done.returncode == 1


def test_a_statement_stops_a_set_e_script_even_as_an_and_list():
    """``false && x`` alone does not stop ``set -e``: in a subshell it does."""
    script = f"set -e\n{shell.statement('false && echo no')}\necho after\n"
    assert sh(script).stdout == "" and sh(script).returncode != 0
    assert sh("set -e\nfalse && echo no\necho after\n").stdout == "after\n"  # why it exists


def test_a_condition_keeps_the_commands_output_off_the_facts():
    script = f"if {shell.condition((('echo', 'noise'), ('sh', '-c', 'echo err >&2')))}; then echo yes; fi"
    done = sh(script)
    assert (done.stdout, done.stderr) == ("yes\n", "")


@pytest.mark.parametrize("bad", [(), ("echo", "x"), (("echo", 1),), [[]], None])
def test_a_malformed_command_is_a_type_error_naming_it(bad):
    with pytest.raises(TypeError, match="argv|command"):
        shell.render(bad)


def test_a_str_is_a_script_as_written():
    assert shell.render("systemctl reload nginx || true") == "systemctl reload nginx || true"
