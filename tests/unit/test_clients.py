"""The client lifecycle's pure parts: which names, and when the CRL deserves a warning."""

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from mtls_deploy import clients, deliver
from mtls_deploy.deliver import DeliveryReport
from mtls_deploy.errors import BadInput
from mtls_deploy.operations import Step
from mtls_deploy.pki.store import PkiStore
from mtls_deploy.runner import GroupResult, HostResult

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


# --- a reissued certificate's predecessor is revoked only once the new one is delivered ---------


def superseded_in_crl(store, serial: str) -> bool:
    return store.crl().get_revoked_certificate_by_serial_number(int(serial, 16)) is not None


def test_the_store_keeps_the_predecessor_valid_until_told(pki_store):
    old = pki_store.issue_client("bob").serial
    store = PkiStore.open(pki_store.path, keep_superseded=True)
    new = store.issue_client("bob", reissue=True)
    assert new.reason == f"reissued: previous serial {old} stays valid until delivery"
    assert store.superseded_serials("bob") == [old] and not superseded_in_crl(store, old)
    assert store.client_material("bob").serial == new.serial  # the new one is current
    assert store.revoke_superseded(["alice", "bob"]) == {"bob": [old]}
    assert superseded_in_crl(store, old) and store.superseded_serials("bob") == []
    assert store.revoke_superseded(["bob"]) == {}  # nothing left: no CRL re-signed
    record = next(r for r in store.list() if r.serial_hex == old)
    assert (record.status, record.revocation_reason) == ("revoked", "superseded")


def delivery_report(status: str | None, name: str = "bob") -> DeliveryReport:
    """A delivery of ``name`` to host bob that ended ``status`` (``None``: bob unreachable)."""
    if status is None:
        result = HostResult("bob", error="bob: connection refused")
    else:
        result = HostResult("bob", [Step("bundle", name, status, "why")])
    return DeliveryReport(GroupResult([result]), [], targets={name: ["bob"]})


@pytest.fixture
def lifecycle(pki_store, monkeypatch):
    """``clients`` with delivery and the CRL push replaced: ``lifecycle.deliver`` is what the
    delivery reports; ``lifecycle.pushed`` counts CRL pushes."""
    state = SimpleNamespace(deliver=None, pushed=0, store=pki_store)

    def push_crl(store):
        state.pushed += 1
        return GroupResult([])

    def deliver_bundles(store, names, dist_dir, enabled=True):
        return deliver.not_delivered(names, "--no-deliver") if not enabled else state.deliver

    monkeypatch.setattr("mtls_deploy.rollout.push_crl", push_crl)
    monkeypatch.setattr("mtls_deploy.deliver.deliver_bundles", deliver_bundles)
    return state


@pytest.mark.parametrize("how", ["renew", "reissue"])
@pytest.mark.parametrize("status", [None, "failed", "skipped"])
def test_a_renewal_that_was_not_delivered_revokes_nothing(lifecycle, how, status, capsys):
    old = lifecycle.store.issue_client("bob").serial
    lifecycle.deliver = delivery_report(status)
    if how == "renew":
        group = clients.renew("bob")
    else:
        group = clients.issue(["bob"], clients.IssueOptions(reissue=True))
    store = PkiStore.open(lifecycle.store.path)
    assert store.client_material("bob").serial != old
    assert store.superseded_serials("bob") == [old] and not superseded_in_crl(store, old)
    assert lifecycle.pushed == 0
    assert f"bob: previous serial {old} stays valid: the new certificate is not delivered" in (
        capsys.readouterr().out
    )
    assert group.failed or status == "skipped"


@pytest.mark.parametrize("how", ["renew", "reissue", "reissue --no-deliver"])
def test_delivered_then_the_predecessor_is_revoked_and_the_crl_pushed(lifecycle, how, capsys):
    old = lifecycle.store.issue_client("bob").serial
    lifecycle.deliver = delivery_report("changed")
    if how == "renew":
        clients.renew("bob")
    else:
        options = clients.IssueOptions(reissue=True, deliver=not how.endswith("--no-deliver"))
        clients.issue(["bob"], options)
    store = PkiStore.open(lifecycle.store.path)
    assert superseded_in_crl(store, old) and lifecycle.pushed == 1
    assert f"bob: previous serial {old} revoked as superseded" in capsys.readouterr().out


def test_a_later_delivery_finishes_what_a_failed_one_left(lifecycle):
    old = lifecycle.store.issue_client("bob").serial
    lifecycle.deliver = delivery_report("failed")
    clients.issue(["bob"], clients.IssueOptions(reissue=True))
    lifecycle.deliver = delivery_report("ok")  # the same bundle, now on bob
    clients.issue(["bob"], clients.IssueOptions())
    assert superseded_in_crl(PkiStore.open(lifecycle.store.path), old)


CONSUMER_UNREACHABLE = """all:
  children:
    consumers:
      hosts:
        bob: {ansible_host: 127.0.0.1, ansible_port: 1, ansible_user: bob,
              ansible_ssh_private_key_file: KEY, ssh_known_hosts_file: KNOWN}
"""


def test_renew_client_to_an_unreachable_consumer_keeps_the_old_certificate(pki_store, pki_env):
    """Through the real `inv`: exit 2, one line on stderr, the old certificate valid, no CRL."""
    old = pki_store.issue_client("bob").serial
    inventory = pki_env.root / "inventory"
    inventory.mkdir()
    (pki_env.root / "key").write_text("")
    (pki_env.root / "known_hosts").write_text("")
    hosts = CONSUMER_UNREACHABLE.replace("KEY", str(pki_env.root / "key"))
    (inventory / "hosts.yml").write_text(hosts.replace("KNOWN", str(pki_env.root / "known_hosts")))
    crl_before = pki_store.crl_pem()
    env = {**os.environ, "MTLS_DEPLOY_INVENTORY": str(inventory), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), "renew-client", "--name", "bob"],
        capture_output=True, text=True, cwd=pki_env.root, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == "failed on: bob" and "Traceback" not in done.stdout
    assert f"bob: previous serial {old} stays valid" in done.stdout
    store = PkiStore.open(pki_env.pki_dir)
    assert store.superseded_serials("bob") == [old] and store.crl_pem() == crl_before
