#!/usr/bin/env bash
# The whole story on the lab: lab up -> PKI -> provision api1 -> issue bob (delivered to bob)
# -> smoke test -> revoke bob -> smoke test again (bob now rejected). Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The lab's CAs are encrypted with this passphrase unless you set your own.
export MTLS_DEPLOY_CA_PASSPHRASE=${MTLS_DEPLOY_CA_PASSPHRASE:-lab-demo-passphrase}
inv() { echo; echo "\$ inv $*"; .venv/bin/inv "$@"; }

inv lab.up
[ -f pki/index.sqlite3 ] || inv pki.init --name "Demo API"
inv provision --host api1
inv provision --host api1          # again: nothing changes
inv issue-client --name bob
inv smoke-test
inv revoke-client --name bob
inv smoke-test
inv pki.list

cat <<'SUMMARY'

What was built:
  pki/                      client CA + server CA (keys encrypted), index.sqlite3, crl.pem
  dist/bob/                 bob's bundle: key, certificate, api-ca.crt, .p12 + password, README
  api1 (127.0.0.1:8441)     nginx mTLS site for api1.lab.test + PHP-FPM backend, as systemd units
  bob (ssh 127.0.0.1:2202)  bob's bundle in ~/.mtls/api/ (0700, key 0600)
Try it:  curl --resolve api1.lab.test:8441:127.0.0.1 --cacert dist/bob/api-ca.crt \
           --cert dist/bob/bob.crt --key dist/bob/bob.key https://api1.lab.test:8441/whoami
Stop the lab: .venv/bin/inv lab.down
SUMMARY
