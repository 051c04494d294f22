"""The bundle's README (real URLs, recipes for each runtime, what the .p12 holds) and its
.p12.pass (the password as it is, no newline), read as a consumer's code reads them."""

from cryptography.hazmat.primitives.serialization import pkcs12

from mtls_deploy.api_urls import bundle_apis
from mtls_deploy.inventory import load
from mtls_deploy.pki import bundle, exports
from mtls_deploy.pki.bundle_readme import api_address

TITLES = ("curl:", "Python (requests):", "Python (httpx):", "Node (18 and later):")
JAVA_AND_BROWSERS = ("Java (17 and later", "with Whoami.java:", "Browsers:")


def bob_bundle(store, **options):
    store.issue_client("bob")
    return bundle.write_client_bundle(store, "bob", **options)


def test_the_p12_password_file_is_the_password_without_a_newline(pki_store, pki_env):
    folder = bob_bundle(pki_store)
    password = (folder / "bob.p12.pass").read_bytes()  # as Node's readFileSync gives it
    assert not password.endswith(b"\n") and len(password) == 32
    key, cert, _ = pkcs12.load_key_and_certificates((folder / "bob.p12").read_bytes(), password)
    assert key is not None and cert.subject.rfc4514_string().startswith("CN=bob")


def test_export_p12_writes_the_password_without_a_newline(pki_store, tmp_path):
    pki_store.issue_client("bob")
    p12, password_file = exports.export_p12(pki_store, "bob", tmp_path / "p12")
    password = password_file.read_bytes()
    assert not password.endswith(b"\n")
    assert pkcs12.load_key_and_certificates(p12.read_bytes(), password)[0] is not None


def test_the_readme_names_every_api_with_its_port(pki_store, pki_env):
    folder = bob_bundle(pki_store, apis=("api1.lab.test:8441", "api2.example.com"))
    readme = (folder / "README.txt").read_text()
    assert "The APIs you may call with it:\n    https://api1.lab.test:8441/\n" in readme
    assert "    https://api2.example.com/\n" in readme
    assert (
        "    curl --cert bob.crt --key bob.key --cacert api-ca.crt "
        "https://api1.lab.test:8441/whoami\n" in readme
    )
    assert "<server_name>" not in readme
    for title in TITLES + JAVA_AND_BROWSERS:
        assert f"\n{title}" in readme, title
    assert 'passphrase: fs.readFileSync("bob.p12.pass", "utf8")' in readme
    assert 'verify="api-ca.crt"' in readme and 'cafile="api-ca.crt"' in readme
    assert "keytool -importcert -noprompt -alias api-ca -file api-ca.crt" in readme
    assert "bob.p12 carries your key, your certificate and the client CA" in readme
    assert "not the API's server CA: every client also needs api-ca.crt" in readme


def test_a_public_ca_bundle_names_no_api_ca_anywhere(pki_store, pki_env):
    folder = bob_bundle(pki_store, apis=("api.example.com",), api_ca=None)
    readme = (folder / "README.txt").read_text()
    assert "api-ca" not in readme and 'verify="' not in readme and "keytool" not in readme
    assert "    curl --cert bob.crt --key bob.key https://api.example.com/whoami\n" in readme
    assert "context = ssl.create_default_context()\n" in readme
    assert "tls.init(keys.getKeyManagers(), null, null);" in readme
    assert "your system's trust store verifies the API" in readme


def test_without_a_p12_node_takes_the_pem_files_and_java_is_left_out(pki_store, pki_env):
    folder = bob_bundle(pki_store, apis=("api1.lab.test:8441",), p12=False)
    readme = (folder / "README.txt").read_text()
    assert ".p12" not in readme
    assert 'cert: fs.readFileSync("bob.crt"), key: fs.readFileSync("bob.key")' in readme
    assert not any(title in readme for title in JAVA_AND_BROWSERS)


def test_api_address_leaves_out_443():
    assert api_address("api.example.com", 443) == "api.example.com"
    assert api_address("api.example.com", None) == "api.example.com"
    assert api_address("api1.lab.test", 8441) == "api1.lab.test:8441"


def test_bundle_apis_are_the_api_groups_names_and_ports(tmp_path):
    (tmp_path / "hosts.yml").write_text(
        "all:\n  vars: {https_listen: 127.0.0.1}\n  children:\n"
        "    api:\n      hosts:\n"
        "        api1: {server_name: api1.lab.test, https_port: 8441}\n"
        "        api2: {server_name: api.example.com, https_port: 443}\n"
        "        api3: {server_name: api1.lab.test, https_port: 8441}\n"
        "    consumers:\n      hosts:\n        bob: {}\n"
    )
    assert bundle_apis(load(tmp_path)) == ("api1.lab.test:8441", "api.example.com")


def test_no_inventory_no_apis_and_the_readme_says_what_to_replace(pki_store, pki_env):
    assert bundle_apis() == ()  # pki_env's folder holds no inventory/
    readme = (bob_bundle(pki_store) / "README.txt").read_text()
    assert "https://<server_name>/whoami" in readme and "replace <server_name>" in readme
