"""The tls role's plan is pure: ``resources`` reads the PKI and never writes it; issuing the
server certificate and re-signing the CRL happen in ``prepare``, once, and in check mode not
at all."""

import hashlib
from dataclasses import dataclass
from datetime import timedelta

import pytest

from mtls_deploy import role_loader
from mtls_deploy.facts import HostFacts

V = {
    "inventory_hostname": "api1",
    "server_name": "api1.example.com",
    "server_aliases": [],
    "server_ip_addresses": [],
    "tls_dir": "/etc/nginx/mtls",
    "server_cert": "private",
    "crl_refresh_fraction": 0.33,
}


@dataclass(frozen=True)
class Context:
    host: str = "api1"
    check: bool = False


def tls():
    return role_loader.load("tls").module


def pki_hashes(folder) -> dict:
    """Every file under the PKI directory (the index included), by content."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def forbid_writes(monkeypatch, store_class):
    def refuse(*args, **kwargs):
        raise AssertionError("the plan wrote to the PKI")

    for name in ("server_cert", "refresh_crl", "issue_client", "revoke_client"):
        monkeypatch.setattr(store_class, name, refuse)


def test_resources_never_write_the_pki(pki_store, pki_env, monkeypatch):
    """No certificate yet (a writer would issue one): nothing written, nothing signed."""
    before = pki_hashes(pki_env.pki_dir)
    forbid_writes(monkeypatch, type(pki_store))
    resources = tls().resources(V, HostFacts())
    certificate = next(r for r in resources if r.path.endswith("server.crt"))
    assert b"would be issued" in certificate.content  # a placeholder: the plan shows a change
    crl = next(r for r in resources if r.path.endswith("crl.pem"))
    assert crl.tags == ("crl",) and crl.content == pki_store.crl_pem()
    assert pki_hashes(pki_env.pki_dir) == before


def test_check_mode_prepare_says_what_it_would_do_and_writes_nothing(pki_store, pki_env):
    before = pki_hashes(pki_env.pki_dir)
    steps = tls().prepare(V, Context(check=True))
    assert [(s.kind, s.name, s.status) for s in steps] == [
        ("pki", "server certificate", "changed"),
        ("pki", "crl", "ok"),
    ]
    assert steps[0].reason == "would issue: no certificate yet"
    assert steps[1].reason.startswith("valid ") and steps[1].reason.endswith(" more days")
    assert pki_hashes(pki_env.pki_dir) == before


def test_prepare_issues_once_then_reports_ok(pki_store, pki_env):
    first = tls().prepare(V, Context())[0]
    assert (first.status, first.reason) == ("changed", "issued: no certificate yet")
    after_issue = pki_hashes(pki_env.pki_dir)
    again = tls().prepare(V, Context())[0]
    assert again.status == "ok" and again.reason.startswith("valid until ")
    assert tls().prepare(V, Context(check=True))[0].status == "ok"
    assert pki_hashes(pki_env.pki_dir) == after_issue
    resources = tls().resources(V, HostFacts())
    certificate = next(r for r in resources if r.path.endswith("server.crt"))
    assert certificate.content.startswith(b"-----BEGIN CERTIFICATE-----")


@pytest.mark.parametrize("check", [True, False])
def test_a_crl_near_its_end_is_re_signed_only_outside_check_mode(pki_store, pki_env, check):
    now = pki_store.crl_next_update() - timedelta(days=3)
    before = pki_store.crl_pem()
    step = tls().prepare_crl(pki_store, V, Context(check=check), now=now)
    assert step.status == "changed"
    if check:
        assert step.reason == "would re-sign: 3 days left" and pki_store.crl_pem() == before
    else:
        assert step.reason == "re-signed: 3 days were left" and pki_store.crl_pem() != before


def test_the_recap_says_renewed_with_the_days_that_were_left():
    why = tls().why_issued
    assert why("12 days left (< 30)") == "renewed: 12 days were left"
    assert "would " + why("12 days left (< 30)", check=True) == "would renew: 12 days left"
    assert why("no certificate yet") == "issued: no certificate yet"
    assert why("signed by another server CA") == "issued: signed by another server CA"


def test_prepare_signs_with_the_inventorys_lifetimes(pki_store, pki_env):
    """server_lifetime and crl_lifetime (group_vars/all) reach the PKI through the host's
    variables: a 3-minute server certificate, a CRL re-signed for 2 minutes."""
    from cryptography import x509

    v = {**V, "server_lifetime": "3m", "crl_lifetime": "2m"}
    tls().prepare(v, Context())
    cert = x509.load_pem_x509_certificate(
        (pki_env.pki_dir / "servers" / "api1" / "api1.crt").read_bytes()
    )
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(seconds=189)
    store = tls()._store(v)
    store.refresh_crl()  # as prepare does once a third of the CRL's life is left
    assert store.crl_next_update() - store.crl_this_update() == timedelta(seconds=126)
