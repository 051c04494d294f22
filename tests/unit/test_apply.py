"""The apply script is plain sh: these tests run it for real in a temporary directory,
with a stand-in validator, to prove that a refused change puts every old file back."""

import os
import shlex
import subprocess

import pytest

from mtls_deploy import apply as applying
from mtls_deploy.facts import PathState
from mtls_deploy.operations import plan_absent, plan_file
from mtls_deploy.resources import Absent, File, Handler, Validator


def owner_of(path):
    import grp
    import pwd

    st = os.stat(path)
    return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name


@pytest.fixture
def site(tmp_path):
    """An existing 'site' file and a 'default' file, as on a host before provisioning."""
    (tmp_path / "site.conf").write_text("old site\n")
    (tmp_path / "default").write_text("default site\n")
    return tmp_path


def steps_for(folder, content: bytes):
    user, group = owner_of(folder)
    new = File(
        str(folder / "site.conf"),
        content,
        owner=user,
        group=group,
        validate="nginx",
        notify=("reload nginx",),
    )
    brand_new = File(
        str(folder / "new.conf"), b"brand new\n", owner=user, group=group, validate="nginx"
    )
    gone = Absent(str(folder / "default"), validate="nginx")
    return [
        plan_file(new, PathState("file", 0o644, user, group, "0" * 64)),
        plan_file(brand_new, PathState("absent")),
        plan_absent(gone, PathState("file", 0o644, user, group)),
    ]


def validators(script: str) -> dict:
    """A stand-in for the config test a role declares (``validators:`` in its meta.yml)."""
    return {"nginx": Validator("nginx", script, error_lines="[emerg]")}


def run(script: str, validator: str, monkeypatch=None):
    return subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True)


HANDLERS = [Handler("reload nginx", "echo reloaded")]


def test_valid_change_lands_and_runs_the_handler_once(site, monkeypatch):
    steps = steps_for(site, b"new site\n")
    result = run(applying.build_script(steps, HANDLERS, validators("true")), "true")
    outcome = applying.parse_outcome(result.stdout, result.stderr)
    assert result.returncode == 0, result.stderr
    assert (site / "site.conf").read_text() == "new site\n"
    assert (site / "new.conf").read_text() == "brand new\n"
    assert not (site / "default").exists()
    assert outcome.done == {0, 1, 2} and outcome.handlers_done == ("reload nginx",)
    assert result.stdout.count("reloaded") == 1
    assert sorted(p.name for p in site.iterdir()) == ["new.conf", "site.conf"]  # no leftovers


def test_refused_change_restores_old_files_and_removes_new_ones(site, monkeypatch):
    steps = steps_for(site, b"broken site\n")
    validator = "echo 'nginx: [emerg] unknown directive \"brokn\" in site.conf:3' >&2; false"
    result = run(applying.build_script(steps, HANDLERS, validators(validator)), validator)
    assert result.returncode == 3
    assert (site / "site.conf").read_text() == "old site\n"
    assert (site / "default").read_text() == "default site\n"
    assert not (site / "new.conf").exists()
    assert "reloaded" not in result.stdout  # a refused config is never reloaded
    outcome = applying.parse_outcome(result.stdout, result.stderr)
    settled = applying.settle(steps, outcome, 3, validators(validator))
    assert settled[-1].kind == "validate" and "[emerg] unknown directive" in settled[-1].reason
    assert all(s.status == "failed" and s.reason.startswith("reverted") for s in settled[:3])
    assert sorted(p.name for p in site.iterdir()) == ["default", "site.conf"]


def test_a_failing_step_restores_validated_files_written_before_it(site, monkeypatch):
    steps = steps_for(site, b"new site\n")
    steps[2].commands = ["echo 'rm: cannot remove: Permission denied' >&2", "false"]
    result = run(applying.build_script(steps, HANDLERS, validators("true")), "true")
    assert result.returncode != 0
    assert (site / "site.conf").read_text() == "old site\n"
    assert not (site / "new.conf").exists()
    settled = applying.settle(
        steps, applying.parse_outcome(result.stdout, result.stderr), result.returncode
    )
    assert settled[2].status == "failed" and "Permission denied" in settled[2].reason


def test_truncated_content_is_never_renamed_into_place(site, monkeypatch):
    """A script cut mid-heredoc (a dropped connection) fails the checksum: the old file stays."""
    steps = steps_for(site, b"new site\n" * 100)
    script = applying.build_script(steps[:1], [], validators("true"))
    cut = script[: script.index("MTLS_DEPLOY_EOF\n", script.index("<<'MTLS_DEPLOY_EOF'") + 20) - 40]
    result = run(cut, "true")
    assert result.returncode != 0
    assert (site / "site.conf").read_text() == "old site\n"


