"""Integration scaffolding: the default lab (api1, bob) from inventory/, booted once per session;
lab worlds of a module's own (inventory, PKI, client bundle, fresh hosts); a PKI of a module's
own for the default lab; and the helpers that reach a lab host or run the real command line."""

import base64
import json
import os
import shlex
import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from mtls_deploy import inventory, lab
from mtls_deploy.connection import Remote, SshTarget
from mtls_deploy.operations import install_without_starting
from mtls_deploy.pki.bundle import write_client_bundle
from mtls_deploy.pki.store import PkiStore
from mtls_deploy.provision import RunOptions, provision_host
from mtls_deploy.runner import HostResult

# ``required``: under CI a skip of these fails the run (tests/conftest.py), so a CI machine
# without root or systemd-nspawn cannot go green by skipping the lab.
needs_lab = [
    pytest.mark.lab,
    pytest.mark.required,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
    pytest.mark.skipif(not shutil.which("systemd-nspawn"), reason="systemd-nspawn is missing"),
]

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LAB = ROOT / "inventory"  # the default lab's inventory: api1, bob
CLIENT = "alice"  # every lab world's client
CLIENT_ORG = "Example, Inc."  # the escaped comma makes the PHP backend run preg_match


@pytest.fixture(scope="session")
def lab_inventory():
    """The default inventory with its lab hosts up (`inv lab.up`; a no-op when already up)."""
    loaded = inventory.load(DEFAULT_LAB)
    lab.up(lab.hosts_from_inventory(loaded.select()))
    return loaded


# --- reaching hosts and running the command line ----------------------------------------------


def remote(inventory_dir: Path, name: str) -> Remote:
    """A connection to host ``name`` of the inventory in ``inventory_dir`` (not yet open)."""
    host = inventory.load(inventory_dir).host(name)
    return Remote(SshTarget.from_vars(host.name, host.vars))


def run_on(inventory_dir: Path, name: str, command: str, sudo: bool = False) -> str:
    """The stdout of ``command`` on host ``name``; asserts that it succeeded."""
    with remote(inventory_dir, name) as connection:
        return connection.run(command, sudo=sudo, check=True).stdout


def provision(inventory_dir: Path, name: str, check=False, diff=False, **extra_vars) -> HostResult:
    """Provision host ``name``, ``extra_vars`` on top; asserts that the run reached the host
    (a step may still fail: some tests want that)."""
    host = inventory.load(inventory_dir, extra_vars).host(name)
    result = provision_host(host, RunOptions(check=check, diff=diff))
    assert result.error is None, result.error
    return result


def provision_cleanly(inventory_dir: Path, name: str, **extra_vars) -> HostResult:
    """``provision``, asserting that no step failed either."""
    result = provision(inventory_dir, name, **extra_vars)
    assert not result.failed, [s for s in result.steps if s.status == "failed"]
    return result


def inv(*args, check=True, env=None) -> subprocess.CompletedProcess:
    """The real command line, run from the repository with this process's environment (which
    a PKI of a test module's own has set) and ``env`` on top."""
    done = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})})  # fmt: skip
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


# --- a PKI of a module's own ------------------------------------------------------------------


@contextmanager
def pki_environment(base: Path, passphrase: str):
    """The tool's PKI in ``base/pki``, its bundles in ``base/dist``, the CA passphrase set,
    and the repository as the working directory; all undone afterwards."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTLS_DEPLOY_PKI_DIR", str(base / "pki"))
        patch.setenv("MTLS_DEPLOY_DIST_DIR", str(base / "dist"))
        patch.setenv("MTLS_DEPLOY_CA_PASSPHRASE", passphrase)
        patch.chdir(ROOT)
        yield


@contextmanager
def own_pki(tmp_path_factory, name: str, passphrase: str):
    """A new PKI called ``name`` in a temporary directory, in force (``pki_environment``)
    while the context lasts; yields the directory (``pki/``, ``dist/``)."""
    base = tmp_path_factory.mktemp("pki")
    with pki_environment(base, passphrase):
        PkiStore().init(name=name, key_type="ec")
        yield base


# --- lab worlds: hosts, inventory and PKI of a module's own -----------------------------------


@dataclass(frozen=True)
class ApiHost:
    """A lab API host of a test module's own, on ports no other module uses."""

    name: str
    ssh_port: int
    https_port: int
    backend: str = "php"

    @property
    def server_name(self) -> str:
        return f"{self.name}.lab.test"

    @property
    def address(self) -> str:
        """``127.0.0.1:8461``: where the host's nginx listens."""
        return f"127.0.0.1:{self.https_port}"


