"""inv status with another CA's server certificate (server_cert acme or files): the row reads
the file the site serves, shows its issuer and days left, and never compares it with our PKI."""

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mtls_deploy.inventory import role_defaults
from mtls_deploy.pki.store import PkiStore
from mtls_deploy.runner import HostResult
from mtls_deploy.status import gather, judge
from mtls_deploy.status.run import pki_snapshot

NOW = dt.datetime.now(dt.UTC).replace(microsecond=500_000)  # certificates keep whole seconds
DAY = dt.timedelta(days=1)
WARN = 30 * DAY
PEBBLE = "Pebble Intermediate CA 5a1b2c"
DEFAULTS = {k: v for layer in role_defaults() for k, v in layer.values.items()}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    store = PkiStore(tmp_path_factory.mktemp("pki"), passphrase=b"unit-test")
    store.init(name="Unit API")
    store.server_cert("api1", ["api1.example.test"], [])  # the PKI has a server cert for api1
    return store


def foreign_pem(days_left: float) -> bytes:
    """A certificate for api1 from another CA (Pebble's name), ending in ``days_left`` days."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api1.example.test")])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, PEBBLE)])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(issuer)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - 60 * DAY).not_valid_after(NOW + dt.timedelta(days=days_left))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM)


def reading(store, pem: bytes, kind: str | None) -> HostResult:
    files = {"server-cert": pem, "client-ca": store.client_ca_pem(), "crl": store.crl_pem()}
    data = {"files": files, "units": {"nginx.service": "active"}, "roles": ["tls", "nginx"],
            "drift": {"changed": []}}  # fmt: skip
    if kind:
        data["server_cert"] = kind
    return HostResult("api1", data=data)


def server_row(store, days_left: float, kind: str | None):
    rows = judge.api_host_checks("api1", reading(store, foreign_pem(days_left), kind),
                                 pki_snapshot(store), NOW, WARN)  # fmt: skip
    return next(r for r in rows if r.kind == "server-cert")


@pytest.mark.parametrize("kind", ["acme", "files"])
@pytest.mark.parametrize(
    ("days_left", "status", "words"),
    [(80, "ok", "expires in 79 d"), (10, "warning", "expires in 9 d"),
     (-2, "critical", "expired 2 d ago")],
)  # fmt: skip
def test_another_cas_certificate_is_judged_by_its_dates_and_shows_its_issuer(
    pki, kind, days_left, status, words
):
    row = server_row(pki, days_left, kind)
    assert row.status == status, row.detail
    assert words in row.detail and PEBBLE in row.detail and f"server_cert {kind}" in row.detail
    assert "PKI" not in row.detail and "match" not in row.facts  # never compared with our PKI


def test_an_acme_row_says_certbot_renews_it(pki):
    assert "renewed by certbot on the host" in server_row(pki, 80, "acme").detail


def test_a_private_host_serving_another_certificate_is_still_a_mismatch(pki):
    for kind in ("private", None):  # None: a reading without the key (the default is private)
        row = server_row(pki, 80, kind)
        assert row.status == "critical" and "the PKI's is serial" in row.detail


def test_status_reads_the_certificate_the_site_serves():
    acme = {
        **DEFAULTS,
        "group_names": ["api"],
        "server_name": "a.example.test",
        "backend": "php",
        "server_cert": "acme",
    }
    assert gather.tls_paths(acme)["server-cert"] == "/etc/letsencrypt/live/api/fullchain.pem"
    private = {**acme, "server_cert": "private"}
    assert gather.tls_paths(private)["server-cert"].startswith(DEFAULTS["tls_dir"] + "/")
    assert gather.tls_paths(acme)["crl"] == gather.tls_paths(private)["crl"]


def consumer_row(pki, api_ca: bytes | None, api_trust):
    snapshot = {**pki_snapshot(pki), "api_trust": api_trust}
    result = HostResult("bob", data={"api_ca": api_ca, "folder": "~/.mtls/api", "clients": {}})
    return judge.consumer_checks("bob", result, snapshot)[1]


def test_a_consumer_without_api_ca_is_fine_when_every_api_is_public(pki):
    assert consumer_row(pki, None, None).status == "ok"
    assert "public" in consumer_row(pki, None, None).detail


def test_a_consumer_api_ca_follows_the_apis_roots(pki):
    ours = pki_snapshot(pki)["server_ca"]
    assert consumer_row(pki, None, [ours]).status == "critical"  # ours needed, missing
    assert consumer_row(pki, pki.server_ca_pem(), [ours]).detail == "the PKI's server CA"
    private_acme = foreign_pem(80)
    wanted = [judge.fingerprint(x509.load_pem_x509_certificate(private_acme))]
    assert consumer_row(pki, private_acme, wanted).status == "ok"
    assert consumer_row(pki, pki.server_ca_pem(), wanted).status == "critical"