def test_handlers_are_deduplicated_and_ordered():
    a = plan_file(File("/x", b"1", notify=("restart backend", "reload nginx")), PathState("absent"))
    b = plan_file(File("/y", b"2", notify=("reload nginx",)), PathState("absent"))
    handlers = [
        Handler("reload nginx", "r", order=60),
        Handler("restart backend", "b", order=40),
        Handler("unused", "u"),
    ]
    chosen = applying.notified_handlers([a, b], handlers)
    assert [h.name for h in chosen] == ["restart backend", "reload nginx"]


def test_a_handler_another_notified_one_covers_does_not_run():
    a = plan_file(File("/x", b"1", notify=("reload app",)), PathState("absent"))
    b = plan_file(File("/y", b"2", notify=("restart app",)), PathState("absent"))
    reload_app, restart_app = (
        Handler("reload app", "r", order=40),
        Handler("restart app", "s", order=41, covers=("reload app",)),
    )
    handlers = [reload_app, restart_app]
    assert applying.notified_handlers([a, b], handlers) == [restart_app]
    assert applying.notified_handlers([a], handlers) == [reload_app]  # alone, it runs


def test_a_dropped_connection_mid_run_restores_validated_files(site, monkeypatch):
    """SIGHUP (sshd gone) after the first file: the trap puts the old site back."""
    steps = steps_for(site, b"new site\n")
    steps[1].commands = [f"kill -HUP $$; sleep 5; echo never > {site}/marker", *steps[1].commands]
    result = run(applying.build_script(steps, HANDLERS, validators("true")), "true")
    assert result.returncode == 129
    assert (site / "site.conf").read_text() == "old site\n"
    assert not (site / "new.conf").exists() and not (site / "marker").exists()
    assert sorted(p.name for p in site.iterdir()) == ["default", "site.conf"]


def test_a_command_step_runs_in_order_and_notifies(tmp_path, monkeypatch):
    from mtls_deploy.operations import plan_command
    from mtls_deploy.resources import Command

    step = plan_command(
        Command(f"echo ran > {tmp_path}/out", creates=f"{tmp_path}/out", notify=("reload nginx",)),
        PathState("absent"),
        None,
    )
    result = run(applying.build_script([step], HANDLERS), "true")
    assert result.returncode == 0 and (tmp_path / "out").read_text() == "ran\n"
    assert applying.parse_outcome(result.stdout, result.stderr).handlers_done == ("reload nginx",)


# --- values reach the script as one quoted word each ------------------------------------------

# Spaces, both quotes, `$`, `;`, a newline, a command substitution and a glob: each must arrive
# as one argument, unexpanded, and run nothing.
AWKWARD = "a b'c\"d$HOME;e\nf`g`*$(touch pwned)"


def recorder(folder, name="record"):
    """A stand-in command on PATH that writes each argument it gets, NUL-terminated."""
    (folder / "bin").mkdir(exist_ok=True)
    script = folder / "bin" / name
    script.write_text(f"#!/bin/sh\nprintf '%s\\0' \"$@\" >> {folder}/{name}.args\n")
    script.chmod(0o755)
    return lambda: (folder / f"{name}.args").read_text().split("\0")[:-1]


def run_in(folder, script: str):
    """``script`` under sh in ``folder``, the stand-ins first on PATH."""
    env = {**os.environ, "PATH": f"{folder}/bin:{os.environ['PATH']}"}
    return subprocess.run(
        ["sh", "-s"], input=script, capture_output=True, text=True, cwd=folder, env=env
    )


def notifying_step(folder, handler: str):
    return plan_file(File(str(folder / "f"), b"x\n", notify=(handler,)), PathState("absent"))


def test_an_argv_handler_gets_every_value_as_one_word(tmp_path):
    args = recorder(tmp_path)
    handler = Handler("restart backend", (("record", AWKWARD, "-x"), ("record", "second")))
    script = applying.build_script([notifying_step(tmp_path, "restart backend")], [handler])
    assert shlex.join(["record", AWKWARD, "-x"]) in script
    result = run_in(tmp_path, script)
    assert result.returncode == 0, result.stderr
    assert args() == [AWKWARD, "-x", "second"]
    assert not (tmp_path / "pwned").exists()


