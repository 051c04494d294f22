"""inv maintain against a real PKI (compressed lifetimes) and an inventory without hosts: what it
reads from the store, what it signs, and the exit codes of inv maintain through Invoke."""

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509

from mtls_deploy.inventory import Inventory
from mtls_deploy.maintain import maintain_main, recap
from mtls_deploy.maintain.run import ca_spans, client_spans, maintain, pki_dates
from mtls_deploy.pki.settings import PkiSettings
from mtls_deploy.pki.store import PkiStore

SECOND = dt.timedelta(seconds=1)
SETTINGS = PkiSettings.from_values(
    {"crl_lifetime": "90s", "client_lifetime": "120s", "client_renew_before": "30s",
     "server_lifetime": "60s", "ca_lifetime": "300s"}
)  # fmt: skip
NO_HOSTS = Inventory(Path("inventory"), {}, {"all": []})


def new_store(pki_env) -> PkiStore:
    PkiStore(pki_env.pki_dir, settings=SETTINGS).init(name="Test API")
    store = PkiStore.open(pki_env.pki_dir, settings=SETTINGS, keep_superseded=True)
    store.issue_client("carol")
    return store


def crl_number(store) -> int:
    return store.crl().extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_the_dates_are_read_from_the_store(pki_env):
    store = new_store(pki_env)
    found = pki_dates(store, [])
    assert found.crl.end - found.crl.start > 85 * SECOND
    assert list(found.clients) == ["carol"]
    assert set(ca_spans(store)) == {"client CA", "server CA"}
    store.revoke_client("carol")
    assert client_spans(store) == {}  # a revoked client is not renewed


def test_nothing_is_signed_when_nothing_is_due(pki_env):
    store = new_store(pki_env)
    number = crl_number(store)
    actions = maintain(NO_HOSTS, store)
    assert crl_number(store) == number
    assert [a.status for a in actions] == ["ok", "ok", "ok", "ok"]  # crl, carol, two CAs
    assert recap.exit_code(actions) == 0


def test_when_due_the_crl_is_resigned_and_a_client_without_consumer_is_a_warning(pki_env):
    store = new_store(pki_env)
    number, serial = crl_number(store), store.client_material("carol").serial
    later = dt.datetime.now(dt.UTC) + 220 * SECOND  # CRL and carol due; the CAs in their last third
    actions = {a.subject: a for a in maintain(NO_HOSTS, store, later)}
    assert crl_number(store) == number + 1
    assert actions["crl.pem"].status == "changed"
    carol = actions["client carol"]
    assert carol.status == "warning" and "no consumer host receives it" in carol.text
    assert "inv renew-client --name carol" in carol.text
    assert store.client_material("carol").serial == serial  # not renewed: nobody would get it
    assert (
        actions["client CA"].status == "warning"
        and "--ca client --start" in actions["client CA"].text
    )
    assert recap.exit_code(list(actions.values())) == 1


def test_maintain_main_without_a_pki_is_unknown(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MTLS_DEPLOY_PKI_DIR", str(tmp_path / "nopki"))
    monkeypatch.setenv("MTLS_DEPLOY_INVENTORY", str(tmp_path / "inventory"))
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "hosts.yml").write_text("all:\n  hosts: {}\n")
    assert maintain_main() == 3
    out = capsys.readouterr().out
    assert out.startswith("maintain: UNKNOWN - ") and out.count("\n") == 1


def served_pem(days_left: int) -> bytes:
    """A certificate from another CA (an ACME CA's name) ending in ``days_left`` days."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key, now = ec.generate_private_key(ec.SECP256R1()), dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Pebble Intermediate CA")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1).not_valid_before(now - 60 * DAY)
        .not_valid_after(now + dt.timedelta(days=days_left, hours=1)).sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM)


DAY = dt.timedelta(days=1)


def public_hosts_inventory():
    from mtls_deploy.inventory import Host, Layer

    acme = Host("acme1", ("all", "api"), [Layer("test", {"server_cert": "acme"})])
    files = Host("files1", ("all", "api"), [Layer("test", {"server_cert": "files"})])
    hosts = {"acme1": acme, "files1": files}
    return Inventory(Path("inventory"), hosts, {"all": list(hosts), "api": list(hosts)}), acme


@pytest.mark.parametrize(("days_left", "status"), [(80, "ok"), (3, "warning")])
def test_acme_and_files_certificates_are_reported_with_their_days_left_never_renewed(
    pki_env, monkeypatch, days_left, status
):
    store = new_store(pki_env)
    loaded, acme = public_hosts_inventory()
    read = []
    monkeypatch.setattr("mtls_deploy.maintain.run.push_to_hosts", lambda hosts: [])  # no SSH here
    monkeypatch.setattr("mtls_deploy.status.gather.read_served_certificate",
                        lambda host: read.append(host.name) or served_pem(days_left))  # fmt: skip
    settings = SETTINGS.__class__.from_values({"warn_before": "30d"})
    store = PkiStore.open(pki_env.pki_dir, settings=settings, keep_superseded=True)
    actions = {a.subject: a for a in maintain(loaded, store)}
    assert sorted(read) == ["acme1", "files1"]  # read on the hosts, once each
    for host, how in (("acme1", "certbot.timer renews it on the host"),
                      ("files1", "replace server_cert_files")):  # fmt: skip
        line = actions[f"server certificate of {host}"]
        assert line.status == status and line.text.startswith(f"{days_left}d "), line.text
        assert how in line.text and "renewed by its own CA, not by us" in line.text
    assert pki_dates(store, [acme]).servers == {}  # not ours to renew


def test_a_public_certificate_that_cannot_be_read_is_a_critical_line(pki_env, monkeypatch):
    store = new_store(pki_env)
    loaded, _ = public_hosts_inventory()
    monkeypatch.setattr("mtls_deploy.maintain.run.push_to_hosts", lambda hosts: [])
    monkeypatch.setattr("mtls_deploy.status.gather.read_served_certificate", lambda host: None)
    actions = {a.subject: a for a in maintain(loaded, store)}
    line = actions["server certificate of acme1"]
    assert line.status == "critical" and "missing or not a PEM certificate" in line.text
    assert recap.exit_code(list(actions.values())) == 2


def test_a_renewal_keeps_the_organisation_and_email(pki_env):
    from mtls_deploy.maintain.due import RENEW, Due
    from mtls_deploy.maintain.run import _renew_one

    store = new_store(pki_env)
    store.issue_client("dave", org="Example, Inc.", email="dave@example.com")
    old = store.client_material("dave").serial
    renewed = _renew_one(store, Due("client", "dave", RENEW, "10s left"))
    assert renewed[:2] == (old, store.client_material("dave").serial) and renewed[1] != old
    cert = x509.load_pem_x509_certificate(store.client_material("dave").cert_pem)
    org = cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)[0].value
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert (org, san.get_values_for_type(x509.RFC822Name)) == (
        "Example, Inc.",
        ["dave@example.com"],
    )
    assert store.superseded_serials("dave") == [old]  # valid until its successor is delivered
    assert (pki_env.dist_dir / "dave" / "dave.crt").read_bytes() == store.client_material(
        "dave"
    ).cert_pem
