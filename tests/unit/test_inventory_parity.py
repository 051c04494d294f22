"""``ansible-inventory --list`` and ``inv inventory --json`` agree on hosts, groups and variables,
and Ansible's host patterns select the same hosts in both, for an inventory that uses ranges,
nested groups, group_vars (file and directory form), host_vars of expanded hosts, an ungrouped
host and the ansible_* variables we pass through or ignore.

ansible-core comes from PyPI into a virtualenv cached in /var/cache/mtls-deploy (built once, in
a folder beside it, then renamed: a second run costs seconds). ``required``: under CI a skip
(no PyPI) fails the run.

Intended differences, normalised away: our variables carry their source (provenance) and
include the roles' defaults and Ansible's magic ``inventory_hostname``/``group_names``; Ansible
lists the implicit ``ungrouped`` group even when empty and its groups' direct hosts only (we
list every member); patterns: Ansible warns for a name it does not know and for a pattern that
matches nothing, we refuse both in one line (tests/unit/test_host_patterns.py), so only
patterns that match are compared here.
"""

import fcntl
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from invoke import Collection, Program
from invoke.loader import FilesystemLoader

from mtls_deploy import inventory

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_CORE = "ansible-core==2.18.19"
CACHE = Path("/var/cache/mtls-deploy")
VENV_NAME = "ansible-venv-" + ANSIBLE_CORE.split("==")[1]

FILES = {
    "hosts.yml": """
        all:
          vars: {datacenter: none, https_port: 443}
          hosts:
            lone.example.test:
              ansible_python_interpreter: /usr/bin/python3
            web.example.test:2201:
          children:
            api:
              vars: {https_port: 8443, backend: php}
              hosts:
                api[01:12].example.test: {ansible_user: deploy}
              children:
                api_eu:
                  hosts:
                    eu[a:c].example.test: {datacenter: eu}
                  children:
                    api_eu_canary:
                      hosts:
                        eua.example.test:
            db:
              hosts:
                db[1:10:3]-n[1:2]: {ansible_port: 2222}
            consumers:
              hosts:
                bob: {ansible_ssh_common_args: "-o ProxyJump=deploy@bastion.example.test:22"}
        """,
    "group_vars/all.yml": "ssh_connect_timeout: 5\nbackend: python\n",
    "group_vars/api.yml": "client_verify: 'on'\n",
    "group_vars/api_eu/main.yml": "https_port: 9443\n",
    "group_vars/api_eu/extra.yml": "rack: r1\n",
    "host_vars/api03.example.test.yml": "https_port: 10443\n",
    "host_vars/eub.example.test.yml": "datacenter: eu-b\n",
    "host_vars/db4-n2.yml": "ansible_port: 2223\n",
}
PATTERNS = [
    "all",
    "api",
    "api_eu",
    "ungrouped",
    "api0*",
    "~api1[0-2]",
    "~eu[ab]",
    "api:!api_eu",
    "api,!api03.example.test",
    "api:&~.*0[1-3]",
    "db:consumers",
    "all:!api:!db",
    "*.example.test:&api_eu:!api_eu_canary",
    "db[0]",
    "db[1:3]",
]
# Run by the virtualenv's python: Ansible's own pattern evaluation, one process for all patterns
ANSIBLE_PATTERNS = """
import json, sys
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
manager = InventoryManager(loader=DataLoader(), sources=[sys.argv[1]])
print(json.dumps({p: [h.name for h in manager.get_hosts(p)] for p in json.loads(sys.argv[2])}))
"""


