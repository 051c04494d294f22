"""provision's HostRun through a fake transport that replays api1's recorded facts
(tests/unit/fakes.py): the round trips a run costs, and what each kind of answer makes of it.

Assertions name the steps they are about, never the whole list: roles and the engine may add
resources (a manifest) without these tests changing.
"""

from dataclasses import replace
from types import SimpleNamespace

import pytest

from mtls_deploy import role_loader
from mtls_deploy.connection import CommandResult
from mtls_deploy.operations import secret_summary
from mtls_deploy.provision import HostRun, PrepareContext, RunOptions, prepare
from tests.unit.fakes import FakeHost, FakeRemote, FakeTransport, api_vars

SITE = "/etc/nginx/conf.d/api.conf"
KEY = "/etc/nginx/mtls/server.key"
POOL = "/etc/php/8.2/fpm/pool.d/api.conf"


@pytest.fixture
def v(pki_store):
    """api1's variables, its server certificate issued (as the prepare step leaves it)."""
    v = api_vars()
    prepare(role_loader.host_roles(v), v, PrepareContext("api1", check=False))
    return v


def host_run(remote, v, **options) -> HostRun:
    return HostRun(remote, role_loader.host_roles(v), v, RunOptions(**options))


def converged(v) -> FakeHost:
    """api1 as recorded, holding what its roles want now (this PKI's certificates)."""
    host = FakeHost.recorded("api1")
    return host.converged(host_run(None, v).resources(host.facts()))


def step(steps, name):
    return next(s for s in steps if s.name == name)


def not_ok(steps) -> list:
    return [(s.kind, s.name, s.status, s.reason) for s in steps if s.status != "ok"]


def test_a_converged_host_is_one_round_trip_and_all_ok(v):
    host = converged(v)
    remote = FakeRemote(host)
    steps = host_run(remote, v).converge(host.facts())
    assert remote.channels == 1 and not_ok(steps) == []
    assert step(steps, KEY).reason == "already present, sha256 matches"
    assert step(steps, POOL).status == "ok"  # the PHP version came from the recorded facts
    assert {"packages", "directory", "file", "user", "service"} <= {s.kind for s in steps}


def test_without_a_guess_the_host_costs_exactly_one_more_round_trip(v):
    host = converged(v)
    remote = FakeRemote(host)
    steps = host_run(remote, v).converge(None)
    assert remote.channels == 2 and not_ok(steps) == []
    assert "@@resources" not in remote.scripts[1]  # the second trip asks for resources only
    assert KEY in remote.scripts[1]


def test_a_wrong_guess_asks_again_only_for_what_it_missed(v):
    host = converged(v)
    remote = FakeRemote(host)
    other_php = {n.replace("8.2", "8.1"): x for n, x in host.facts().packages.items()}
    steps = host_run(remote, v).converge(replace(host.facts(), packages=other_php))
    assert remote.channels == 2 and not_ok(steps) == []
    assert POOL in remote.scripts[1] and KEY not in remote.scripts[1]


def test_check_mode_plans_a_change_and_never_applies(v):
    host = converged(v).with_content(SITE, b"an old site\n")
    remote = FakeRemote(host)
    steps = host_run(remote, v, check=True).converge(host.facts())
    assert step(steps, SITE).status == "changed"
    assert remote.channels == 1 and remote.applies == []


def test_check_mode_with_a_package_missing_installs_nothing(v):
    host = converged(v).without_packages("nginx")
    remote = FakeRemote(host)
    steps = host_run(remote, v, check=True).converge(host.facts())
    assert any(s.kind == "packages" and s.status == "changed" for s in steps)
    assert steps[-1].kind == "note" and steps[-1].status == "skipped"
    assert remote.channels == 1 and not any("apt-get" in s for s in remote.scripts)


def test_a_failed_apt_marks_the_package_steps_failed_with_apts_last_line(v):
    host = converged(v).without_packages("nginx")
    host.apt_error = "E: Unable to locate package nginx"
    remote = FakeRemote(host)
    steps = host_run(remote, v).converge(host.facts())
    failed = [s for s in steps if s.status == "failed"]
    assert failed and all(s.kind == "packages" and "nginx" in s.name.split() for s in failed)
    assert {s.reason for s in failed} == {"E: Unable to locate package nginx"}
    assert all(s.kind == "packages" for s in steps)  # nothing planned on top of a failed install
    assert remote.channels == 2 and remote.applies == []


def test_diffs_attach_to_changed_files_without_fetching_secrets(v):
    host = converged(v).with_content(SITE, b"an old site\n").with_content(KEY, b"an old key\n")
    remote = FakeRemote(host)
    steps = host_run(remote, v, check=True, diff=True).converge(host.facts())
    fetch = next(s for s in remote.scripts if "@@file" in s)
    assert SITE in fetch and KEY not in fetch
    assert "-an old site" in step(steps, SITE).diff
    key = step(steps, KEY)
    assert key.diff == secret_summary(KEY, key.resource.content)
    assert b"PRIVATE KEY" in key.resource.content and "PRIVATE KEY" not in key.diff


def test_a_changed_file_is_applied_checked_by_its_roles_validator_and_reloaded(v):
    host = converged(v).with_content(SITE, b"an old site\n")
    remote = FakeRemote(host)
    steps = host_run(remote, v).converge(host.facts())
    assert remote.channels == 2 and len(remote.applies) == 1
    assert "nginx -t" in remote.applies[0] and SITE in remote.applies[0]
    assert KEY not in remote.applies[0]  # only what changed is written
    assert step(steps, SITE).status == "changed"
    assert ("handler", "reload nginx", "changed") in [(s.kind, s.name, s.status) for s in steps]


def test_a_refused_file_is_reported_reverted_with_the_validators_error_line(v):
    host = converged(v).with_content(SITE, b"an old site\n")
    refusal = 'nginx: [emerg] unknown directive "brokn"\nnginx: configuration test failed'
    host.apply_reply = lambda script: CommandResult(f"@@invalid nginx\n{refusal}\n@@end\n", "", 3)
    steps = host_run(FakeRemote(host), v).converge(host.facts())
    assert (step(steps, SITE).status, step(steps, SITE).reason) == (
        "failed",
        "reverted: nginx -t failed",
    )
    check = next(s for s in steps if s.kind == "validate")
    assert check.reason == 'nginx: [emerg] unknown directive "brokn"'
    assert not any(s.kind == "handler" for s in steps)


@pytest.fixture
def transport(monkeypatch, tmp_path, pki_env):
    """provision_host's ``Remote`` is the fake; the fact cache is this test's own."""
    from mtls_deploy import provision

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (pki_env.root / "inventory").mkdir()  # the project directory
    fake = FakeTransport()
    monkeypatch.setattr(provision, "Remote", fake.connect)
    return fake


def test_the_prepare_steps_lead_and_the_next_run_guesses_from_the_cache(v, transport):
    from mtls_deploy.provision import provision_host

    transport.hosts["api1"] = converged(v)
    host = SimpleNamespace(name="api1", vars=v)
    first = provision_host(host, RunOptions())
    kinds = [s.kind for s in first.steps]
    assert kinds[:2] == ["pki", "pki"] and "pki" not in kinds[2:]
    assert [s.name for s in first.steps[:2]] == ["server certificate", "crl"]
    assert first.data == {"ssh_channels": 2} and not_ok(first.steps) == []  # no cache yet
    again = provision_host(host, RunOptions())
    assert again.data == {"ssh_channels": 1} and not_ok(again.steps) == []
