"""Files on the control machine (mtls_deploy/files.py): YAML parsing, and what importing costs."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mtls_deploy.files import parse_yaml, sync_filesystem

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "path",
    sorted([*ROOT.glob("roles/*/*.yml"), *ROOT.glob("inventory/**/*.yml")]),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_parse_yaml_reads_every_yaml_file_of_ours_as_the_pure_python_parser_does(path):
    text = path.read_text()
    assert parse_yaml(text) == yaml.safe_load(text)


def test_yaml_1_1_words_stay_what_they_were():
    assert parse_yaml("a: yes\nb: on\nc: '0644'\nd: 0644\ne: ~\n") == {
        "a": True,
        "b": True,
        "c": "0644",
        "d": 420,
        "e": None,
    }


@pytest.mark.parametrize(
    "text, problem",
    [
        ("\tx: 1\n", "found character '\\t' that cannot start any token"),
        ("a: *nope\n", "found undefined alias 'nope'"),
        ("a: [1, 2\nb: 3\n", "expected ',' or ']', but got ':'"),
    ],
)
def test_a_syntax_error_is_told_as_the_pure_python_parser_tells_it(text, problem):
    with pytest.raises(yaml.MarkedYAMLError) as raised:
        parse_yaml(text)
    assert raised.value.problem == problem


def test_importing_files_runs_no_ldconfig_and_loads_no_ctypes():
    """``find_library`` runs ldconfig: only a sync may pay for it, not every command's start."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys, mtls_deploy.files; print('ctypes' in sys.modules)"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert done.stdout.strip() == "False"


def test_sync_filesystem_still_syncs(tmp_path):
    (tmp_path / "f").write_text("x")
    sync_filesystem(tmp_path)  # syncfs(2) found on first use; no error
