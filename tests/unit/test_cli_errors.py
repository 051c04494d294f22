"""Bad input through the real command line: one line on stderr, a non-zero exit, nothing written.

Each case runs `inv` as a user would, against an inventory of the test's own.
"""

import datetime as dt
import fcntl
import json
import os
import select
import sqlite3
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from cryptography import x509

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


def inv(*args, inventory: Path | None, cwd: Path, unset=(), unprivileged=False, **popen):
    """The real `inv` in ``cwd``; ``inventory=None`` leaves $MTLS_DEPLOY_INVENTORY unset,
    ``unset`` drops more variables, ``unprivileged`` runs it without root's file powers."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MTLS_DEPLOY_INVENTORY": str(inventory)}
    for name in (*unset, *(["MTLS_DEPLOY_INVENTORY"] if inventory is None else [])):
        env.pop(name, None)
    command = [sys.executable, "-m", "invoke", "--search-root", str(ROOT), *args]
    return subprocess.run(
        [*(without_root_powers() if unprivileged else []), *command],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
        **popen,
    )


def without_root_powers() -> list[str]:
    """As root, a prefix that drops the capabilities that ignore file modes and owners, so a
    mode or owner refuses root as it refuses a user; nothing for a user."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner,-chown"]


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
    "days not a number": (
        [],
        ["pki.crl", "--days", "ten"],
        "error: --days 'ten' is not a whole number: give digits, e.g. --days 30",
    ),
    "serial not a number": (
        [],
        ["provision", "--serial", "abc"],
        "error: --serial 'abc' is not a whole number: give digits, e.g. --serial 30",
    ),
    "crl days 0": (
        [],
        ["pki.crl", "--days", "0"],
        "error: --days 0 is too small: use 1 or more",
    ),
    "client days 0": (
        [],
        ["issue-client", "--name", "bob", "--days", "0"],
        "error: --days 0 is too small: use 1 or more",
    ),
    "negative serial": (
        [],
        ["provision", "--serial", "-1"],
        "error: --serial -1 is too small: use 0 or more (0, the default, runs every host at once)",
    ),
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
    line = next(line for line in result.stdout.splitlines() if "SSH key file" in line)
    assert "bob" in line and f"SSH key file {workdir}/no-such-key does not exist" in line


# --- the PKI and dist/ on disk: one line naming the path and the fix ---------------------------


@pytest.fixture
def project(pki_store, pki_env):
    """A project directory (inventory/, an initialised pki/; dist/ not yet) as the cwd."""
    (pki_env.root / "inventory").mkdir()
    (pki_env.root / "inventory" / "hosts.yml").write_text(HOSTS)
    return pki_env.root


def index_rows(pki_dir: Path) -> list:
    with sqlite3.connect(pki_dir / "index.sqlite3") as db:
        return db.execute("SELECT serial, name, status FROM certificates ORDER BY id").fetchall()


def one_line(result) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_an_unreadable_pki_directory_is_one_line(project, pki_env):
    pki_env.pki_dir.chmod(0o000)
    try:
        result = inv("pki.list", inventory=None, cwd=project, unprivileged=True)
    finally:
        pki_env.pki_dir.chmod(0o700)
    assert result.returncode == 1
    assert one_line(result) == (
        "error: cannot read pki/index.sqlite3: Permission denied; the PKI directory must be "
        "yours: fix its owner or mode (for example `sudo chown -R $USER pki`)"
    )


@pytest.mark.parametrize("lock", ["kept", "missing"])
def test_a_pki_directory_we_cannot_write_is_one_line_with_the_fix(project, pki_env, lock):
    if lock == "missing":  # e.g. a PKI restored from a backup without its lock file
        (pki_env.pki_dir / ".lock").unlink()
    rows, crl = index_rows(pki_env.pki_dir), (pki_env.pki_dir / "crl.pem").read_bytes()
    pki_env.pki_dir.chmod(0o500)
    try:
        result = inv("pki.crl", inventory=None, cwd=project, unprivileged=True)
    finally:
        pki_env.pki_dir.chmod(0o700)
    assert result.returncode == 1
    where = "pki/.lock" if lock == "missing" else "in pki/"
    assert one_line(result).startswith(f"error: cannot write {where}: Permission denied; ")
    assert one_line(result).endswith(
        "the PKI directory must be yours: fix its owner or mode (for example `sudo chown -R "
        "$USER pki`)"
    )
    assert index_rows(pki_env.pki_dir) == rows
    assert (pki_env.pki_dir / "crl.pem").read_bytes() == crl


