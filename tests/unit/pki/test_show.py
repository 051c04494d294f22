"""``pki.show``: one certificate in full (pki/show.py)."""

import pytest

from mtls_deploy.errors import UserError
from mtls_deploy.pki import show


def test_a_client_in_full(pki_store):
    pki_store.issue_client("bob", org="Example, Inc.", email="bob@example.test")
    facts = show.describe(pki_store, "bob")
    assert facts["subject"] == "O=Example\\, Inc.,CN=bob"
    assert facts["issuer"] == "O=Test API,CN=Test API client CA"
    assert facts["san"] == ["RFC822:bob@example.test"] and facts["eku"] == ["clientAuth"]
    assert facts["key_type"] == "ec P-256" and facts["status"] == "valid"
    assert facts["days_left"] in (364, 365) and len(facts["sha256"]) == 64
    assert facts["key"].endswith("clients/bob/bob.key")
    text = "\n".join(show.lines(facts, ["bob"]))
    assert "delivered_to       bob" in text and "serial             " in text


def test_a_server_a_ca_and_a_revoked_client(pki_store):
    pki_store.server_cert("api1", ["api1.example.test"], ["192.0.2.10"])
    server = show.describe(pki_store, "api1")
    assert server["san"] == ["DNS:api1.example.test", "IP:192.0.2.10"]
    assert server["eku"] == ["serverAuth"]
    assert show.describe(pki_store, "client-ca")["key"].startswith("client-ca.key, encrypted")
    pki_store.issue_client("carol")
    pki_store.revoke_client("carol", "key_compromise")
    carol = show.describe(pki_store, "carol")
    assert carol["status"] == "revoked" and carol["revocation_reason"] == "key_compromise"


def test_an_unknown_name_is_one_line_with_close_names(pki_store):
    pki_store.issue_client("bob")
    with pytest.raises(UserError, match=r"^no client named 'bbo' in the index; did you mean bob\?"):
        show.describe(pki_store, "bbo")
    with pytest.raises(UserError, match=r"^no certificate named 'a/b' in the index"):
        show.describe(pki_store, "a/b")
