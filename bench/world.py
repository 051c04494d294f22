"""The benchmarks' own world: an inventory of lab hosts fleet1..fleet8, a PKI and a client
bundle in a temporary directory, so that no run touches the default lab (api1, bob) or pki/.

    world = World.create(["fleet1", "fleet2"])   # boots the hosts, converges them
    world.inv("provision", "--host", "fleet1")   # a whole `inv` process, timed
    world.close()                                # deletes the directory (hosts keep running)

Ports: fleet1..fleet8 SSH 2241-2248 and HTTPS 8471-8478 on 127.0.0.1; fleet9..fleet32 (the
fleet benchmark's N = 16 and 32) SSH 2249 and HTTPS 8479 each on an address of its own,
127.0.5.9-127.0.5.32. fleet2 runs the Python backend, the others PHP-FPM. Every host's nginx
site also answers ``/ceiling`` (templates/ceiling-site.conf.j2).

The example apps (issue 12) run on hosts of their own, group ``apps``, each deployed from a copy
of its example in the world's directory (the deploy benchmarks change it): apps-php
(examples/php-orders, SSH 2457, HTTPS 8657), apps-py (flask-orders, 2458/8658) and apps-proxy
(fastapi-orders, 2459/8659), on 127.0.0.1.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from mtls_deploy import inventory, lab
from mtls_deploy.connection import Remote, SshTarget
from mtls_deploy.pki.bundle import write_client_bundle
from mtls_deploy.pki.store import PkiStore

from .common import REPO, ProcessRun, run_process

FLEET = [f"fleet{i}" for i in range(1, 33)]
ON_LOCALHOST = 8  # fleet1..fleet8 on 127.0.0.1, each on ports of its own
PYTHON_HOSTS = {"fleet2"}
CLIENT = "bench"
CEILING_TEMPLATE = Path(__file__).resolve().parent / "templates" / "ceiling-site.conf.j2"
INV = Path(sys.executable).with_name("inv")
SIGNING_KEY_ENV = "ORDERS_SIGNING_KEY"  # the examples' app_environment reads it from here
_SHARED = {"app_shared": ["var"], "app_environment": {SIGNING_KEY_ENV: {"env": SIGNING_KEY_ENV}}}
APPS = {  # host: (SSH port, HTTPS port, backend, example, its host_vars beside app_src)
    "apps-php": (2457, 8657, "php", "php-orders",
                 {**_SHARED, "php_front_controller": "lib/Request.class.php"}),
    "apps-py": (2458, 8658, "python", "flask-orders", {**_SHARED, "python_wsgi": "orders:app"}),
    "apps-proxy": (2459, 8659, "proxy", "fastapi-orders", {"app_shared": ["var"]}),
}  # fmt: skip


def _number(host: str) -> int:
    return int(host.removeprefix("fleet"))


def sort_key(host: str) -> tuple:
    """fleet1..fleet32 in order, then the app hosts."""
    return (1, list(APPS).index(host)) if host in APPS else (0, _number(host))


def address(host: str) -> str:
    if host in APPS:
        return "127.0.0.1"
    n = _number(host)
    return "127.0.0.1" if n <= ON_LOCALHOST else f"127.0.5.{n}"


def ssh_port(host: str) -> int:
    if host in APPS:
        return APPS[host][0]
    return 2240 + min(_number(host), ON_LOCALHOST + 1)


def https_port(host: str) -> int:
    if host in APPS:
        return APPS[host][1]
    return 8470 + min(_number(host), ON_LOCALHOST + 1)


def server_name(host: str) -> str:
    return f"{host}.lab.test"


def inventory_text() -> str:
    """hosts.yml: group api (so hosts get the API roles) with the child group fleet."""
    lines = [
        f"            {h}: {{ansible_host: {address(h)}, https_listen: {address(h)}, "
        f"ansible_port: {ssh_port(h)}, https_port: {https_port(h)}, "
        f"server_name: {server_name(h)}, backend: {'python' if h in PYTHON_HOSTS else 'php'}}}"
        for h in FLEET
    ]
    apps = [
        f"            {h}: {{ansible_port: {ssh_port(h)}, https_port: {https_port(h)}, "
        f"server_name: {server_name(h)}, backend: {backend}}}"
        for h, (_, _, backend, _, _) in APPS.items()
    ]
    head = textwrap.dedent(f"""\
        # Written by bench/world.py for one benchmark run.
        all:
          vars: {{ansible_host: 127.0.0.1, ansible_user: deploy, ansible_become: true, lab: true,
                 https_listen: 127.0.0.1, nginx_site_template: {CEILING_TEMPLATE}}}
          children:
            api:
              children:
                fleet:
                  hosts:
        """)
    return head + "\n".join([*lines, "        apps:", "          hosts:", *apps]) + "\n"


def lab_hosts(hosts: list[str]) -> list:
    """The fleet's ``LabHost``s, as the inventory above describes them."""
    return [lab.LabHost(h, address(h), ssh_port(h), "deploy", True) for h in hosts]