@pytest.mark.skipif(os.geteuid() != 0, reason="giving dist/ to another user needs root")
def test_a_dist_directory_we_cannot_write_refuses_before_issuing(project, pki_env):
    pki_env.dist_dir.mkdir(mode=0o755)
    os.chown(pki_env.dist_dir, 65534, 65534)  # nobody's, as a `sudo inv` once left it
    rows = index_rows(pki_env.pki_dir)
    result = inv(
        "issue-client", "--name", "bob", "--no-deliver", inventory=None, cwd=project,
        unprivileged=True,
    )  # fmt: skip
    assert result.returncode == 1
    assert one_line(result).startswith(f"error: cannot write in {pki_env.dist_dir}/: ")
    assert one_line(result).endswith(
        "make it yours (for example `sudo chown -R $USER` it) or set MTLS_DEPLOY_DIST_DIR"
    )
    assert index_rows(pki_env.pki_dir) == rows  # nothing issued
    assert list(pki_env.dist_dir.iterdir()) == []


def test_a_corrupt_index_is_one_line(project, pki_env):
    (pki_env.pki_dir / "index.sqlite3").write_bytes(os.urandom(4096))
    for args in (["pki.list"], ["issue-client", "--name", "bob", "--no-deliver"]):
        result = inv(*args, inventory=None, cwd=project)
        assert result.returncode == 1
        assert one_line(result) == (
            "error: pki/index.sqlite3 is not a readable PKI index (file is not a database): "
            "restore it from your backup of pki/"
        )
    assert not pki_env.dist_dir.exists()


@pytest.mark.parametrize("damage", ["missing", "garbage"])
def test_a_missing_crl_is_one_line_and_pki_crl_signs_it_again(project, pki_env, damage):
    crl = pki_env.pki_dir / "crl.pem"
    if damage == "missing":
        crl.unlink()
        message = (
            "error: pki/crl.pem is missing: run `inv pki.crl` to sign it again, then "
            "`inv pki.crl --push`"
        )
    else:
        crl.write_bytes(b"-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n")
        message = "error: pki/crl.pem is not a PEM CRL: run `inv pki.crl` to sign it again"
    commands = [["pki.list"], ["issue-client", "--name", "bob", "--no-deliver"]]
    for args in commands if damage == "missing" else commands[:1]:  # issuing reads no CRL
        result = inv(*args, inventory=None, cwd=project)
        assert result.returncode == 1
        assert one_line(result) == message
    assert not pki_env.dist_dir.exists()
    fixed = inv("pki.crl", inventory=None, cwd=project)
    assert fixed.returncode == 0 and "crl.pem re-signed" in fixed.stdout, fixed.stderr
    assert inv("pki.list", inventory=None, cwd=project).returncode == 0


def test_pki_crl_days_0_is_refused_not_taken_for_180(project, pki_env):
    crl = (pki_env.pki_dir / "crl.pem").read_bytes()
    result = inv("pki.crl", "--days", "0", inventory=None, cwd=project)
    assert result.returncode == 2
    assert one_line(result) == "error: --days 0 is too small: use 1 or more"
    assert (pki_env.pki_dir / "crl.pem").read_bytes() == crl


