"""Shared fixtures. The user's own SSH config and agent never leak into a test."""

import pytest


@pytest.fixture(autouse=True)
def no_user_ssh_config(monkeypatch, tmp_path_factory):
    """Tests must not read ~/.ssh/config, ~/.ssh/known_hosts or talk to an SSH agent."""
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
