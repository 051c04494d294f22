"""Rendered templates are remembered between runs (start-up, issue "Architecture"), and used only
while every template the render loaded is the same file with the same bytes and the variables
are exactly the same."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtls_deploy import render_memo
from mtls_deploy.errors import BadInput
from mtls_deploy.templating import render

REPO = Path(__file__).resolve().parents[2]
FRESH_PROCESS = """
import sys
from mtls_deploy.templating import render
out = render("systemd/nginx-hardening.conf.j2", writable=["/run", "/var/log/nginx"])
print("jinja2" if "jinja2" in sys.modules else "no jinja2", out.decode().count("/var/log/nginx"))
"""


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def entries(cache_home: Path) -> list[Path]:
    return sorted((cache_home / "mtls-deploy" / "rendered").glob("*.json"))


def test_the_second_run_renders_without_jinja2(cache_home):
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(cache_home)}

    def run() -> str:
        done = subprocess.run([sys.executable, "-c", FRESH_PROCESS], env=env, cwd=REPO,
                              capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert run() == "jinja2 1"
    assert run() == "no jinja2 1"
    assert (cache_home / "mtls-deploy" / "rendered").stat().st_mode & 0o777 == 0o700
    assert all(e.stat().st_mode & 0o777 == 0o600 for e in entries(cache_home))


def test_an_edited_include_is_rendered_again(tmp_path):
    (tmp_path / "site.j2").write_text('server {\n{% include "part.j2" %}}\n')
    (tmp_path / "part.j2").write_text("  listen {{ port }};\n")
    assert render("site.j2", templates_dir=tmp_path, port=1) == b"server {\n  listen 1;\n}\n"
    (tmp_path / "part.j2").write_text("  listen {{ port }} ssl;\n")
    assert render("site.j2", templates_dir=tmp_path, port=1) == b"server {\n  listen 1 ssl;\n}\n"


def test_a_missing_include_that_appears_is_rendered_again(tmp_path):
    (tmp_path / "site.j2").write_text('a\n{% include "extra.j2" ignore missing %}b\n')
    assert render("site.j2", templates_dir=tmp_path) == b"a\nb\n"
    (tmp_path / "extra.j2").write_text("extra\n")
    assert render("site.j2", templates_dir=tmp_path) == b"a\nextra\nb\n"


def test_a_tuple_is_not_a_list_and_order_counts(tmp_path):
    (tmp_path / "t.j2").write_text("{{ v }} {% for k in d %}{{ k }}{% endfor %};\n")
    assert render("t.j2", templates_dir=tmp_path, v=[1], d={"a": 1, "b": 2}) == b"[1] ab;\n"
    assert render("t.j2", templates_dir=tmp_path, v=(1,), d={"a": 1, "b": 2}) == b"(1,) ab;\n"
    assert render("t.j2", templates_dir=tmp_path, v=[1], d={"b": 2, "a": 1}) == b"[1] ba;\n"
    assert render("t.j2", templates_dir=tmp_path, v=[True], d={}) == b"[True] ;\n"
    assert render("t.j2", templates_dir=tmp_path, v=[1], d={}) == b"[1] ;\n"


def test_variables_that_are_not_plain_data_are_not_remembered(tmp_path, cache_home):
    (tmp_path / "t.j2").write_text("{{ v }}\n")
    assert render("t.j2", templates_dir=tmp_path, v=Path("/srv")) == b"/srv\n"
    assert render("t.j2", templates_dir=tmp_path, v={1: "x"}) == b"{1: 'x'}\n"
    assert entries(cache_home) == []


def test_a_failed_render_is_not_remembered(tmp_path, cache_home):
    (tmp_path / "t.j2").write_text("listen {{ https_port }};\n")
    for _ in range(2):
        with pytest.raises(BadInput, match="'https_port' is undefined"):
            render("t.j2", templates_dir=tmp_path)
    assert entries(cache_home) == []


def test_a_folder_others_may_write_is_not_read(tmp_path, cache_home):
    (tmp_path / "t.j2").write_text("{{ v }}\n")
    render("t.j2", templates_dir=tmp_path, v="one")
    (entry,) = entries(cache_home)
    entry.write_text(entry.read_text().replace("one", "forged"))
    entry.parent.chmod(0o777)
    assert render("t.j2", templates_dir=tmp_path, v="one") == b"one\n"
    entry.parent.chmod(0o700)
    assert render("t.j2", templates_dir=tmp_path, v="one") == b"forged\n"  # the memo is read


def test_old_entries_are_pruned(tmp_path, cache_home, monkeypatch):
    monkeypatch.setattr(render_memo, "KEEP", 4)
    (tmp_path / "t.j2").write_text("{{ v }}\n")
    for n in range(12):
        render("t.j2", templates_dir=tmp_path, v=n)
    assert 4 <= len(entries(cache_home)) <= 5
