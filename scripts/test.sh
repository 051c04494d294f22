#!/usr/bin/env bash
# The whole test suite: unit tests, then integration tests on the lab (started here).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MTLS_DEPLOY_CA_PASSPHRASE=${MTLS_DEPLOY_CA_PASSPHRASE:-lab-only-passphrase}
.venv/bin/inv lab.up
status=0
# Two workers: lab modules on hosts of their own run side by side; modules that share lab hosts
# stay in one worker (their lab group: tests/conftest.py).
.venv/bin/pytest -q -n 2 "$@" || status=$?
.venv/bin/inv lab.down || true
exit $status
