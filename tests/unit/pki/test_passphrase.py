"""Where the CA passphrase comes from: the environment, else a terminal prompt, else one line."""

import io
import sys

import pytest

from mtls_deploy.errors import BadInput, UserError
from mtls_deploy.pki import passphrase
from mtls_deploy.pki.store import PkiStore


@pytest.fixture
def no_env(monkeypatch):
    """No passphrase in the environment, stdin not a terminal."""
    monkeypatch.delenv("MTLS_DEPLOY_CA_PASSPHRASE", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))


def on_a_terminal(monkeypatch, *answers):
    """Stdin is a terminal; the prompts get ``answers`` in turn (``EOFError`` past the end)."""
    replies = iter(answers)

    def getpass(prompt):
        try:
            return next(replies)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("mtls_deploy.pki.passphrase._stdin_is_tty", lambda: True)
    monkeypatch.setattr("getpass.getpass", getpass)


def test_the_environment_comes_first_even_on_a_terminal(monkeypatch):
    monkeypatch.setenv("MTLS_DEPLOY_CA_PASSPHRASE", "from env")
    on_a_terminal(monkeypatch, "typed")
    assert passphrase.ca_passphrase() == b"from env"


def test_an_empty_passphrase_is_bad_input(monkeypatch):
    monkeypatch.setenv("MTLS_DEPLOY_CA_PASSPHRASE", "")
    with pytest.raises(BadInput, match="empty CA passphrase: set MTLS_DEPLOY_CA_PASSPHRASE"):
        passphrase.ca_passphrase()


def test_a_prompt_asks_twice_when_confirming_and_refuses_a_mismatch(no_env, monkeypatch):
    on_a_terminal(monkeypatch, "one", "one")
    assert passphrase.ca_passphrase(confirm=True) == b"one"
    on_a_terminal(monkeypatch, "one", "two")
    with pytest.raises(BadInput, match="the two passphrases differ"):
        passphrase.ca_passphrase(confirm=True)


def test_end_of_input_at_the_prompt_is_one_line(no_env, monkeypatch):
    on_a_terminal(monkeypatch)
    with pytest.raises(UserError, match=r"no CA passphrase given \(end of input\)"):
        passphrase.ca_passphrase()


def test_no_source_is_one_line_saying_how_to_give_one(no_env):
    with pytest.raises(UserError, match="set MTLS_DEPLOY_CA_PASSPHRASE or run on a terminal"):
        passphrase.ca_passphrase()


# --- through the store ----------------------------------------------------------------------


def test_no_passphrase_and_no_terminal_is_a_clear_error(pki_store, pki_env, monkeypatch):
    monkeypatch.delenv("MTLS_DEPLOY_CA_PASSPHRASE")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(UserError, match="set MTLS_DEPLOY_CA_PASSPHRASE or run on a terminal"):
        PkiStore.open().issue_client("bob")


def test_passphrase_is_prompted_on_a_terminal(pki_store, pki_env, monkeypatch):
    monkeypatch.delenv("MTLS_DEPLOY_CA_PASSPHRASE")
    monkeypatch.setattr("mtls_deploy.pki.passphrase._stdin_is_tty", lambda: True)
    monkeypatch.setattr("getpass.getpass", lambda prompt: pki_env.passphrase)
    assert PkiStore.open().issue_client("bob").changed
