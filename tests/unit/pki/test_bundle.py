"""Client bundles, and interop with independent checkers: the openssl CLI and Python's ssl."""

import os
import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

from mtls_deploy.errors import UserError
from mtls_deploy.pki import bundle
from mtls_deploy.pki.store import PkiStore

CURL = "curl --cert bob.crt --key bob.key --cacert api-ca.crt https://{host}/whoami"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def openssl(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def pki_bob(pki_store, pki_env):
    """bob issued, his bundle written; returns the bundle directory."""
    pki_store.issue_client("bob")
    return bundle.write_client_bundle(pki_store, "bob", server_name="api1.example.test")


# --- the bundle -----------------------------------------------------------------------------


def test_bundle_layout_and_modes(pki_bob, pki_store, pki_env):
    assert pki_bob == pki_env.dist_dir / "bob"
    assert sorted(p.name for p in pki_bob.iterdir()) == [
        "README.txt",
        "api-ca.crt",
        "bob.crt",
        "bob.key",
        "bob.p12",
        "bob.p12.pass",
    ]
    assert mode(pki_env.dist_dir) == mode(pki_bob) == 0o700
    assert (
        mode(pki_bob / "bob.key")
        == mode(pki_bob / "bob.p12.pass")
        == mode(pki_bob / "bob.p12")
        == 0o600
    )
    assert (pki_bob / "api-ca.crt").read_bytes() == pki_store.server_ca_pem()
    material = pki_store.client_material("bob")
    assert (pki_bob / "bob.crt").read_bytes() == material.cert_pem
    assert (pki_bob / "bob.key").read_bytes() == material.key_pem


def test_readme_has_the_exact_curl_command(pki_bob, pki_store):
    assert CURL.format(host="api1.example.test") in (pki_bob / "README.txt").read_text()
    folder = bundle.write_client_bundle(pki_store, "bob", p12=False)
    readme = (folder / "README.txt").read_text()
    assert CURL.format(host="<server_name>") in readme and "replace <server_name>" in readme
    assert ".p12" not in readme and not (folder / "bob.p12").exists()


def test_p12_default_is_aes256_pbkdf2_sha256_mac_and_holds_key_and_cert(pki_bob, pki_store):
    password = (pki_bob / "bob.p12.pass").read_text().strip()
    assert len(password) >= 32
    key, cert, cas = pkcs12.load_key_and_certificates(
        (pki_bob / "bob.p12").read_bytes(), password.encode()
    )
    assert cert.public_bytes(Encoding.PEM) == (pki_bob / "bob.crt").read_bytes()
    assert key.public_key() == cert.public_key()
    assert [ca.subject for ca in cas] == [
        x509.load_pem_x509_certificate(pki_store.client_ca_pem()).subject
    ]
    info = openssl(
        "pkcs12", "-in", "bob.p12", "-info", "-noout", "-passin", "file:bob.p12.pass", cwd=pki_bob
    )
    assert info.returncode == 0, info.stderr
    assert "MAC: sha256" in info.stderr
    assert "PBES2, PBKDF2, AES-256-CBC" in info.stderr and "3DES" not in info.stderr


def test_p12_legacy_is_3des_sha1_and_opens_in_openssl(pki_store, pki_env):
    pki_store.issue_client("bob")
    folder = bundle.write_client_bundle(pki_store, "bob", legacy=True)
    info = openssl(
        "pkcs12", "-in", "bob.p12", "-info", "-noout", "-passin", "file:bob.p12.pass", cwd=folder
    )
    assert info.returncode == 0, info.stderr
    assert "MAC: sha1" in info.stderr and "pbeWithSHA1And3-KeyTripleDES-CBC" in info.stderr
    assert "3DES/SHA-1, legacy" in (folder / "README.txt").read_text()
    wrong = openssl(
        "pkcs12", "-in", "bob.p12", "-info", "-noout", "-passin", "pass:wrong", cwd=folder
    )
    assert wrong.returncode != 0


def test_bundle_for_an_unknown_or_revoked_client_is_refused(pki_store, pki_env):
    with pytest.raises(UserError, match="run `inv issue-client --name bob` first"):
        bundle.write_client_bundle(pki_store, "bob")
    pki_store.issue_client("bob")
    pki_store.revoke_client("bob")
    with pytest.raises(UserError, match="revoked: run `inv renew-client --name bob`"):
        bundle.write_client_bundle(pki_store, "bob")
    assert not (pki_env.dist_dir / "bob").exists()


def test_issue_bundles_rewrites_missing_or_stale_bundles_only(pki_store, pki_env):
    first = bundle.issue_bundles(pki_store, ["bob", "alice"], p12=False)
    assert [(r.issue.changed, r.bundle_written) for r in first] == [(True, True), (True, True)]
    (pki_env.dist_dir / "alice" / "alice.key").unlink()
    again = bundle.issue_bundles(pki_store, ["bob", "alice"], p12=False)
    assert [(r.issue.changed, r.bundle_written) for r in again] == [(False, False), (False, True)]
    assert bundle.bundle_is_current(pki_store, "alice", p12=False)
    pki_store.renew_client("bob")
    assert not bundle.bundle_is_current(pki_store, "bob", p12=False)
    assert bundle.issue_bundles(pki_store, ["bob"], p12=False)[0].bundle_written


def test_rewriting_a_bundle_replaces_it_whole(pki_bob, pki_store, pki_env):
    (pki_bob / "stray.txt").write_text("left over")
    bundle.write_client_bundle(pki_store, "bob", p12=False)
    assert sorted(p.name for p in pki_bob.iterdir()) == [
        "README.txt",
        "api-ca.crt",
        "bob.crt",
        "bob.key",
    ]
    assert [p.name for p in pki_env.dist_dir.iterdir()] == ["bob"]  # no staging or retired copies


def test_dist_dir_defaults_to_dist_in_the_project_directory(pki_env, monkeypatch):
    monkeypatch.delenv("MTLS_DEPLOY_DIST_DIR")
    (pki_env.root / "inventory").mkdir()
    (pki_env.root / "docs").mkdir()
    monkeypatch.chdir(pki_env.root / "docs")
    assert bundle.default_dist_dir() == pki_env.root / "dist"


def test_disk_full_while_writing_a_bundle_is_clear_and_leaves_no_partial_bundle(
    pki_store, pki_env, pki_tmpfs
):
    pki_tmpfs(pki_env.dist_dir, "64k")
    filler = pki_env.dist_dir / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    with pytest.raises(OSError, match="No space left"):
        while True:
            os.write(fd, b"\0" * 4096)
    os.close(fd)
    pki_store.issue_client("bob")
    rows_before = [r.serial_hex for r in pki_store.list()]
    with pytest.raises(
        UserError, match=r"could not write the bundle .*No space left on device.*re-run"
    ):
        bundle.write_client_bundle(pki_store, "bob")
    assert sorted(p.name for p in pki_env.dist_dir.iterdir()) == ["filler"]
    assert [r.serial_hex for r in pki_store.list()] == rows_before
    filler.unlink()
    folder = bundle.write_client_bundle(pki_store, "bob")  # across filesystems: copies, not links
    assert (folder / "bob.key").read_bytes() == pki_store.client_material("bob").key_pem
    assert mode(folder / "bob.key") == 0o600


# --- openssl as an independent checker ------------------------------------------------------


def test_openssl_verifies_client_as_sslclient_only(pki_bob, pki_env):
    ca = pki_env.pki_dir / "client-ca.crt"
    ok = openssl("verify", "-CAfile", ca, "-purpose", "sslclient", pki_bob / "bob.crt")
    assert ok.returncode == 0 and ok.stdout.strip().endswith(": OK"), ok.stdout + ok.stderr
    wrong_purpose = openssl("verify", "-CAfile", ca, "-purpose", "sslserver", pki_bob / "bob.crt")
    assert (
        wrong_purpose.returncode != 0 and "unsuitable certificate purpose" in wrong_purpose.stderr
    )
    wrong_ca = openssl("verify", "-CAfile", pki_env.pki_dir / "server-ca.crt", pki_bob / "bob.crt")
    assert wrong_ca.returncode != 0


def test_openssl_verifies_server_as_sslserver_against_the_server_ca(pki_store, pki_env):
    pki_store.server_cert("api1", ["api1.example.test"], ["192.0.2.10"])
    cert = pki_env.pki_dir / "servers" / "api1" / "api1.crt"
    ca = pki_env.pki_dir / "server-ca.crt"
    ok = openssl(
        "verify",
        "-CAfile",
        ca,
        "-purpose",
        "sslserver",
        "-verify_hostname",
        "api1.example.test",
        cert,
    )
    assert ok.returncode == 0, ok.stderr
    ip = openssl("verify", "-CAfile", ca, "-purpose", "sslserver", "-verify_ip", "192.0.2.10", cert)
    assert ip.returncode == 0, ip.stderr
    assert openssl("verify", "-CAfile", ca, "-purpose", "sslclient", cert).returncode != 0
    assert openssl("verify", "-CAfile", pki_env.pki_dir / "client-ca.crt", cert).returncode != 0


def test_openssl_shows_the_ca_profile(pki_store, pki_env):
    text = openssl("x509", "-in", pki_env.pki_dir / "client-ca.crt", "-noout", "-text").stdout
    assert "X509v3 Basic Constraints: critical\n                CA:TRUE, pathlen:0" in text
    assert "X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign" in text
    assert "ecdsa-with-SHA256" in text and "NIST CURVE: P-256" in text


def test_openssl_verifies_the_crl_and_lists_the_revoked_serial_with_its_reason(
    pki_bob, pki_store, pki_env
):
    serial = pki_store.revoke_client("bob", reason="key_compromise")
    done = openssl(
        "crl",
        "-CAfile",
        pki_env.pki_dir / "client-ca.crt",
        "-in",
        pki_env.pki_dir / "crl.pem",
        "-noout",
        "-text",
    )
    assert done.returncode == 0 and "verify OK" in done.stderr, done.stderr
    assert "Version 2 (0x1)" in done.stdout
    assert f"Serial Number: {serial}\n" in done.stdout
    assert "X509v3 CRL Reason Code: \n                Key Compromise" in done.stdout
    assert "X509v3 CRL Number: \n                3" in done.stdout  # 2: init's smoke revocation
    revoked = openssl(
        "verify",
        "-crl_check",
        "-CAfile",
        pki_env.pki_dir / "client-ca.crt",
        "-CRLfile",
        pki_env.pki_dir / "crl.pem",
        pki_bob / "bob.crt",
    )
    assert revoked.returncode != 0 and "certificate revoked" in revoked.stderr


def test_openssl_crl_check_passes_before_revocation(pki_bob, pki_env):
    done = openssl(
        "verify",
        "-crl_check",
        "-CAfile",
        pki_env.pki_dir / "client-ca.crt",
        "-CRLfile",
        pki_env.pki_dir / "crl.pem",
        pki_bob / "bob.crt",
    )
    assert done.returncode == 0, done.stderr


# --- Python's ssl module: a server that requires client certificates ------------------------


def handshake(server_context: ssl.SSLContext, bundle_dir: Path) -> tuple[str | None, str | None]:
    """One TLS connection on 127.0.0.1: (client CN seen by the server, server-side error)."""
    listener = socket.create_server(("127.0.0.1", 0))
    outcome = {}

    def serve():
        conn, _ = listener.accept()
        try:
            with server_context.wrap_socket(conn, server_side=True) as tls:
                subject = dict(item[0] for item in tls.getpeercert()["subject"])
                outcome["cn"] = subject["commonName"]
                tls.sendall(b"hello " + subject["commonName"].encode())
        except (ssl.SSLError, OSError) as error:
            outcome["error"] = str(error)
        finally:
            conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    client = ssl.create_default_context(cafile=str(bundle_dir / "api-ca.crt"))
    client.load_cert_chain(bundle_dir / "bob.crt", bundle_dir / "bob.key")
    try:
        with (
            socket.create_connection(listener.getsockname(), timeout=10) as raw,
            client.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.recv(100)
    except (ssl.SSLError, OSError):
        pass
    thread.join(timeout=10)
    listener.close()
    return outcome.get("cn"), outcome.get("error")


def server_context(
    store: PkiStore, pki_dir: Path, tmp_path: Path, with_crl: bool
) -> ssl.SSLContext:
    issued = store.server_cert("localhost", ["localhost"], ["127.0.0.1"])
    (tmp_path / "server.pem").write_bytes(issued.cert_pem + issued.chain_pem)
    (tmp_path / "server.key").write_bytes(issued.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(pki_dir / "client-ca.crt"))
    if with_crl:
        context.load_verify_locations(cafile=str(pki_dir / "crl.pem"))
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return context


def test_ssl_server_accepts_bob_then_rejects_him_after_revocation(
    pki_bob, pki_store, pki_env, tmp_path
):
    assert handshake(
        server_context(pki_store, pki_env.pki_dir, tmp_path, with_crl=True), pki_bob
    ) == ("bob", None)
    pki_store.revoke_client("bob", reason="key_compromise")
    cn, error = handshake(
        server_context(pki_store, pki_env.pki_dir, tmp_path, with_crl=True), pki_bob
    )
    assert cn is None and "certificate revoked" in error


def test_ssl_server_rejects_a_client_certificate_from_the_server_ca(
    pki_bob, pki_store, pki_env, tmp_path
):
    impostor = tmp_path / "impostor"
    impostor.mkdir()
    issued = pki_store.server_cert("bob", ["bob"], [])  # a server-CA certificate called bob
    (impostor / "bob.crt").write_bytes(issued.cert_pem)
    (impostor / "bob.key").write_bytes(issued.key_pem)
    (impostor / "api-ca.crt").write_bytes(pki_store.server_ca_pem())
    cn, error = handshake(
        server_context(pki_store, pki_env.pki_dir, tmp_path, with_crl=False), impostor
    )
    assert cn is None and "certificate verify failed" in error


# --- api-ca.crt follows the API's server certificate -------------------------------------------


def test_with_a_public_ca_the_bundle_has_no_api_ca_and_curl_no_cacert(pki_store, pki_env):
    pki_store.issue_client("bob")
    folder = bundle.write_client_bundle(
        pki_store, "bob", server_name="api.example.com", api_ca=None
    )
    assert not (folder / "api-ca.crt").exists()
    readme = (folder / "README.txt").read_text()
    assert "    curl --cert bob.crt --key bob.key https://api.example.com/whoami\n" in readme
    assert "api-ca.crt" not in readme and "--cacert" not in readme
    assert "your system's trust store verifies it" in readme
    assert bundle.bundle_is_current(pki_store, "bob", api_ca=None)
    assert not bundle.bundle_is_current(pki_store, "bob")  # ours wanted: api-ca.crt missing


def test_a_private_acme_cas_roots_are_the_bundles_api_ca(pki_store, pki_env):
    roots = b"-----BEGIN CERTIFICATE-----\nPEBBLE\n-----END CERTIFICATE-----\n"
    pki_store.issue_client("bob")
    folder = bundle.write_client_bundle(pki_store, "bob", api_ca=roots)
    assert (folder / "api-ca.crt").read_bytes() == roots
    assert mode(folder / "api-ca.crt") == 0o644
    assert CURL.format(host="<server_name>") in (folder / "README.txt").read_text()
    assert bundle.bundle_is_current(pki_store, "bob", api_ca=roots)
    assert not bundle.bundle_is_current(pki_store, "bob", api_ca=None)


def test_issue_bundles_rewrites_a_bundle_whose_api_ca_no_longer_applies(pki_store, pki_env):
    bundle.issue_bundles(pki_store, ["bob"])
    assert (pki_env.dist_dir / "bob" / "api-ca.crt").exists()
    (result,) = bundle.issue_bundles(pki_store, ["bob"], api_ca=None)
    assert result.bundle_written and not (pki_env.dist_dir / "bob" / "api-ca.crt").exists()
