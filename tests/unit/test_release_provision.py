"""``inv provision`` deploys app_src on its own connection: ``RunOptions.then`` runs after the
roles, on the same ``Remote``, only when none of their steps failed (provision_host through
the fake transport of tests/unit/fakes.py)."""

from types import SimpleNamespace

import pytest

from mtls_deploy import role_loader
from mtls_deploy.connection import CommandResult
from mtls_deploy.operations import Step
from mtls_deploy.provision import HostRun, PrepareContext, RunOptions, prepare, provision_host
from tests.unit.fakes import FakeHost, FakeTransport, api_vars

SITE = "/etc/nginx/conf.d/api.conf"
RELEASED = Step("app", "release 20261130T080000Z-0a2b3c4d5e6f", "ok", "the tree is unchanged")


@pytest.fixture
def v(pki_store):
    v = api_vars()
    prepare(role_loader.host_roles(v), v, PrepareContext("api1", check=False))
    return v


@pytest.fixture
def transport(monkeypatch, tmp_path, pki_env, v):
    from mtls_deploy import provision

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (pki_env.root / "inventory").mkdir()
    host = FakeHost.recorded("api1")
    wanted = HostRun(None, role_loader.host_roles(v), v, RunOptions()).resources(host.facts())
    fake = FakeTransport(host.converged(wanted))
    monkeypatch.setattr(provision, "Remote", fake.connect)
    return fake


def test_then_runs_after_the_roles_on_the_same_connection(v, transport):
    seen = []
    then = lambda remote: seen.append(remote) or [RELEASED]  # noqa: E731
    result = provision_host(SimpleNamespace(name="api1", vars=v), RunOptions(then=then))
    assert seen == [transport.remotes["api1"]] and result.steps[-1] is RELEASED
    assert not result.failed


def test_then_is_skipped_when_a_roles_step_failed(v, transport):
    host = transport.hosts["api1"] = transport.hosts["api1"].with_content(SITE, b"an old site\n")
    refusal = 'nginx: [emerg] unknown directive "brokn"'
    host.apply_reply = lambda script: CommandResult(f"@@invalid nginx\n{refusal}\n@@end\n", "", 3)
    seen = []
    result = provision_host(SimpleNamespace(name="api1", vars=v), RunOptions(then=seen.append))
    assert result.failed and seen == [] and RELEASED not in result.steps
