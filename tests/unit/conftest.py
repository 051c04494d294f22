"""Shared fixtures. PKI fixtures are prefixed ``pki_``."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]
PKI_PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def pki_env(tmp_path, monkeypatch):
    """A scratch project: pki/ and dist/ under tmp_path, the CA passphrase set, cwd there."""
    env = SimpleNamespace(
        root=tmp_path,
        pki_dir=tmp_path / "pki",
        dist_dir=tmp_path / "dist",
        passphrase=PKI_PASSPHRASE,
    )
    monkeypatch.setenv("MTLS_DEPLOY_PKI_DIR", str(env.pki_dir))
    monkeypatch.setenv("MTLS_DEPLOY_DIST_DIR", str(env.dist_dir))
    monkeypatch.setenv("MTLS_DEPLOY_CA_PASSPHRASE", PKI_PASSPHRASE)
    monkeypatch.chdir(tmp_path)
    # 600 000 PBKDF2 rounds cost ~0.1 s per CA key; tests that check the real count restore it
    monkeypatch.setattr("mtls_deploy.pki.keys.CA_KEY_KDF_ROUNDS", 1000)
    return env


@pytest.fixture
def pki_store(pki_env):
    """An initialised EC PKI in ``pki_env.pki_dir``."""
    from mtls_deploy.pki.store import PkiStore

    PkiStore(pki_env.pki_dir).init(name="Test API")
    store = PkiStore.open(pki_env.pki_dir)
    yield store
    store.close()


@pytest.fixture
def pki_tmpfs(tmp_path):
    """Mount a small tmpfs: ``pki_tmpfs(path, size)``; skipped when mounting is not allowed."""
    mounted = []

    def mount(path: Path, size: str = "1m") -> Path:
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def pki_spawn(pki_env):
    """Start ``python -c code`` in the scratch project with this repository importable."""
    started = []

    def spawn(code: str, **env) -> subprocess.Popen:
        full_env = {**os.environ, "PYTHONPATH": str(REPO), **env}
        process = subprocess.Popen(
            [sys.executable, "-c", code],
            env=full_env,
            cwd=pki_env.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield spawn
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def client_ca():
    """A throwaway client CA (certificate, key) for the smoke test's unit tests."""
    from tests.unit.smoke_world import make_client_ca

    return make_client_ca()


@pytest.fixture(scope="module")
def inv_program():
    """``inv`` itself: Invoke's ``Program`` over the namespace of tasks.py, loaded as inv does."""
    from invoke import Collection, Program
    from invoke.loader import FilesystemLoader

    module, _ = FilesystemLoader(start=str(Path(__file__).resolve().parents[2])).load("tasks")
    return Program(namespace=Collection.from_module(module), binary="inv")


@pytest.fixture
def inv(inv_program, capsys):
    """``inv(*argv)`` -> ``(exit code, stdout, stderr)`` of one command line, in process."""

    def run(*argv: str) -> tuple[int, str, str]:
        try:
            inv_program.run(["inv", *argv])
            code = 0
        except SystemExit as stop:
            code = stop.code or 0
        out, err = capsys.readouterr()
        return code, out, err

    return run
