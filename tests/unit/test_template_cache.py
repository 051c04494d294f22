"""Compiled templates are kept between runs (start-up, issue "Architecture"): in a private folder
of the user's cache, one per Jinja2 version and environment options; a cache that cannot be
used only costs the compile."""

import os
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

from mtls_deploy import templating

REPO = Path(__file__).resolve().parents[2]
RENDER = """
import sys
import jinja2.environment
compiled = []
real = jinja2.environment.Environment._compile
def counting(self, source, filename):
    compiled.append(filename)
    return real(self, source, filename)
jinja2.environment.Environment._compile = counting
from mtls_deploy.templating import render
out = render("systemd/nginx-hardening.conf.j2", writable=sys.argv[1:])
print(len(compiled), out.decode().count("ReadWritePaths"))
"""


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def run_render(cache_home: Path, writable: str = "/run") -> list[int]:
    """(templates compiled, lines rendered) of a render in a fresh process; other variables
    each time, or the rendered output would be remembered (render_memo) and nothing loaded."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(cache_home)}
    argv = [sys.executable, "-c", RENDER, writable]
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return [int(x) for x in done.stdout.split()]


def test_the_second_run_compiles_nothing(cache_home):
    compiled, rendered = run_render(cache_home, "/run")
    assert compiled == 1 and rendered == 1
    assert run_render(cache_home, "/srv") == [0, 1]  # rendered from the compiled code
    (folder,) = (cache_home / "mtls-deploy").glob("jinja2-*")
    assert folder.stat().st_mode & 0o777 == 0o700


def test_a_folder_others_may_write_is_not_used(cache_home):
    cache = templating.bytecode_cache.__wrapped__(jinja2.__version__)
    assert cache is not None
    own = Path(cache.directory)
    own.chmod(0o777)
    assert templating.bytecode_cache.__wrapped__(jinja2.__version__) is None


def test_an_unwritable_cache_only_costs_the_compile(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert run_render(blocker) == [1, 1]


def test_the_folder_changes_with_the_jinja2_version(cache_home):
    one = templating.bytecode_cache.__wrapped__("3.1.6").directory
    other = templating.bytecode_cache.__wrapped__("3.2.0").directory
    assert one != other
