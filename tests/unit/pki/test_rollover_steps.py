"""The rollover's orchestration (``mtls_deploy/rollover.py``) where it decides without a lab: the
server CA's finish is refused while an API host serves a certificate of the old CA."""

import pytest
from cryptography import x509

from mtls_deploy import rollover
from mtls_deploy.errors import UserError
from mtls_deploy.runner import HostResult


def subject(path) -> str:
    return x509.load_pem_x509_certificate(path.read_bytes()).subject.rfc4514_string()


@pytest.fixture
def switched(pki_store, monkeypatch):
    """A server CA rollover past its switch; one API host, api1, whose served issuer is set."""
    pki_store.start_rollover("server")
    pki_store.switch_to_new_ca("server")
    served = {}
    monkeypatch.setattr(rollover, "_api_hosts", lambda: ["api1"])
    monkeypatch.setattr(rollover, "served_issuer", lambda h: HostResult(h, data=dict(served)))
    return pki_store, served


def test_server_finish_is_refused_while_a_host_serves_the_old_ca(switched):
    store, served = switched
    served["issuer"] = old = subject(store.path / "server-ca.old.crt")
    with pytest.raises(UserError, match=f"serves a certificate of the new server CA yet: api1 "
                                        f"\\({old}\\); run `inv provision`, or finish with --force"):  # fmt: skip
        rollover.finish("server")
    assert store.rollover_phase("server") == "servers"


def test_server_finish_goes_on_once_every_host_serves_the_new_ca(switched, monkeypatch):
    store, served = switched
    served["issuer"] = subject(store.path / "server-ca.crt")
    monkeypatch.setattr(rollover, "redeliver_bundles", lambda store: rollover.GroupResult([]))
    assert rollover.finish("server").results == []
    assert store.rollover_phase("server") is None


def test_client_start_moves_no_client_when_an_api_host_missed_the_new_ca(
    pki_store, monkeypatch, capsys
):
    pki_store.issue_client("bob")
    failed = rollover.GroupResult([HostResult("api1", error="unreachable")])
    monkeypatch.setattr(rollover, "push_trust", lambda store: failed)
    monkeypatch.setattr(rollover, "move_clients", lambda *a: pytest.fail("moved clients"))
    assert rollover.start("client") is failed
    out = capsys.readouterr().out
    assert "run `inv pki.rollover --ca client --finish` to go on" in out
    assert pki_store.rollover_phase("client") == "trusting"  # the new CA does not issue yet
    assert pki_store.client_status("bob") == "valid"


def test_client_finish_goes_on_from_a_start_that_stopped(pki_store, monkeypatch):
    pki_store.issue_client("bob")
    pki_store.start_rollover("client")  # as if the push had failed: the new CA trusted, idle
    done, moved = rollover.GroupResult([]), []
    monkeypatch.setattr(rollover, "push_trust", lambda store: done)
    monkeypatch.setattr(rollover, "move_clients", lambda store, names: moved.extend(names) or done)
    with pytest.raises(UserError, match="still has valid client certificates: bob"):
        rollover.finish("client")  # switched and moved; bob's move is faked, so it stays valid
    assert moved == ["bob"] and pki_store.rollover_phase("client") == "overlap"
