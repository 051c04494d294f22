"""Shared fixtures. The user's own SSH config and agent never leak into a test. Under CI, a
skipped test marked ``required`` fails the run."""

import os

import pytest


@pytest.fixture(autouse=True)
def no_user_ssh_config(monkeypatch, tmp_path_factory):
    """Tests must not read ~/.ssh/config, ~/.ssh/known_hosts or talk to an SSH agent."""
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


def under_ci() -> bool:
    """``CI`` is set (CI services set CI=true), and not to 0 or false."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def pytest_collection_modifyitems(items):
    """Every ``lab`` test is ``required``, also one with skip marks of its own (test_lab.py)."""
    for item in items:
        if item.get_closest_marker("lab") and not item.get_closest_marker("required"):
            item.add_marker(pytest.mark.required)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI, a skip of a ``required`` test (the lab's tests: no root, no systemd-nspawn,
    a missing tool) is a failure: a skipped test must never count as passing there."""
    outcome = yield
    report = outcome.get_result()
    skipped = report.skipped and not hasattr(report, "wasxfail")  # an xfail reports "skipped"
    if skipped and under_ci() and item.get_closest_marker("required"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"required test skipped under CI ({reason}): CI must run it"