@dataclass
class Bundle:
    """A client's key and certificate, and the server CA to verify the API with."""

    cert: Path
    key: Path
    server_ca: Path


@dataclass
class World:
    dir: Path
    env: dict = field(default_factory=dict)
    bundle: Bundle | None = None

    @classmethod
    def create(cls, hosts: list[str], progress=print) -> "World":
        """A fresh inventory + EC PKI + client bundle; ``hosts`` booted and converged."""
        world = cls(Path(tempfile.mkdtemp(prefix="mtls-bench-")))
        (world.dir / "inventory" / "group_vars").mkdir(parents=True)
        (world.dir / "inventory" / "hosts.yml").write_text(inventory_text())
        (world.dir / "inventory" / "group_vars" / "all.yml").write_text(
            f"ansible_ssh_private_key_file: {REPO}/.lab/id_ed25519\n"
            f"ssh_known_hosts_file: {REPO}/.lab/known_hosts\n"
        )
        world.env = {
            "MTLS_DEPLOY_INVENTORY": str(world.dir / "inventory"),
            "MTLS_DEPLOY_PKI_DIR": str(world.dir / "pki"),
            "MTLS_DEPLOY_DIST_DIR": str(world.dir / "dist"),
            "MTLS_DEPLOY_CA_PASSPHRASE": os.urandom(12).hex(),
        }
        world.env[SIGNING_KEY_ENV] = os.urandom(12).hex()
        world.write_apps()
        os.environ.update(world.env)  # in-process provisioning reads the same world
        world.bundle = world.new_pki("pki", "ec")
        if hosts:
            world.boot(hosts, progress)
        return world

    def write_apps(self) -> None:
        """Each app host's host_vars, its ``app_src`` a copy of its example (``app_dir``)."""
        folder = self.dir / "inventory" / "host_vars"
        folder.mkdir(exist_ok=True)
        for host, (_, _, _, example, values) in APPS.items():
            shutil.copytree(REPO / "examples" / example, self.app_dir(host),
                            ignore=shutil.ignore_patterns("__pycache__", "var", "vendor"))  # fmt: skip
            text = json.dumps({"app_src": str(self.app_dir(host)), **values})
            (folder / f"{host}.yml").write_text(text + "\n")  # JSON is YAML

    def app_dir(self, host: str) -> Path:
        return self.dir / "apps" / APPS[host][3]

    def new_pki(self, folder: str, key_type: str) -> Bundle:
        """A PKI in ``<dir>/<folder>`` and the bench client's bundle from it."""
        store = PkiStore(self.dir / folder)
        store.init(name="Bench API", key_type=key_type)
        return self.client_bundle(folder)

    def client_bundle(self, folder: str) -> Bundle:
        store = PkiStore.open(self.dir / folder)
        store.issue_client(CLIENT)
        out = write_client_bundle(store, CLIENT, self.dir / f"dist-{folder}", p12=False)
        return Bundle(out / f"{CLIENT}.crt", out / f"{CLIENT}.key", out / "api-ca.crt")

    def boot(self, hosts: list[str], progress=print) -> None:
        """Boot the hosts (``lab.up``, idempotent) and converge them in one provisioning run."""
        for name, outcome in lab.up(self.lab_hosts(hosts), REPO / ".lab", progress).items():
            progress(f"{name}: {outcome}")
        run = self.provision(hosts)
        progress(f"converged {', '.join(hosts)} in {run.wall_s:.1f} s")

    def lab_hosts(self, hosts: list[str]) -> list:
        return lab.hosts_from_inventory(self.inventory().select(hosts))

    def inventory(self, extra_vars: dict | None = None):
        return inventory.load(self.dir / "inventory", extra_vars)

    def host(self, name: str):
        return self.inventory().host(name)

    def inv(self, *args, env: dict | None = None, timeout: float = 1800) -> ProcessRun:
        """A whole ``inv`` process in the repository, with this world's environment."""
        return run_process([INV, *args], env={**os.environ, **self.env, **(env or {})},
                           timeout=timeout)  # fmt: skip

    def provision(self, hosts: list[str], *args, env: dict | None = None) -> ProcessRun:
        """``inv provision --host a,b --json``; raises unless every host succeeded."""
        run = self.inv("provision", "--host", ",".join(hosts), "--json", *args, env=env)
        report = provision_report(run)
        if run.returncode != 0 or report["failed"]:
            raise RuntimeError(f"provision {hosts} failed: {failure_lines(run, report)}")
        return run

    def remote(self, host: str) -> Remote:
        return Remote(SshTarget.from_vars(host, self.host(host).vars))

    def curl(self, host: str, path: str = "/whoami", bundle: Bundle | None = None):
        """``(status, body)`` of one request from this machine with the client certificate."""
        bundle = bundle or self.bundle
        name, port = server_name(host), https_port(host)
        command = [
            "curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}",
            "--resolve", f"{name}:{port}:{address(host)}", "--cacert", str(bundle.server_ca),
            "--cert", str(bundle.cert), "--key", str(bundle.key), f"https://{name}:{port}{path}",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
        body, _, code = done.stdout.rpartition("\n")
        return (int(code) if code.isdigit() else 0), body or done.stderr.strip()

    def close(self) -> None:
        for name in self.env:
            os.environ.pop(name, None)
        shutil.rmtree(self.dir, ignore_errors=True)


def provision_report(run: ProcessRun) -> dict:
    """The ``--json`` document of an ``inv provision`` run, or ``{"failed": ["?"]}``."""
    start = run.stdout.find("{")
    try:
        return json.loads(run.stdout[start:]) if start >= 0 else {"hosts": {}, "failed": ["?"]}
    except ValueError:
        return {"hosts": {}, "failed": ["?"]}


def failure_lines(run: ProcessRun, report: dict) -> str:
    lines = []
    for host, data in report.get("hosts", {}).items():
        if data.get("error"):
            lines.append(f"{host}: {data['error']}")
        lines += [
            f"{host}: {s['name']}: {s['reason']}" for s in data.get("steps", [])
            if s["status"] == "failed"
        ]  # fmt: skip
    return "; ".join(lines) or (run.stderr or run.stdout).strip()[-500:]


def whoami_ok(status: int, body: str) -> bool:
    """The API answered /whoami for the bench client, its certificate verified."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return status == 200 and data.get("verified") == "SUCCESS" and data["subject"]["CN"] == CLIENT


@dataclass
class Proc:
    """One process of a lab host, seen from this machine's /proc (the containers share the
    kernel): ``cpu_s`` includes what its exited children used (``cutime``/``cstime``)."""

    pid: int
    ppid: int
    comm: str
    cpu_s: float


def all_processes() -> dict[int, Proc]:
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        cpu = sum(int(x) for x in fields[11:15]) / ticks  # utime stime cutime cstime
        found[int(entry.name)] = Proc(int(entry.name), int(fields[1]), comm, cpu)
    return found


def host_processes(hosts: list[str]) -> list[Proc]:
    """Every process under the hosts' systemd-nspawn (their init and all below it)."""
    procs = all_processes()
    children: dict[int, list[int]] = {}
    for proc in procs.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    todo = [p for p in (lab.running_pid(lab.paths_for(h)) for h in hosts) if p]
    tree = []
    while todo:
        pid = todo.pop()
        if pid in procs:
            tree.append(procs[pid])
        todo += children.get(pid, [])
    return tree


