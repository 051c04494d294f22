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


# Under pytest-xdist (``-n 2``, scripts/test.sh), the lab modules that share lab hosts or a
# session's world run in one worker, one after the other: the default lab (api1, bob, the
# project's PKI), the toolbox host and Pebble; the security lab; the bench's fleet. Every other
# test module is a unit of its own (its own hosts and ports), so two run side by side.
SHARED_LAB = {
    "default-lab": ("test_connection", "test_deliver", "test_lab", "test_lab_acme", "test_acme",
                    "test_site_in_lab", "test_smoke", "test_awkward_values", "test_policy_rc"),
    "security-lab": ("test_tls_quality", "test_hardening"),
    "fleet": ("test_bench_quick", "test_soak"),
}  # fmt: skip
GROUP_OF = {module: group for group, modules in SHARED_LAB.items() for module in modules}


def pytest_collection_modifyitems(items):
    """Every ``lab`` test is ``required``, also one with skip marks of its own (test_lab.py)."""
    for item in items:
        if item.get_closest_marker("lab") and not item.get_closest_marker("required"):
            item.add_marker(pytest.mark.required)


def scope_of(nodeid: str) -> str:
    """The unit of work a test belongs to: its lab group, else its file."""
    path = nodeid.split("::", 1)[0]
    module = path.rsplit("/", 1)[-1].removesuffix(".py")
    return GROUP_OF.get(module, path) if "/integration/" in f"/{path}" else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """xdist's loadfile, with the lab groups above as units. (Its own ``loadgroup`` reads
    marks it writes into ``item._nodeid``, which pytest 9 no longer reads.)"""
    from xdist.scheduler import LoadFileScheduling

    class LabGroupScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return LabGroupScheduling(config, log)


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
