"""The CRL push is a provision run that takes only the resources tagged ``crl``: the shared
fake transport (tests/unit/fakes.py) replays api1's recorded answers, so the round trips can
be counted without a lab."""

from types import SimpleNamespace

import pytest

from mtls_deploy import role_loader
from mtls_deploy.provision import HostRun, RunOptions
from tests.unit.fakes import FakeHost, FakeRemote, FakeTransport, api_vars


def crl_path(v) -> str:
    return role_loader.exports_for(v, "tls")["tls_crl"]


def crl_run(remote, v):
    roles = role_loader.host_roles(v)
    return HostRun(remote, roles, v, RunOptions(tags=("crl",))).converge(None)


def test_a_current_crl_is_one_round_trip_and_one_step(pki_store):
    v = api_vars()
    path = crl_path(v)
    remote = FakeRemote(FakeHost.recorded("api1").with_content(path, pki_store.crl_pem()))
    steps = crl_run(remote, v)
    assert [(s.kind, s.name, s.status) for s in steps if s.kind == "file"] == [
        (
            "file",
            path,
            "ok",
        )
    ]
    assert all(s.status == "ok" for s in steps)
    assert remote.channels == 1  # no fact cache needed: the tagged resource is known
    assert "apt-get" not in remote.scripts[0]  # no package step in a CRL push


def test_a_changed_crl_is_written_checked_and_reloaded(pki_store):
    v = api_vars()
    path = crl_path(v)
    remote = FakeRemote(FakeHost.recorded("api1").with_content(path, b"an old CRL\n"))
    crl_run(remote, v)
    assert remote.channels == 2
    apply_script = remote.applies[0]
    assert path in apply_script and "nginx -t" in apply_script  # the nginx role's validator
    assert "mtls_accepting" in apply_script  # the nginx role's reload-and-wait, by name
    assert "server.key" not in apply_script  # nothing but the tagged file


@pytest.fixture
def counted_issues(monkeypatch, pki_store, tmp_path):
    """Every ``server_cert`` call the run makes, through a fake transport and a fresh cache."""
    from mtls_deploy import provision

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(provision, "Remote", FakeTransport(FakeHost.recorded("api1")).connect)
    calls = []
    original = type(pki_store).server_cert

    def counting(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(pki_store), "server_cert", counting)
    return calls


@pytest.mark.parametrize("check", [True, False])
def test_prepare_runs_once_per_host_before_planning(counted_issues, pki_env, check):
    from mtls_deploy.provision import provision_host

    (pki_env.root / "inventory").mkdir()  # the project directory (nothing is read from it)
    host = SimpleNamespace(name="api1", vars=api_vars())
    before = {p: p.read_bytes() for p in pki_env.pki_dir.rglob("*") if p.is_file()}
    result = provision_host(host, RunOptions(check=check))
    first = result.steps[0]
    assert (first.kind, first.name, first.status) == ("pki", "server certificate", "changed")
    assert first.reason == ("would issue" if check else "issued") + ": no certificate yet"
    assert len(counted_issues) == (0 if check else 1)  # the plan itself never issues
    if check:
        after = {p: p.read_bytes() for p in pki_env.pki_dir.rglob("*") if p.is_file()}
        assert after == before
