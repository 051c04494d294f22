"""Where the CA passphrase comes from: the environment, else a terminal prompt, else one line."""

import io
import sys

import pytest

from mtls_deploy.errors import BadInput, UserError
from mtls_deploy.pki import passphrase
from mtls_deploy.pki.store import PkiStore

NO_SOURCE = (
    r"^the CA key is encrypted: set MTLS_DEPLOY_CA_PASSPHRASE \(or MTLS_DEPLOY_CA_PASSPHRASE_FILE, "
    r"naming a 0600 file\) or run on a terminal to be asked$"
)


@pytest.fixture
def no_env(monkeypatch):
    """No passphrase in the environment, stdin not a terminal."""
    monkeypatch.delenv("MTLS_DEPLOY_CA_PASSPHRASE", raising=False)
    monkeypatch.delenv("MTLS_DEPLOY_CA_PASSPHRASE_FILE", raising=False)
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
    with pytest.raises(UserError, match=NO_SOURCE):
        passphrase.ca_passphrase()


# --- through the store ----------------------------------------------------------------------


def test_no_passphrase_and_no_terminal_is_a_clear_error(pki_store, pki_env, monkeypatch):
    monkeypatch.delenv("MTLS_DEPLOY_CA_PASSPHRASE")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(UserError, match=NO_SOURCE):
        PkiStore.open().issue_client("bob")


def test_passphrase_is_prompted_on_a_terminal(pki_store, pki_env, monkeypatch):
    monkeypatch.delenv("MTLS_DEPLOY_CA_PASSPHRASE")
    monkeypatch.setattr("mtls_deploy.pki.passphrase._stdin_is_tty", lambda: True)
    monkeypatch.setattr("getpass.getpass", lambda prompt: pki_env.passphrase)
    assert PkiStore.open().issue_client("bob").changed


# --- a root-only file for unattended runs (MTLS_DEPLOY_CA_PASSPHRASE_FILE) ------------------


@pytest.fixture
def secret_file(no_env, tmp_path, monkeypatch):
    """A passphrase file named by MTLS_DEPLOY_CA_PASSPHRASE_FILE, mode 0600."""
    path = tmp_path / "ca.pass"
    path.write_text("from the file\n")
    path.chmod(0o600)
    monkeypatch.setenv("MTLS_DEPLOY_CA_PASSPHRASE_FILE", str(path))
    return path


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_file_gives_its_first_line(secret_file, mode):
    secret_file.chmod(mode)
    assert passphrase.ca_passphrase() == b"from the file"


def test_the_environment_still_comes_before_the_file(secret_file, monkeypatch):
    monkeypatch.setenv("MTLS_DEPLOY_CA_PASSPHRASE", "from env")
    assert passphrase.ca_passphrase() == b"from env"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o700])
def test_a_file_others_could_read_is_refused_with_the_fix(secret_file, mode):
    secret_file.chmod(mode)
    with pytest.raises(BadInput, match=rf"has mode {mode:04o}: .*run `chmod 600 {secret_file}`"):
        passphrase.ca_passphrase()


def test_a_file_of_another_user_is_refused(secret_file, monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 4242)
    with pytest.raises(BadInput, match=r"belongs to uid \d+, not to you \(uid 4242\)"):
        passphrase.ca_passphrase()


def test_a_missing_file_a_symlink_and_a_directory_are_one_line(secret_file, monkeypatch, tmp_path):
    monkeypatch.setenv("MTLS_DEPLOY_CA_PASSPHRASE_FILE", str(tmp_path / "nope"))
    with pytest.raises(
        UserError, match="cannot read MTLS_DEPLOY_CA_PASSPHRASE_FILE .*nope: No such"
    ):
        passphrase.ca_passphrase()
    (tmp_path / "link").symlink_to(secret_file)
    monkeypatch.setenv("MTLS_DEPLOY_CA_PASSPHRASE_FILE", str(tmp_path / "link"))
    with pytest.raises(UserError, match="cannot read .*link: Too many levels of symbolic links"):
        passphrase.ca_passphrase()
    monkeypatch.setenv("MTLS_DEPLOY_CA_PASSPHRASE_FILE", str(tmp_path))
    with pytest.raises(BadInput, match="is not a regular file"):
        passphrase.ca_passphrase()


def test_an_empty_file_is_refused_like_an_empty_variable(secret_file):
    secret_file.write_text("\n")
    with pytest.raises(BadInput, match="empty CA passphrase"):
        passphrase.ca_passphrase()


def test_the_store_signs_with_the_files_passphrase(pki_store, pki_env, secret_file, monkeypatch):
    secret_file.write_text(pki_env.passphrase + "\n")
    assert PkiStore.open().issue_client("bob").changed