def lab_cpu_seconds(hosts: list[str], comms: tuple[str, ...] = ()) -> float:
    """CPU seconds the hosts have used so far, all processes or those whose name starts with
    one of ``comms`` (``("nginx",)``). sshd sessions, sudo and shells end up in their parents'
    ``cutime``, so deltas of this price what a run costs the hosts."""
    return sum(p.cpu_s for p in host_processes(hosts) if not comms or p.comm.startswith(comms))


def memory_kb(pid: int) -> tuple[int, int]:
    """``(rss, pss)`` in kB of one process; PSS shares each shared page among its users."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    values = {line.split(":")[0]: int(line.split()[1]) for line in rollup.splitlines()[1:]
              if line.split()[-1] == "kB"}  # fmt: skip
    return values.get("Rss", 0), values.get("Pss", 0)


def host_versions(world, hosts: list[str]) -> dict:
    """Debian package versions of the servers measured: nginx, OpenSSL, PHP-FPM, uWSGI."""
    script = "dpkg-query -W -f '${Package}=${Version}\\n' nginx openssl libssl3 'php*-fpm' uwsgi-core 2>/dev/null; true"
    found = {}
    for host in hosts:
        with world.remote(host) as remote:
            for line in remote.run(script).stdout.splitlines():
                name, _, version = line.partition("=")
                if version:
                    found[name] = version
    return found
