"""The security tests' own lab: ``sec-php`` and ``sec-py``, with a PKI and an inventory of their
own, shared by test_tls_quality.py and test_hardening.py.

The first module to ask resets and provisions both hosts; a later one finds the same PKI in
pytest's session temp directory, boots the hosts again if an earlier module stopped them, and
provisions (a no-op re-run). Each module stops the hosts when it is done (``lab.down``).
"""

import json
import subprocess
import textwrap
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from mtls_deploy import inventory, lab
from mtls_deploy.bundle import write_client_bundle
from mtls_deploy.connection import Remote, SshTarget
from mtls_deploy.pki_store import PkiStore
from mtls_deploy.provision import RunOptions, provision_host

ROOT = Path(__file__).resolve().parents[2]
# backend: (host, ssh port, https port). Ports of their own: other tests use 2201-2212, 2241+.
HOSTS = {"php": ("sec-php", 2231, 8461), "python": ("sec-py", 2232, 8462)}
PASSPHRASE = "security-test"
CLIENT = "alice"
CLIENT_ORG = "Example, Inc."  # the escaped comma makes the PHP backend run preg_match


@dataclass(frozen=True)
class SecurityLab:
    """Where this lab's inventory, PKI and client bundle live, and how to reach its hosts."""

    base: Path

    @property
    def inventory(self) -> Path:
        return self.base / "inventory"

    @property
    def pki(self) -> Path:
        return self.base / "pki"

    @property
    def bundle(self) -> Path:
        return self.base / "dist" / CLIENT

    def host(self, backend: str):
        return inventory.load(self.inventory).host(HOSTS[backend][0])

    def remote(self, backend: str) -> Remote:
        host = self.host(backend)
        return Remote(SshTarget.from_vars(host.name, host.vars))

    def sudo(self, backend: str, command: str) -> subprocess.CompletedProcess:
        """``command`` as root on the host: (returncode, stdout, stderr) as a CompletedProcess."""
        with self.remote(backend) as remote:
            result = remote.run(command, sudo=True)
        return subprocess.CompletedProcess(
            command, result.exit_status, result.stdout, result.stderr
        )

    def server_name(self, backend: str) -> str:
        return f"{HOSTS[backend][0]}.lab.test"

    def address(self, backend: str) -> str:
        """``127.0.0.1:8461``: where the host's nginx listens."""
        return f"127.0.0.1:{HOSTS[backend][2]}"

    def curl(self, backend: str, path: str = "/whoami", cert: bool = True) -> tuple[int, object]:
        """(HTTP status, parsed JSON body) of a GET with alice's certificate."""
        name, https = self.server_name(backend), HOSTS[backend][2]
        command = [
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code}",
            "--resolve",
            f"{name}:{https}:127.0.0.1",
            "--cacert",
            str(self.bundle / "api-ca.crt"),
        ]
        if cert:
            command += [
                "--cert",
                str(self.bundle / f"{CLIENT}.crt"),
                "--key",
                str(self.bundle / f"{CLIENT}.key"),
            ]
        out = subprocess.run(
            [*command, f"https://{name}:{https}{path}"], capture_output=True, text=True, check=True
        ).stdout
        body, _, code = out.rpartition("\n")
        return int(code), json.loads(body) if body.startswith("{") else body

    def provision(self, backend: str, **extra):
        host = inventory.load(self.inventory, extra).host(HOSTS[backend][0])
        result = provision_host(host, RunOptions())
        assert result.error is None, result.error
        assert result.count("failed") == 0, [s for s in result.steps if s.status == "failed"]
        return result

    def lab_hosts(self):
        return lab.hosts_from_inventory(inventory.load(self.inventory).select())


def write_inventory(folder: Path) -> None:
    hosts = "\n".join(
        f"        {name}: {{ansible_port: {ssh}, https_port: {https}, backend: {backend}, "
        f"server_name: {name}.lab.test}}"
        for backend, (name, ssh, https) in HOSTS.items()
    )
    (folder / "group_vars").mkdir(parents=True)
    (folder / "hosts.yml").write_text(
        textwrap.dedent("""\
        all:
          vars: {ansible_host: 127.0.0.1, ansible_user: deploy, ansible_become: true, lab: true,
                 https_listen: 127.0.0.1}
          children:
            api:
              hosts:
        """)
        + hosts
        + "\n"
    )
    (folder / "group_vars" / "all.yml").write_text(
        f"ansible_ssh_private_key_file: {ROOT}/.lab/id_ed25519\n"
        f"ssh_known_hosts_file: {ROOT}/.lab/known_hosts\n"
    )


def environment(patch: pytest.MonkeyPatch, base: Path) -> None:
    patch.setenv("MTLS_DEPLOY_PKI_DIR", str(base / "pki"))
    patch.setenv("MTLS_DEPLOY_DIST_DIR", str(base / "dist"))
    patch.setenv("MTLS_DEPLOY_CA_PASSPHRASE", PASSPHRASE)
    patch.chdir(ROOT)


def security_lab(tmp_path_factory, patch: pytest.MonkeyPatch) -> SecurityLab:
    """Both hosts up and provisioned; fresh (reset, new PKI) the first time in a session."""
    sec = SecurityLab(tmp_path_factory.getbasetemp() / "security-lab")
    environment(patch, sec.base)
    if not sec.inventory.exists():
        write_inventory(sec.inventory)
        lab.reset(sec.lab_hosts())
        PkiStore().init(name="Security Test API", key_type="ec")
        store = PkiStore.open()
        store.issue_client(CLIENT, org=CLIENT_ORG)
        write_client_bundle(store, CLIENT)
    else:
        lab.up(sec.lab_hosts())
    for backend in HOSTS:
        sec.provision(backend)
    return sec


@contextmanager
def provisioned(tmp_path_factory):
    """``security_lab`` for one test module: the environment set, the hosts stopped after."""
    with pytest.MonkeyPatch.context() as patch:
        sec = security_lab(tmp_path_factory, patch)
        try:
            yield sec
        finally:
            lab.down(sec.lab_hosts())
