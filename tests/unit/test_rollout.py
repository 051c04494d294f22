"""rollout.push_crl through the fake transport: several hosts in parallel, each answering as
api1 answered once (tests/unit/fakes.py), each in the state its case needs."""

import io
from types import SimpleNamespace

import pytest

from mtls_deploy import role_loader, rollout
from tests.unit.fakes import FakeHost, FakeTransport, api_vars

TLS_DIR = "/etc/nginx/mtls"


@pytest.fixture
def transport(monkeypatch, tmp_path, pki_env):
    """provision's ``Remote`` is the fake; the fact cache and project directory are the test's."""
    from mtls_deploy import provision

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (pki_env.root / "inventory").mkdir()
    fake = FakeTransport()
    monkeypatch.setattr(provision, "Remote", fake.connect)
    return fake


def inventory_of(*names):
    """What push_crl reads of an inventory: ``select`` (names or group api)."""
    hosts = [
        SimpleNamespace(name=n, vars=api_vars(n, ansible_port=2200 + i))
        for i, n in enumerate(names)
    ]
    return SimpleNamespace(
        select=lambda wanted, group: [h for h in hosts if not wanted or h.name in wanted]
    )


def push(transport, pki_store, cases: dict) -> tuple:
    """Each host named in ``cases`` set up by its function; push; (results by host, output)."""
    crl = role_loader.exports_for(api_vars(), "tls")["tls_crl"]
    for name, case in cases.items():
        transport.hosts[name] = case(FakeHost.recorded("api1", name=name), crl, pki_store)
    out = io.StringIO()
    group = rollout.push_crl(pki_store, loaded=inventory_of(*cases), stream=out)
    return {r.host: r for r in group.results}, out.getvalue()


def current(host, crl, store):
    return host.with_content(crl, store.crl_pem())


def stale(host, crl, store):
    return host.with_content(crl, b"last week's CRL\n")


def never_provisioned(host, crl, store):
    return host.without(TLS_DIR)


def statuses(result) -> list:
    return [(s.kind, s.name, s.status) for s in result.steps]


def test_each_host_gets_what_its_crl_needs_in_parallel(transport, pki_store):
    results, out = push(transport, pki_store, {"api1": current, "api2": stale, "api3": current})
    crl = f"{TLS_DIR}/crl.pem"
    assert statuses(results["api1"]) == statuses(results["api3"]) == [("file", crl, "ok")]
    assert [transport.remotes[n].channels for n in ("api1", "api2", "api3")] == [1, 2, 1]
    assert statuses(results["api2"]) == [
        ("file", crl, "changed"),
        ("handler", "reload nginx", "changed"),
    ]
    assert "nginx -t" in transport.remotes["api2"].applies[0]
    assert "RECAP" in out and "api2 : ok=0 changed=2 failed=0 skipped=0" in out


def test_a_host_without_the_tls_directory_fails_with_the_provision_hint(transport, pki_store):
    results, out = push(transport, pki_store, {"api1": current, "api2": never_provisioned})
    assert not results["api1"].failed
    failed = [s for s in results["api2"].steps if s.status == "failed"]
    assert [(s.name, s.reason) for s in failed] == [
        (
            f"{TLS_DIR}/crl.pem",
            f"{TLS_DIR} is missing: provision the host first (inv provision --host api2)",
        )
    ]
    assert "api2 : ok=0 changed=0 failed=1" in out


def test_names_pick_the_hosts(transport, pki_store):
    transport.hosts["api2"] = FakeHost.recorded("api1", name="api2")
    group = rollout.push_crl(
        pki_store, names=["api2"], loaded=inventory_of("api1", "api2"), stream=io.StringIO()
    )
    assert [r.host for r in group.results] == ["api2"] and list(transport.remotes) == ["api2"]
