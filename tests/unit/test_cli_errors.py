"""Bad input through the real command line: one line on stderr, a non-zero exit, nothing written.

Each case runs `inv` as a user would, against an inventory of the test's own.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

HOSTS = """all:
  children:
    api:
      hosts:
        api1: {ansible_host: 127.0.0.1, ansible_port: 2299, server_name: api1.example.test, https_port: 8443, https_listen: 127.0.0.1}
    consumers:
      hosts:
        bob: {ansible_host: 127.0.0.1, ansible_port: 2298}
"""


def inv(*args, inventory: Path, cwd: Path):
    env = {**os.environ, "MTLS_DEPLOY_INVENTORY": str(inventory), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
    )


@pytest.fixture
def workdir(tmp_path):
    folder = tmp_path / "inventory"
    (folder / "host_vars").mkdir(parents=True)
    (folder / "hosts.yml").write_text(HOSTS)
    return tmp_path


CASES = {
    "unknown host": (
        [],
        ["inventory", "--host", "api9"],
        "error: unknown host 'api9'; known hosts: api1, bob",
    ),
    "unknown group": (
        [],
        ["provision", "--group", "web"],
        "error: unknown group 'web'; known groups: all, api, consumers",
    ),
    "yaml syntax": (
        ["server_name: [oops\n"],
        ["inventory"],
        "host_vars/api1.yml:2: YAML syntax error",
    ),
    "port out of range": (
        ["https_port: 70000\n"],
        ["provision", "--host", "api1"],
        "api1: https_port port 70000 is out of range (1-65535)",
    ),
    "mistyped var": (
        ["ansible_become: 'yes'\n"],
        ["inventory"],
        "api1: ansible_become must be true or false",
    ),
    "invalid server_name": (
        ["server_name: 'api 1!'\n"],
        ["provision"],
        "api1: server_name 'api 1!' is not a valid DNS name",
    ),
    "bad backend": (["backend: ruby\n"], ["provision"], "api1: backend must be one of php, python"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_a_nonzero_exit(workdir, case):
    host_vars, args, message = CASES[case]
    if host_vars:
        (workdir / "inventory" / "host_vars" / "api1.yml").write_text(host_vars[0])
    before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    result = inv(*args, inventory=workdir / "inventory", cwd=workdir)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.relative_to(workdir) for p in workdir.rglob("*")) == before  # nothing written


def test_missing_inventory_directory(tmp_path):
    result = inv("inventory", inventory=tmp_path / "nowhere", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: no inventory at {tmp_path / 'nowhere'}: set MTLS_DEPLOY_INVENTORY to an inventory directory"
    )


def test_unreachable_host_on_the_command_line(workdir):
    (workdir / "inventory" / "host_vars" / "bob.yml").write_text(
        f"ansible_ssh_private_key_file: {workdir}/no-such-key\n"
    )
    result = inv(
        "hosts.run",
        "--command",
        "true",
        "--host",
        "bob",
        inventory=workdir / "inventory",
        cwd=workdir,
    )
    assert result.returncode == 2
    assert f"bob: SSH key file {workdir}/no-such-key does not exist" in result.stdout
