"""The ``required`` marker: outside CI a skip is a skip; under CI it fails the run."""

import pytest

pytest_plugins = ["pytester"]

SAMPLE = """
import pytest

@pytest.mark.required
@pytest.mark.skipif(True, reason="no lab here")
def test_needs_the_lab():
    pass

@pytest.mark.required
def test_skips_itself():
    pytest.skip("tool missing")

@pytest.mark.skipif(True, reason="optional")
def test_optional():
    pass

@pytest.mark.required
@pytest.mark.xfail(reason="known bug")
def test_known_bug():
    assert False

@pytest.mark.required
def test_runs():
    pass

@pytest.mark.lab
@pytest.mark.skipif(True, reason="not root")
def test_on_the_lab():
    pass
"""


def run_sample(pytester, monkeypatch, ci: str | None):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    pytester.makeconftest((root / "conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    required: must run in CI\n    lab: on the lab\n")
    pytester.makepyfile(SAMPLE)
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    return pytester.runpytest_subprocess("-rA")


def test_without_ci_a_required_skip_is_a_skip(pytester, monkeypatch):
    result = run_sample(pytester, monkeypatch, None)
    result.assert_outcomes(passed=1, skipped=4, xfailed=1)
    assert result.ret == 0


@pytest.mark.parametrize("value", ["false", "0"])
def test_ci_false_is_not_ci(pytester, monkeypatch, value):
    assert run_sample(pytester, monkeypatch, value).ret == 0


def test_under_ci_a_required_skip_fails_the_run(pytester, monkeypatch):
    result = run_sample(pytester, monkeypatch, "true")
    result.assert_outcomes(passed=1, skipped=1, xfailed=1, failed=1, errors=2)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*required test skipped under CI*no lab here*"])
    result.stdout.fnmatch_lines(["*required test skipped under CI*tool missing*"])
    result.stdout.fnmatch_lines(["*required test skipped under CI*not root*"])  # a lab test
