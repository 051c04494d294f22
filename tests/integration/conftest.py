"""Integration fixtures: the default lab (api1, bob) from inventory/, booted once per session."""

import json
import os
import shutil
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from mtls_deploy import inventory, lab
from mtls_deploy.bundle import write_client_bundle
from mtls_deploy.connection import Remote, SshTarget
from mtls_deploy.pki_store import PkiStore
from mtls_deploy.provision import RunOptions, provision_host

needs_lab = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
    pytest.mark.skipif(not shutil.which("systemd-nspawn"), reason="systemd-nspawn is missing"),
]


@pytest.fixture(scope="session")
def lab_inventory():
    """The default inventory with its lab hosts up (`inv lab.up`; a no-op when already up)."""
    loaded = inventory.load("inventory")
    lab.up(lab.hosts_from_inventory(loaded.select()))
    return loaded


ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ApiHost:
    """A lab API host of a test module's own, on ports no other module uses."""

    name: str
    ssh_port: int
    https_port: int
    backend: str = "php"


@dataclass
class World:
    """A test module's own inventory, PKI, client bundle and freshly reset lab hosts."""

    inventory: Path
    bundle: Path
    hosts: dict

    def host(self, name: str, **extra_vars):
        return inventory.load(self.inventory, extra_vars).host(name)

    def provision(self, name: str, check=False, diff=False, **extra_vars):
        result = provision_host(self.host(name, **extra_vars), RunOptions(check=check, diff=diff))
        assert result.error is None, result.error
        return result

    def remote(self, name: str) -> Remote:
        host = self.host(name)
        return Remote(SshTarget.from_vars(host.name, host.vars))

    def curl(self, name: str, path="/whoami", cert=True, headers=()):
        """(status, JSON body or text) of an HTTPS request from the control machine."""
        api = self.hosts[name]
        command = [
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "--resolve",
            f"{name}.lab.test:{api.https_port}:127.0.0.1",
            "--cacert",
            str(self.bundle / "api-ca.crt"),
        ]
        if cert:
            command += [
                "--cert",
                str(self.bundle / "alice.crt"),
                "--key",
                str(self.bundle / "alice.key"),
            ]
        for header in headers:
            command += ["-H", header]
        url = f"https://{name}.lab.test:{api.https_port}{path}"
        out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
        body, _, code = out.rpartition("\n")
        return int(code), json.loads(body) if body.startswith("{") else body


def write_inventory(folder: Path, hosts: list[ApiHost]) -> Path:
    """An inventory of lab API hosts that use the lab's key and known_hosts."""
    (folder / "group_vars").mkdir(parents=True)
    entries = "\n".join(
        f"        {h.name}: {{ansible_port: {h.ssh_port}, https_port: {h.https_port}, "
        f"backend: {h.backend}, server_name: {h.name}.lab.test}}"
        for h in hosts
    )
    (folder / "hosts.yml").write_text(
        "all:\n"
        "  vars: {ansible_host: 127.0.0.1, ansible_user: deploy, ansible_become: true, lab: true,\n"
        "         https_listen: 127.0.0.1}\n"
        "  children:\n    api:\n      hosts:\n" + entries + "\n"
    )
    (folder / "group_vars" / "all.yml").write_text(
        f"ansible_ssh_private_key_file: {ROOT}/.lab/id_ed25519\n"
        f"ssh_known_hosts_file: {ROOT}/.lab/known_hosts\n"
    )
    return folder


@contextmanager
def lab_world(tmp_path_factory, hosts: list[ApiHost]):
    """Own PKI (with client 'alice' of 'Example, Inc.'), own inventory, fresh lab hosts;
    the hosts are stopped afterwards."""
    base = tmp_path_factory.mktemp("world")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTLS_DEPLOY_PKI_DIR", str(base / "pki"))
        patch.setenv("MTLS_DEPLOY_DIST_DIR", str(base / "dist"))
        patch.setenv("MTLS_DEPLOY_CA_PASSPHRASE", "integration-test")
        patch.chdir(ROOT)
        folder = write_inventory(base / "inventory", hosts)
        lab_hosts = lab.hosts_from_inventory(inventory.load(folder).select())
        lab.reset(lab_hosts)
        PkiStore().init(name="Integration API", key_type="ec")
        store = PkiStore.open()
        store.issue_client("alice", org="Example, Inc.")
        bundle = write_client_bundle(store, "alice")
        try:
            yield World(folder, bundle, {h.name: h for h in hosts})
        finally:
            lab.down(lab_hosts)
