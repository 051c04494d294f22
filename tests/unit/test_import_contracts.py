"""The layering rules of ARCHITECTURE.md, checked by import-linter (contracts in pyproject.toml):
the PKI imports nothing of SSH or the engine, the engine imports no role and nothing built on
it, and nothing imports tasks.py."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
CONTRACTS = (
    "pki is independent of ssh and engine",
    "the engine imports no role and nothing built on it",
    "nothing imports tasks.py",
)


def lint_imports(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=folder, capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(folder)})  # fmt: skip


def copy_of_the_tree(tmp_path: Path) -> Path:
    for name in ("mtls_deploy", "bench", "roles"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("tasks.py", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_every_contract_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    for contract in CONTRACTS:
        assert f"{contract} KEPT" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("apply.py", "import roles.nginx.role", CONTRACTS[1]),
        ("provision.py", "from mtls_deploy.pki import store", CONTRACTS[1]),
        ("pki/store.py", "import paramiko", CONTRACTS[0]),
        ("smoke/run.py", "import tasks", CONTRACTS[2]),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, line, contract):
    tree = copy_of_the_tree(tmp_path)
    with (tree / "mtls_deploy" / module).open("a") as source:
        source.write(f"\n{line}  # added by the test\n")
    result = lint_imports(tree)
    assert result.returncode != 0, result.stdout
    assert f"{contract} BROKEN" in result.stdout