@dataclass
class World:
    """A test module's own inventory, PKI, client bundle and lab hosts (by name)."""

    inventory: Path
    pki: Path
    bundle: Path
    passphrase: str
    hosts: dict[str, ApiHost]

    def host(self, name: str, **extra_vars):
        return inventory.load(self.inventory, extra_vars).host(name)

    def provision(self, name: str, check=False, diff=False, **extra_vars) -> HostResult:
        return provision(self.inventory, name, check, diff, **extra_vars)

    def remote(self, name: str) -> Remote:
        return remote(self.inventory, name)

    def sudo(self, name: str, command: str) -> subprocess.CompletedProcess:
        """``command`` as root on the host, whatever its exit status: (returncode, stdout,
        stderr) as a CompletedProcess."""
        with self.remote(name) as connection:
            result = connection.run(command, sudo=True)
        return subprocess.CompletedProcess(
            command, result.exit_status, result.stdout, result.stderr
        )

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
            f"{api.server_name}:{api.https_port}:127.0.0.1",
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
        for header in headers:
            command += ["-H", header]
        url = f"https://{api.server_name}:{api.https_port}{path}"
        out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
        body, _, code = out.rpartition("\n")
        return int(code), json.loads(body) if body.startswith("{") else body


def write_inventory(folder: Path, hosts: list[ApiHost]) -> Path:
    """An inventory of lab API hosts that use the lab's key and known_hosts."""
    (folder / "group_vars").mkdir(parents=True)
    entries = "\n".join(
        f"        {h.name}: {{ansible_port: {h.ssh_port}, https_port: {h.https_port}, "
        f"backend: {h.backend}, server_name: {h.server_name}}}"
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


def write_api_consumer_inventory(
    folder: Path, api: ApiHost, consumer: str, consumer_port: int,
    all_vars: dict | None = None, more_api_hosts: str = "",
) -> Path:  # fmt: skip
    """An inventory of one lab API host (user deploy, sudo) and one consumer (user bob) that
    use the lab's key and known_hosts; ``all_vars`` go into group_vars/all.yml (lifetimes),
    ``more_api_hosts`` are further lines of the api group's hosts."""
    (folder / "group_vars").mkdir(parents=True)
    (folder / "hosts.yml").write_text(
        "all:\n"
        "  vars: {ansible_host: 127.0.0.1, lab: true, https_listen: 127.0.0.1}\n"
        "  children:\n"
        "    api:\n      vars: {ansible_user: deploy, ansible_become: true}\n      hosts:\n"
        f"        {api.name}: {{ansible_port: {api.ssh_port}, https_port: {api.https_port}, "
        f"server_name: {api.server_name}}}\n" + more_api_hosts +
        "    consumers:\n      hosts:\n"
        f"        {consumer}: {{ansible_port: {consumer_port}, ansible_user: bob}}\n"
    )  # fmt: skip
    (folder / "group_vars" / "all.yml").write_text(
        f"ansible_ssh_private_key_file: {ROOT}/.lab/id_ed25519\n"
        f"ssh_known_hosts_file: {ROOT}/.lab/known_hosts\n"
        + "".join(f"{name}: {value}\n" for name, value in (all_vars or {}).items())
    )
    return folder


def make_pki_with_client(name: str) -> None:
    """A PKI called ``name`` in the current ``pki_environment``, with client 'alice' of
    'Example, Inc.' and her bundle in ``dist/alice``."""
    PkiStore().init(name=name, key_type="ec")
    store = PkiStore.open()
    store.issue_client(CLIENT, org=CLIENT_ORG)
    write_client_bundle(store, CLIENT)


@contextmanager
def lab_world(
    tmp_path_factory,
    hosts: list[ApiHost],
    *,
    name: str = "Integration API",
    passphrase: str = "integration-test",
    shared: str | None = None,
):
    """Own PKI ``name`` (``make_pki_with_client``), own inventory, fresh lab hosts; the hosts
    are stopped afterwards.

    ``shared`` names a world in pytest's session temp directory that several modules use: the
    first makes it and resets the hosts; a later one finds it, PKI and all, and boots the
    hosts again as the last module left them.
    """
    base = tmp_path_factory.getbasetemp() / shared if shared else tmp_path_factory.mktemp("world")
    folder = base / "inventory"
    with pki_environment(base, passphrase):
        fresh = not folder.exists()
        if fresh:
            write_inventory(folder, hosts)
            make_pki_with_client(name)
        lab_hosts = lab.hosts_from_inventory(inventory.load(folder).select())
        (lab.reset if fresh else lab.up)(lab_hosts)
        try:
            yield World(
                inventory=folder,
                pki=base / "pki",
                bundle=base / "dist" / CLIENT,
                passphrase=passphrase,
                hosts={h.name: h for h in hosts},
            )
        finally:
            lab.down(lab_hosts)


# --- the security tests' lab (test_tls_quality.py, test_hardening.py) -------------------------

# On ports of their own (other modules use 2201-2221 and 2291-2293).
SEC_PHP = ApiHost("sec-php", 2231, 8461, "php")
SEC_PY = ApiHost("sec-py", 2232, 8462, "python")


@pytest.fixture(scope="module")
def security_lab(tmp_path_factory):
    """sec-php and sec-py provisioned for one module, stopped after it. The first module of the
    session resets them and makes the PKI; a later one reuses both (its provisioning is a no-op
    re-run)."""
    world = lab_world(
        tmp_path_factory,
        [SEC_PHP, SEC_PY],
        name="Security Test API",
        passphrase="security-test",
        shared="security-lab",
    )
    with world as sec:
        for name in sec.hosts:
            provision_cleanly(sec.inventory, name)
        yield sec


# --- the toolbox: nginx, php-fpm, php, uwsgi and systemd-analyze on a lab host ------------------

# Its own name and port (other modules use 2201-2232, 2241-2248, 2291-2299). Its root stays
# between sessions (``lab.up``, never reset), so the packages are installed once per machine.
TOOLBOX = lab.LabHost("toolbox", "127.0.0.1", 2261, "deploy", sudo=True)
TOOLBOX_PACKAGES = ("nginx", "php-fpm", "php-cli", "uwsgi", "uwsgi-plugin-python3")
# Installed to check files with, never to serve: nginx's default site would take port 80 of
# the machine the lab shares its network with.
TOOLBOX_DISABLE = 'systemctl disable --now nginx.service uwsgi.service "$(basename /lib/systemd/system/php*-fpm.service)"'


def toolbox_vars() -> dict:
    """The toolbox's connection variables, as an inventory would give them."""
    return {
        "ansible_host": TOOLBOX.address,
        "ansible_port": TOOLBOX.ssh_port,
        "ansible_user": TOOLBOX.user,
        "ansible_become": TOOLBOX.sudo,
        "ansible_ssh_private_key_file": str(ROOT / ".lab" / "id_ed25519"),
        "ssh_known_hosts_file": str(ROOT / ".lab" / "known_hosts"),
    }


@pytest.fixture(scope="session")
def toolbox_host():
    """An open connection to the lab host 'toolbox' (SSH 127.0.0.1:2261), booted for the
    session and stopped after it; nothing installed beyond the lab's base."""
    lab.up([TOOLBOX], ROOT / ".lab")
    try:
        with Remote(SshTarget.from_vars(TOOLBOX.name, toolbox_vars())) as connection:
            yield connection
    finally:
        lab.down([TOOLBOX])


@dataclass(frozen=True)
class Toolbox:
    """Runs commands as root on a lab host that has nginx, php-fpm, php-cli, uwsgi with its
    python3 plugin and systemd-analyze: the checks this machine may lack (``nginx -t``)."""

    connection: Remote

    def run(self, argv: list[str], files: dict[str, bytes] | None = None):
        """Write ``files`` (absolute path -> content; folders made as needed), then run
        ``argv`` as root: a CompletedProcess with returncode, stdout and stderr as text.

        Example: ``toolbox.run(["nginx", "-t", "-c", "/tmp/t/nginx.conf"], {"/tmp/t/nginx.conf": b"..."})``
        """
        if files:
            self.connection.run_script(files_script(files), sudo=True, check=True)
        result = self.connection.run(shlex.join(argv), sudo=True)
        return subprocess.CompletedProcess(argv, result.exit_status, result.stdout, result.stderr)


def files_script(files: dict[str, bytes]) -> str:
    """A script writing each file from base64, its folder made first; readable by root only
    (a throwaway key is still a key)."""
    lines = ["set -e", "umask 077"]
    for path, content in files.items():
        assert path.startswith("/"), f"toolbox files need absolute paths: {path}"
        lines += [
            f"mkdir -p {shlex.quote(path.rsplit('/', 1)[0] or '/')}",
            f"base64 -d > {shlex.quote(path)} <<'TOOLBOX_EOF'",
            base64.encodebytes(content).decode().rstrip("\n"),
            "TOOLBOX_EOF",
        ]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def toolbox(toolbox_host) -> Toolbox:
    """The toolbox, its packages installed on first use (services held back, then disabled);
    on a later session a single check finds them there."""
    names = " ".join(TOOLBOX_PACKAGES)
    check = (
        f"dpkg-query -W -f='${{db:Status-Abbrev}}\\n' {names} 2>/dev/null | grep -c '^ii' || true"
    )
    installed = toolbox_host.run(check, sudo=True, check=True).stdout.strip()
    if installed != str(len(TOOLBOX_PACKAGES)):
        script = "\n".join(
            ["set -e", "apt-get update -qq", install_without_starting(list(TOOLBOX_PACKAGES)),
             TOOLBOX_DISABLE]
        )  # fmt: skip
        toolbox_host.run_script(script + "\n", sudo=True, check=True, timeout=1800)
    return Toolbox(toolbox_host)


# --- the ACME world: Pebble and its DNS on this machine (mtls_deploy/lab/acme.py) -------------


@pytest.fixture(scope="session")
def acme_lab():
    """The lab's ACME world for the whole session: Debian's Pebble (Let's Encrypt's test ACME
    server) and pebble-challtestsrv as its only DNS, on loopback. Started here, or reused when
    already running with the same settings (``inv lab.up --with-acme``, another session);
    stopped at the end if a test session started it and no other session still holds it.
    Pebble keeps its state in memory: orders, accounts and its roots live as long as it runs.

    Yields an ``mtls_deploy.lab.acme.AcmeLab``:

    - ``acme_lab.directory_url``: ``"https://127.0.0.1:14000/dir"`` (reachable from lab hosts
      too: they share this machine's network).
    - ``acme_lab.listener_ca``: ``Path`` on the control machine of the PEM CA that signed
      Pebble's HTTPS listener (``curl --cacert``, ``ssl.create_default_context(cafile=...)``).
    - ``acme_lab.register("api9.lab.test", "127.0.0.9")``: an A record in Pebble's DNS, so
      Pebble validates HTTP-01 for that name on 127.0.0.9 port 80 (an ACME host needs a
      loopback address of its own, 127.0.0.2 and up). A name never registered gets no answer
      (``unregister(name)`` forgets one). ``lookup(name)`` -> the addresses the DNS answers.
    - ``acme_lab.trust("bob")``: Pebble's current root into the running lab host bob's system
      store (/usr/local/share/ca-certificates + update-ca-certificates), as a public root;
      ``trust("api9", directory=True)`` also adds the listener CA, so that certbot there
      (Debian's python3-requests reads the system store) trusts the directory with no setting;
      ``trust(host, roots=False, directory=True)`` the listener CA alone; ``untrust(host)``
      takes both out. Trusted hosts get the new root again whenever the lab restarts Pebble.
    - ``acme_lab.roots_pem()`` / ``intermediates_pem()``: Pebble's current root / intermediate
      (PEM bytes). Pebble's listener and its issuer have different CAs (a real step-ca has one
      root for both): a bundle that must verify the directory AND the issued certificates, as
      ``acme_ca_bundle``, is ``acme_lab.listener_ca.read_bytes() + acme_lab.roots_pem()``.
    - ``acme_lab.pebble_log``: ``Path`` of Pebble's log since it started (a line per order).
    """
    from mtls_deploy.lab.acme import AcmeLab

    with AcmeLab(ROOT / ".lab").test_session() as acme:
        yield acme
