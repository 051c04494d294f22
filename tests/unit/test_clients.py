"""The client lifecycle's pure parts: which names, and when the CRL deserves a warning."""

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mtls_deploy import clients
from mtls_deploy.errors import BadInput

NOW = datetime(2026, 11, 26, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


class FakeCrl:
    """Only what crl_expiry_warning reads: the CRL's nextUpdate."""

    def __init__(self, next_update):
        self.next_update = next_update

    def crl_next_update(self):
        return self.next_update


@pytest.mark.parametrize(
    "left, expected",
    [
        (timedelta(days=179), None),
        (timedelta(days=30, hours=1), None),
        (
            timedelta(days=6, hours=3),
            "warning: crl.pem expires in 6 days: run `inv pki.crl --push`",
        ),
        (timedelta(hours=-1), "warning: crl.pem has EXPIRED: run `inv pki.crl --push`"),
    ],
)
def test_crl_expiry_warning(left, expected):
    assert clients.crl_expiry_warning(FakeCrl(NOW + left), now=NOW) == expected


def test_exactly_one_of_name_and_names_file(tmp_path):
    with pytest.raises(BadInput, match="give either --name NAME or --names-file FILE"):
        clients.client_names(None, None)
    with pytest.raises(BadInput, match="give either"):
        clients.client_names("bob", str(tmp_path / "names.txt"))


def test_names_file_is_read_and_checked(tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("bob\ncarol\n")
    assert clients.client_names(None, str(names)) == ["bob", "carol"]
    with pytest.raises(BadInput, match="cannot read"):
        clients.client_names(None, str(tmp_path / "missing.txt"))
    with pytest.raises(BadInput, match="invalid client name"):
        clients.client_names("../etc", None)


def test_key_type_comes_from_the_inventory(tmp_path, monkeypatch):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    api1:\n    api2:\n")
    monkeypatch.setenv("MTLS_DEPLOY_INVENTORY", str(tmp_path))
    assert clients.inventory_key_type() == "ec"
    (tmp_path / "group_vars" / "all.yml").write_text("pki_key_type: rsa\n")
    assert clients.inventory_key_type() == "rsa"
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "api2.yml").write_text("pki_key_type: ec\n")
    with pytest.raises(BadInput, match="pki_key_type differs between hosts"):
        clients.inventory_key_type()


def test_a_names_file_without_a_name_is_refused_through_inv(tmp_path):
    """Blank lines and comments only: one line and exit 2, not a silent exit 0."""
    names = tmp_path / "names.txt"
    names.write_text("\n   \n# nobody yet\n\n")
    (tmp_path / "inventory").mkdir()
    env = {
        **os.environ,
        "MTLS_DEPLOY_INVENTORY": str(tmp_path / "inventory"),
        "MTLS_DEPLOY_PKI_DIR": str(tmp_path / "pki"),
        "MTLS_DEPLOY_DIST_DIR": str(tmp_path / "dist"),
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT),
         "issue-client", "--names-file", str(names)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"error: {names} holds no client name: write one name a line"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inventory", "names.txt"]
