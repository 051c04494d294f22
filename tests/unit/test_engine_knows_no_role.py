"""The engine knows no role: none of its modules names a role or the programs the roles
manage (a role's validator, versions and reload live in its own folder)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE = (
    "facts", "fact_cache", "operations", "apply", "provision", "runner", "report", "resources",
    "templating", "variables", "schema", "shell", "role_loader", "manifest",
)  # fmt: skip
NAMED = re.compile(
    r"nginx|php|uwsgi|openssl|\broles?\b\.(?!py\b|meta\b|name\b|folder\b|call\b|fact_packages\b|validators\b)",
    re.I,
)


@pytest.mark.parametrize("module", ENGINE)
def test_an_engine_module_names_no_role(module):
    path = ROOT / "mtls_deploy" / f"{module}.py"
    found = [
        f"{module}.py:{n}: {line.strip()}"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if NAMED.search(line)
    ]
    assert found == []