def ansible_venv(fallback: Path) -> Path:
    """The cached virtualenv with ansible-core, built (under a lock) if missing."""
    try:
        CACHE.mkdir(parents=True, exist_ok=True)
        cache = CACHE if os.access(CACHE, os.W_OK) else fallback
    except OSError:  # not root: a cache of the test run's own
        cache = fallback
    cache.mkdir(parents=True, exist_ok=True)
    venv = cache / VENV_NAME
    with open(cache / f"{VENV_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / "bin" / "ansible-inventory").exists():
            build_venv(venv)
    return venv


def build_venv(venv: Path) -> None:
    """Build in a folder beside ``venv``, then rename: a half-built one is never used."""
    building = venv.with_name(venv.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(building)], check=True)
    pip = [str(building / "bin" / "python"), "-m", "pip", "install", "-q", ANSIBLE_CORE]
    done = subprocess.run(pip, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
        pytest.skip(f"cannot install {ANSIBLE_CORE} from PyPI: {done.stderr.strip()[-300:]}")
    # a venv's scripts name its folder: rebuild them for the final path after the rename
    building.rename(venv)
    subprocess.run([sys.executable, "-m", "venv", "--upgrade", str(venv)], check=True)
    fix_shebangs(venv, building)


def fix_shebangs(venv: Path, old: Path) -> None:
    """pip's scripts start with ``#!<building>/bin/python``: point them at the renamed venv."""
    for script in (venv / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            head = script.read_bytes()[:200]
            if head.startswith(b"#!") and str(old).encode() in head:
                script.write_bytes(
                    script.read_bytes().replace(str(old).encode(), str(venv).encode())
                )


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    return ansible_venv(tmp_path_factory.mktemp("ansible-cache"))


@pytest.fixture(scope="module")
def inventory_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("parity") / "inventory"
    for name, text in FILES.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return folder


def ansible_env(home: Path) -> dict:
    """An empty ansible.cfg of the test's own: no user or system configuration."""
    (home / "ansible.cfg").write_text("[defaults]\n")
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(home / "ansible.cfg"),
        "HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_HOST_PATTERN_MISMATCH": "ignore",
    }


def run_ansible(venv: Path, inventory_dir: Path, *argv: str) -> str:
    home = inventory_dir.parent
    done = subprocess.run(
        argv, capture_output=True, text=True, env=ansible_env(home), cwd=home, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def ansible_list(venv, inventory_dir) -> dict:
    tool = venv / "bin" / "ansible-inventory"
    return json.loads(
        run_ansible(venv, inventory_dir, str(tool), "-i", str(inventory_dir), "--list")
    )


@pytest.fixture(scope="module")
def inv_json(inventory_dir, tmp_path_factory):
    """``inv(*argv)`` -> the JSON that ``inv ... --json`` prints, through Invoke's Program."""
    module, _ = FilesystemLoader(start=str(ROOT)).load("tasks")
    program = Program(namespace=Collection.from_module(module), binary="inv")

    def run(*argv: str):
        from contextlib import redirect_stdout
        from io import StringIO

        out = StringIO()
        with redirect_stdout(out):
            program.run(["inv", *argv, "--json"], exit=False)
        return json.loads(out.getvalue())

    return run


@pytest.fixture(autouse=True)
def the_parity_inventory(inventory_dir, monkeypatch):
    monkeypatch.setenv("MTLS_DEPLOY_INVENTORY", str(inventory_dir))


def ansible_members(listing: dict) -> dict[str, set[str]]:
    """Every group's hosts, its children's included; ``all`` and empty groups left out."""

    def members(group: str) -> set[str]:
        body = listing.get(group, {})
        found = set(body.get("hosts", []))
        for child in body.get("children", []):
            found |= members(child)
        return found

    groups = {g for g in listing if g != "_meta"}
    return {g: members(g) for g in groups if g != "all" and members(g)}


def ours(report: dict) -> dict:
    """A host's variables as ``inv inventory --host`` reports them, less what Ansible's --list
    does not show: the roles' defaults and the magic variables."""
    return {
        name: item["value"]
        for name, item in report.items()
        if not item["source"].startswith("roles/")
        and name not in ("inventory_hostname", "group_names")
    }


pytestmark = pytest.mark.required


def test_the_same_groups_with_the_same_hosts(ansible_list, inv_json):
    groups = {g: set(hosts) for g, hosts in inv_json("inventory").items()}
    assert groups == ansible_members(ansible_list)
    assert len(groups["api"]) == 15 and groups["ungrouped"] == {
        "lone.example.test",
        "web.example.test",
    }


def test_the_same_variables_for_every_host(ansible_list, inv_json):
    hostvars = ansible_list["_meta"]["hostvars"]
    hosts = set().union(*ansible_members(ansible_list).values())
    assert hosts == set(inventory.load().hosts)
    for host in sorted(hosts):
        assert ours(inv_json("inventory", "--host", host)) == hostvars.get(host, {}), host


def test_precedence_cases_worth_naming(ansible_list):
    """A few values read by eye, so the comparison above cannot agree on nothing."""
    hostvars = ansible_list["_meta"]["hostvars"]
    assert hostvars["api03.example.test"]["https_port"] == 10443  # host_vars of an expanded host
    assert hostvars["eub.example.test"]["https_port"] == 9443  # group_vars/api_eu/ (deeper)
    assert hostvars["api01.example.test"]["backend"] == "python"  # group_vars/all beats hosts.yml
    assert hostvars["db4-n2"]["ansible_port"] == 2223
    assert hostvars["web.example.test"]["ansible_port"] == 2201  # host:port in hosts.yml
    assert hostvars["eub.example.test"]["datacenter"] == "eu-b"


def test_host_patterns_select_the_same_hosts(venv, inventory_dir):
    python = str(venv / "bin" / "python")
    output = run_ansible(
        venv,
        inventory_dir,
        python,
        "-c",
        ANSIBLE_PATTERNS,
        str(inventory_dir),
        json.dumps(PATTERNS),
    )
    theirs = json.loads(output)
    loaded = inventory.load()
    for pattern in PATTERNS:
        assert theirs[pattern], f"{pattern} should match something in Ansible too"
        selected = [h.name for h in loaded.select([pattern])]
        assert sorted(selected) == sorted(theirs[pattern]), pattern
