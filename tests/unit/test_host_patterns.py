"""Ansible's host ranges and host patterns (``mtls_deploy.host_patterns``), case by case as the
Ansible documentation states them (intro_inventory, intro_patterns)."""

import pytest

from mtls_deploy.errors import BadInput
from mtls_deploy.host_patterns import (
    evaluate,
    expand_range,
    natural_key,
    split_pattern,
    split_port,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("api1", ["api1"]),
        ("api[1:3]", ["api1", "api2", "api3"]),
        ("api[01:03].example.com", ["api01.example.com", "api02.example.com", "api03.example.com"]),
        ("web[a:c]", ["weba", "webb", "webc"]),
        ("db[1:10:3]", ["db1", "db4", "db7", "db10"]),
        ("db[01:10:4]", ["db01", "db05", "db09"]),
        ("n[x:B]", ["nx", "ny", "nz", "nA", "nB"]),
        ("r[1:2]-s[a:b]", ["r1-sa", "r1-sb", "r2-sa", "r2-sb"]),
        ("h[:2]", ["h0", "h1", "h2"]),
    ],
)
def test_ranges_expand_as_ansible_expands_them(name, expected):
    assert expand_range(name) == expected


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("api[1]", r"a range is \[begin:end\] or \[begin:end:step\]"),
        ("api[1:]", r"a range is \[begin:end\]"),
        ("api[01:100]", "a zero-padded range needs begin and end of one width"),
        ("api[3:1]", "must not come after its end"),
        ("api[c:a]", "must not come after its end"),
        ("api[1:3:0]", "step must be 1 or more"),
        ("api[1:x3]", "'x3' is neither a number nor a single letter"),
    ],
)
def test_a_bad_range_is_one_line_naming_it(name, why):
    with pytest.raises(BadInput, match=rf"^host range '{name[:3]}\[.*: .*{why}"):
        expand_range(name)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("api1:2222", ("api1", 2222)),
        ("api[1:3]:22", ("api[1:3]", 22)),
        ("api[1:3]", ("api[1:3]", None)),
        ("api1.example.test", ("api1.example.test", None)),
        ("a:b", ("a:b", None)),
    ],
)
def test_a_port_after_the_name_is_split_off_as_ansible_does(name, expected):
    assert split_port(name) == expected


HOSTS = ["api1", "api2", "api3", "api10", "web1", "db1", "lone"]
GROUPS = {
    "all": HOSTS,
    "api": ["api1", "api2", "api3", "api10"],
    "web": ["web1", "api1"],
    "db": ["db1"],
    "backend": ["web1", "api1", "db1"],
    "ungrouped": ["lone"],
}


def select(*patterns, kind="host"):
    return evaluate(list(patterns), HOSTS, GROUPS, kind)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("api2", ["api2"]),
        ("all", HOSTS),
        ("*", HOSTS),
        ("db", ["db1"]),
        ("api*", ["api1", "api2", "api3", "api10"]),
        ("*1", ["api1", "web1", "db1"]),
        ("~api[0-9]+", ["api1", "api2", "api3", "api10"]),
        ("~(web|db)", ["web1", "api1", "db1"]),  # groups' members first, then matching hosts
        ("~api1", ["api1", "api10"]),  # matched at the start only, as Ansible's re.match
        ("api:db", ["api1", "api2", "api3", "api10", "db1"]),
        ("api,db", ["api1", "api2", "api3", "api10", "db1"]),
        ("api:!api3", ["api1", "api2", "api10"]),
        ("api,!api3", ["api1", "api2", "api10"]),
        ("!api3:api", ["api1", "api2", "api10"]),  # exclusions apply last, wherever written
        ("api:&web", ["api1"]),
        ("&web:api", ["api1"]),
        ("api:db:&backend:!web", ["db1"]),
        ("!api", ["web1", "db1", "lone"]),  # only exclusions: from all
        ("ungrouped", ["lone"]),
        ("api[0]", ["api1"]),  # Ansible's subscripts: by position in the group
        ("api[1:2]", ["api2", "api3"]),
        ("api[-1]", ["api10"]),
        ("api[2:]", ["api3", "api10"]),
        ("api1:api1", ["api1"]),  # each host once
    ],
)
def test_patterns_select_as_ansible_limit_does(pattern, expected):
    assert select(pattern) == expected