def test_a_failing_argv_of_a_handler_stops_it_and_fails_the_host(tmp_path):
    args = recorder(tmp_path)
    handler = Handler("restart backend", (("record", "first"), ("false",), ("record", "never")))
    step = notifying_step(tmp_path, "restart backend")
    result = run_in(tmp_path, applying.build_script([step], [handler]))
    assert result.returncode != 0 and args() == ["first"]
    outcome = applying.parse_outcome(result.stdout, result.stderr)
    settled = applying.settle([step], outcome, result.returncode)
    assert [(s.name, s.status) for s in settled if s.kind == "handler"] == [
        ("restart backend", "failed")
    ]


def test_a_handler_script_ending_in_a_failed_and_list_fails_the_host(tmp_path):
    """``test && reload`` as a handler's last line: under ``set -e`` alone a failing test
    would not stop the script, and the handler would count as done without its reload."""
    step = notifying_step(tmp_path, "restart backend")
    handler = Handler("restart backend", f"false && touch {tmp_path}/reloaded")
    result = run_in(tmp_path, applying.build_script([step], [handler]))
    outcome = applying.parse_outcome(result.stdout, result.stderr)
    assert result.returncode != 0 and outcome.handlers_done == ()
    assert not (tmp_path / "reloaded").exists()


def test_an_argv_command_and_its_unless_check_quote_every_value(tmp_path):
    from mtls_deploy import facts
    from mtls_deploy.operations import plan, watched
    from mtls_deploy.resources import Command

    args = recorder(tmp_path)
    checked = recorder(tmp_path, "check")
    command = Command((("record", AWKWARD),), unless=(("check", AWKWARD), ("false",)))
    gathered = run_in(tmp_path, facts.resource_facts_script(*watched([command])))
    steps = plan([command], facts.parse_resource_facts(gathered.stdout))
    assert steps[0].status == "changed" and checked() == [AWKWARD]
    assert steps[0].name == shlex.join(["record", AWKWARD])
    result = run_in(tmp_path, applying.build_script(steps, []))
    assert result.returncode == 0, result.stderr
    assert args() == [AWKWARD] and not (tmp_path / "pwned").exists()


def test_a_str_command_or_handler_is_a_fixed_script_and_a_bare_argv_is_refused():
    from mtls_deploy import shell

    assert shell.render("systemctl reload nginx") == "systemctl reload nginx"
    with pytest.raises(TypeError, match="argv"):
        shell.render(("systemctl", "reload", "nginx"))  # not a tuple of argv tuples
    with pytest.raises(TypeError):
        shell.render(())
    with pytest.raises(ValueError, match="NUL"):
        shell.render((("echo", "a\0b"),))


def test_a_validator_picks_its_error_line_or_the_last_one():
    """A role's ``error_lines`` word picks the line to report; without one, the last line."""
    output = "checking\nline 3: [emerg] bad\nconfiguration test failed\n"
    marked = {"conf": Validator("conf", "false", error_lines="[emerg]")}
    plain = {"conf": Validator("conf", "false")}
    outcome = applying.ApplyOutcome(frozenset(), ("conf", output), (), (), "")
    assert applying.settle([], outcome, 3, marked)[-1].reason == "line 3: [emerg] bad"
    assert applying.settle([], outcome, 3, plain)[-1].reason == "configuration test failed"
    assert applying.settle([], outcome, 3, plain)[-1].name == "false"


class LocalRemote:
    """``Remote.run_script`` on this machine: the script under sh, as on a host."""

    def __init__(self, folder):
        self.folder = folder

    def run_script(self, script, sudo=False, check=False, timeout=None):
        from types import SimpleNamespace

        done = run_in(self.folder, script)
        assert not check or done.returncode == 0, done.stderr
        return SimpleNamespace(stdout=done.stdout, stderr=done.stderr, exit_status=done.returncode)


def test_diff_fetches_files_by_index_whatever_their_names(tmp_path):
    from mtls_deploy.provision import fetch_files

    names = [AWKWARD.replace("/", "_"), "@@file 0", "-n", "plain"]
    paths = [str(tmp_path / name) for name in names]
    for i, path in enumerate(paths[:3]):
        with open(path, "wb") as f:
            f.write(f"content {i}\n".encode())
    fetched = fetch_files(LocalRemote(tmp_path), paths)
    assert fetched == {paths[i]: f"content {i}\n".encode() for i in range(3)}
    assert not (tmp_path / "pwned").exists()