@pytest.mark.parametrize("mode", ["--no-deliver", "--csr"])
def test_days_past_the_cas_end_are_refused_with_the_largest_that_fits(project, pki_env, mode):
    """Not cut short to the CA's end without a word; with --csr, before bob's host (unreachable
    here: nothing listens on its port) is even contacted."""
    rows = index_rows(pki_env.pki_dir)
    ca = x509.load_pem_x509_certificate((pki_env.pki_dir / "client-ca.crt").read_bytes())
    end = ca.not_valid_after_utc
    fits = (end - dt.datetime.now(dt.UTC)).days
    result = inv(
        "issue-client", "--name", "bob", "--days", "4000", mode, inventory=None, cwd=project
    )
    assert result.returncode == 2
    assert one_line(result) == (
        f"error: --days 4000 would end after the CA {ca.subject.rfc4514_string()} "
        f"({end:%Y-%m-%d %H:%M} UTC): use --days {fits} or fewer"
    )
    assert result.stdout == ""
    assert index_rows(pki_env.pki_dir) == rows
    assert not (pki_env.dist_dir / "bob").exists()
    if mode == "--csr":
        return
    done = inv(
        "issue-client", "--name", "bob", "--days", str(fits), "--no-deliver", inventory=None,
        cwd=project,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_ctrl_d_at_the_passphrase_prompt_is_one_line(project, pki_env):
    master, terminal = os.openpty()

    def on_the_terminal():  # the terminal becomes the command's own, as in a shell
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MTLS_DEPLOY_CA_PASSPHRASE")
    process = subprocess.Popen(
        [sys.executable, "-m", "invoke", "--search-root", str(ROOT), "pki.crl"],
        stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=project,
        env=env, preexec_fn=on_the_terminal,
    )  # fmt: skip
    os.close(terminal)
    try:
        assert b"CA passphrase: " in read_until(master, b"CA passphrase: ")
        os.write(master, b"\x04")  # Ctrl-D
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
        os.close(master)
    assert process.returncode == 1
    assert "Traceback" not in stderr and stderr.strip() == (
        "error: no CA passphrase given (end of input): run the command again and type it, "
        "or set MTLS_DEPLOY_CA_PASSPHRASE"
    )


def read_until(fd: int, wanted: bytes, timeout: float = 30) -> bytes:
    seen, deadline = b"", time.monotonic() + timeout
    while wanted not in seen and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            seen += os.read(fd, 1024)
    return seen


# --- the project directory ---------------------------------------------------------------------


def test_a_subdirectory_of_the_project_uses_the_projects_pki(project, pki_env):
    (project / "docs").mkdir()
    result = inv("pki.list", inventory=None, cwd=project / "docs", unset=["MTLS_DEPLOY_PKI_DIR"])
    assert result.returncode == 0, result.stderr
    assert "client-ca" in result.stdout
    assert not (project / "docs" / "pki").exists()


def test_no_project_directory_is_one_line(tmp_path):
    result = inv("pki.list", inventory=None, cwd=tmp_path, unset=["MTLS_DEPLOY_PKI_DIR"])
    assert result.returncode == 1
    assert one_line(result) == (
        f"error: no project directory: neither {tmp_path} nor a parent holds inventory/; cd "
        "into your project (the directory with inventory/), set MTLS_DEPLOY_PROJECT or give "
        "mtls-deploy --project DIR"
    )


# --- secrets --------------------------------------------------------------------------------


def test_nested_secrets_are_masked_in_text_and_json(workdir):
    (workdir / "inventory" / "host_vars" / "bob.yml").write_text(
        "smtp: {host: mail.example.test, password: hunter2}\n"
        "mirrors: [{url: 'https://a.test', token: t0k3n}]\n"
    )
    text = inv("inventory", "--host", "bob", inventory=workdir / "inventory", cwd=workdir)
    as_json = inv(
        "inventory", "--host", "bob", "--json", inventory=workdir / "inventory", cwd=workdir
    )
    assert text.returncode == 0 and as_json.returncode == 0, text.stderr + as_json.stderr
    for output in (text.stdout, as_json.stdout):
        assert "hunter2" not in output and "t0k3n" not in output
    assert "'password': '********'" in text.stdout and "'token': '********'" in text.stdout
    document = json.loads(as_json.stdout)
    assert document["smtp"]["value"] == {"host": "mail.example.test", "password": "********"}
    assert document["mirrors"]["value"] == [{"url": "https://a.test", "token": "********"}]


def test_a_file_error_no_check_foresaw_is_still_one_line(tmp_path):
    """The last net in cli.task: an OSError is one line naming the file, never a traceback."""
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "hosts.yml").write_text(HOSTS)
    (tmp_path / "pki").write_text("a file where the PKI directory should be\n")
    result = inv("pki.init", inventory=None, cwd=tmp_path, unset=["MTLS_DEPLOY_PKI_DIR"])
    assert result.returncode == 1
    assert one_line(result) == (
        f"error: {tmp_path / 'pki'}: Not a directory: check that it exists and is yours to read "
        "and write"
    )


# --- issue 13: the passphrase file, backup and restore, sign-csr (the real inv) ---------------


def test_a_passphrase_file_others_can_read_is_refused_before_signing(project, pki_env, monkeypatch):
    secret = project / "ca.pass"
    secret.write_text(pki_env.passphrase + "\n")
    secret.chmod(0o644)
    rows = index_rows(pki_env.pki_dir)
    monkeypatch.setenv("MTLS_DEPLOY_CA_PASSPHRASE_FILE", str(secret))
    monkeypatch.delenv("MTLS_DEPLOY_CA_PASSPHRASE")
    result = inv("issue-client", "--name", "bob", "--no-deliver", inventory=None, cwd=project)
    assert result.returncode == 2
    assert one_line(result) == (
        f"error: MTLS_DEPLOY_CA_PASSPHRASE_FILE {secret} has mode 0644: others could read it; "
        f"run `chmod 600 {secret}` (0600 or 0400 only)"
    )
    assert index_rows(pki_env.pki_dir) == rows
    secret.chmod(0o600)
    done = inv("issue-client", "--name", "bob", "--no-deliver", inventory=None, cwd=project)
    assert done.returncode == 0, done.stderr


def test_a_backup_restored_with_the_wrong_passphrase_writes_nothing(project, pki_env, monkeypatch):
    monkeypatch.setenv("MTLS_DEPLOY_BACKUP_PASSPHRASE", "right")
    made = inv("pki.backup", "--to", "saved.backup", inventory=None, cwd=project)
    assert made.returncode == 0, made.stderr
    monkeypatch.setenv("MTLS_DEPLOY_BACKUP_PASSPHRASE", "wrong")
    before = sorted(p.name for p in project.iterdir())
    result = inv("pki.restore", "--from", "saved.backup", "--force", inventory=None, cwd=project)
    assert result.returncode == 2
    assert one_line(result) == (
        "error: wrong backup passphrase, or saved.backup is damaged: nothing was restored "
        "(check MTLS_DEPLOY_BACKUP_PASSPHRASE)"
    )
    assert sorted(p.name for p in project.iterdir()) == before
