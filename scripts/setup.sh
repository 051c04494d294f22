#!/usr/bin/env bash
# Install what mtls-deploy needs on a fresh Debian 12 / Ubuntu 22.04+ machine, as root.
# Safe to run twice: apt and pip skip what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "error: run as root (the lab boots systemd-nspawn containers)" >&2
  exit 1
fi

# pebble: the lab's ACME CA and its DNS (pebble, pebble-challtestsrv): inv lab.up --with-acme
# debian-archive-keyring: debootstrap checks the lab's Debian 12 and 13 bases with it
packages=(systemd-container debootstrap debian-archive-keyring openssh-client openssl curl python3 python3-venv sslscan testssl.sh apache2-utils chromium pebble)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# A Debian 13 lab host (lab_release: trixie) needs the trixie keys: an older keyring lacks them.
if [ ! -e /usr/share/keyrings/debian-archive-trixie-stable.gpg ]; then
  echo "updating debian-archive-keyring (the lab's Debian 13 base needs the trixie keys)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debian-archive-keyring >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# The runtime pins and the development tools, each pinned with hashes (requirements/*.lock).
.venv/bin/pip install -q --disable-pip-version-check -r requirements/runtime.lock -r requirements/dev.lock
# Byte-compile our own modules once (pip does it for the dependencies): where
# PYTHONDONTWRITEBYTECODE is set, every `inv` would otherwise compile them again at start-up.
.venv/bin/python -m compileall -q mtls_deploy roles bench tasks.py >/dev/null
# The TLS scanners (sslyze) get a venv of their own: their pins must not drag the product's down.
if [ ! -x .venv-scanners/bin/python ]; then
  "$python" -m venv .venv-scanners
fi
.venv-scanners/bin/pip install -q --disable-pip-version-check -r requirements-scanners.lock
echo "setup done: .venv and .venv-scanners ready ($(.venv/bin/python --version))"