def test_each_command_line_name_is_a_pattern_of_its_own():
    """``--host 'api:!api3,db'`` arrives as ["api:!api3", "db"] (the CLI splits on commas)."""
    assert select("api:!api3", "db") == ["api1", "api2", "api10", "db1"]
    assert select("api", "!api3") == ["api1", "api2", "api10"]


def test_split_pattern_keeps_brackets_whole():
    assert split_pattern("api[1:2]:!web") == ["api[1:2]", "!web"]
    assert split_pattern(" a , b ") == ["a", "b"]


def test_an_unknown_name_is_todays_one_line_error():
    with pytest.raises(BadInput, match=r"^unknown host 'api9'; known hosts: api1, api2, api3, "):
        select("api9")
    with pytest.raises(BadInput, match=r"^unknown group 'webs'; known groups: all, api, backend"):
        select("webs", kind="group")


def test_an_unknown_name_inside_a_pattern_names_the_pattern():
    with pytest.raises(BadInput, match=r"^unknown host 'apx' in pattern 'api:!apx'; known hosts"):
        select("api:!apx")


@pytest.mark.parametrize("pattern", ["zz*", "~zz", "api:&db", "api:!api", "db[5]"])
def test_a_pattern_matching_nothing_is_one_line(pattern):
    with pytest.raises(BadInput, match=r"^no host matches") as caught:
        select(pattern)
    assert "\n" not in str(caught.value)


def test_a_bad_regex_is_one_line():
    with pytest.raises(BadInput, match=r"^host pattern '~api\(' is not a valid regular expression"):
        select("~api(")


def test_an_empty_pattern_is_one_line():
    with pytest.raises(BadInput, match="^empty host pattern"):
        select(" , ")


def test_natural_order():
    assert sorted(["api10", "api2", "api1", "bob"], key=natural_key) == [
        "api1",
        "api2",
        "api10",
        "bob",
    ]


# --- through the command line -------------------------------------------------------------------

CLI_HOSTS = "all:\n  children:\n    api:\n      hosts:\n        api[1:3]: {ansible_port: 2299}\n"


@pytest.fixture
def inv(tmp_path, monkeypatch, capsys):
    """``inv(*argv)`` -> (exit code, stderr) of one command line, through Invoke's Program."""
    from pathlib import Path

    from invoke import Collection, Program
    from invoke.loader import FilesystemLoader

    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "hosts.yml").write_text(CLI_HOSTS)
    monkeypatch.setenv("MTLS_DEPLOY_INVENTORY", str(tmp_path / "inventory"))
    root = Path(__file__).resolve().parents[2]
    module, _ = FilesystemLoader(start=str(root)).load("tasks")
    program = Program(namespace=Collection.from_module(module), binary="inv")

    def run(*argv: str) -> tuple[int, str]:
        try:
            program.run(["inv", *argv])
            code = 0
        except SystemExit as stop:
            code = stop.code or 0
        return code, capsys.readouterr().err

    return run


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["provision", "--host", "zz*"], "error: no host matches 'zz*'; known hosts: api1, api2, api3"),
        (["provision", "--host", "api:&ungrouped"], "error: no host matches 'api:&ungrouped'"),
        (["provision", "--group", "api:!api[1-3]"], "error: no host matches 'api:!api[1-3]'"),
        (["provision", "--host", "api:!api9"], "error: unknown host 'api9' in pattern 'api:!api9'"),
        (["hosts.trust", "--host", "api,nope"], "error: unknown host 'nope' in pattern 'api,nope'"),
        (["hosts.run", "--host", "~api(", "--command", "id"], "error: host pattern '~api('"),
    ],
)  # fmt: skip
def test_a_pattern_on_the_command_line_is_one_line_and_exit_2(inv, argv, line):
    code, err = inv(*argv)
    assert code == 2 and err.startswith(line) and err.count("\n") == 1, err
