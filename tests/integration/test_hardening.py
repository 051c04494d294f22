"""Hardened hosts: the three services' sandboxes as `systemd-analyze security` rates them, in
force on the running processes, with every service still answering; and a file audit of a
provisioned host: where private keys are, who can read them, and what reached the logs."""

import base64
import json
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .conftest import CLIENT, SEC_PHP, SEC_PY, needs_lab

pytestmark = [*needs_lab, pytest.mark.slow]

HOSTS = sorted([SEC_PHP.name, SEC_PY.name])
# (host, unit, highest exposure accepted)
EXPOSURE = [
    (SEC_PY.name, "api-python.service", 2.0),
    (SEC_PHP.name, "php-fpm", 5.0),  # php<version>-fpm.service, found on the host
    (SEC_PHP.name, "nginx.service", 5.0),
    (SEC_PY.name, "nginx.service", 5.0),
]
SERVER_KEY = "/etc/nginx/mtls/server.key"
BACKEND_USERS = {"php": "api-php", "python": "api-python"}
# Private keys a Debian host has of its own: sshd's host keys.
HOST_KEYS = re.compile(r"/etc/ssh/ssh_host_\w+_key")


@pytest.fixture(scope="module")
def sec(security_lab):
    """sec-php and sec-py provisioned (shared with test_tls_quality.py), stopped afterwards;
    one request each, so the logs have something in them."""
    for host in HOSTS:
        assert security_lab.curl(host)[0] == 200
    return security_lab


def unit_name(sec, host: str, unit: str) -> str:
    """``unit``, or for "php-fpm" the host's ``php<version>-fpm.service``."""
    if unit != "php-fpm":
        return unit
    listed = sec.sudo(host, "systemctl list-units --plain --no-legend 'php*-fpm.service'")
    return listed.stdout.split()[0]


# --- sandboxes --------------------------------------------------------------------------------


@pytest.mark.parametrize(("host", "unit", "highest"), EXPOSURE)
def test_exposure(sec, host, unit, highest):
    unit = unit_name(sec, host, unit)
    result = sec.sudo(host, f"systemd-analyze security --no-pager {unit}")
    match = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= highest


@pytest.mark.parametrize(("host", "unit"), [(h, u) for h, u, _ in EXPOSURE])
def test_sandbox_is_in_force_on_the_running_service(sec, host, unit):
    """Not only in the unit file: the running main process has no new privileges, a seccomp
    filter, and only the capabilities the drop-in leaves."""
    unit = unit_name(sec, host, unit)
    pid = sec.sudo(host, f"systemctl show -p MainPID --value {unit}").stdout.strip()
    assert pid not in ("", "0"), f"{unit} is not running"
    status = dict(
        line.split(":\t", 1)
        for line in sec.sudo(host, f"cat /proc/{pid}/status").stdout.splitlines()
        if ":\t" in line
    )
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2", unit
    bounding = int(status["CapBnd"], 16)
    assert bounding & (1 << 21) == 0, f"{unit} keeps CAP_SYS_ADMIN"
    if unit != "api-python.service":  # ours is a unit file of its own, not a drop-in
        drop_ins = sec.sudo(host, f"systemctl show -p DropInPaths --value {unit}").stdout
        assert f"/etc/systemd/system/{unit}.d/hardening.conf" in drop_ins.split()


@pytest.mark.parametrize("host", HOSTS)
def test_every_service_still_answers(sec, host):
    code, body = sec.curl(host)
    assert code == 200 and body["verified"] == "SUCCESS", body
    assert body["subject"]["O"] == "Example, Inc."  # PHP: parsed with preg_match, JIT off
    assert sec.curl(host, "/health") == (200, {"status": "ok"})


def test_php_runs_without_pcre_jit_and_without_warnings(sec):
    """Under MemoryDenyWriteExecute a JIT-compiled preg_match would warn "Allocation of JIT
    memory failed" (the requests above ran one: the client's O has an escaped comma)."""
    version = (
        unit_name(sec, SEC_PHP.name, "php-fpm").removeprefix("php").removesuffix("-fpm.service")
    )
    info = sec.sudo(SEC_PHP.name, f"php-fpm{version} -i").stdout
    assert re.search(r"^pcre\.jit => (Off|0) => (Off|0)$", info, re.M), "pcre.jit is on"
    log = sec.sudo(SEC_PHP.name, f"cat /var/log/php{version}-fpm.log").stdout
    assert "JIT" not in log and "said into stderr" not in log, log[-2000:]  # PHP's warnings


# --- file audit -------------------------------------------------------------------------------


def key_needles(pem: bytes, password: bytes | None = None) -> list[str]:
    """Byte strings (hex) that give a private key away: its secret number, its DER forms, and a
    line of each PEM form's base64 body (the stored one too, encrypted or not)."""
    key = serialization.load_pem_private_key(pem, password)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        value = key.private_numbers().private_value
        secret = value.to_bytes((value.bit_length() + 7) // 8, "big")
    else:
        assert isinstance(key, rsa.RSAPrivateKey)
        secret = key.private_numbers().p.to_bytes(key.key_size // 16, "big")
    needles = [secret, base64_line(pem)]
    for form in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        for encoding in (serialization.Encoding.DER, serialization.Encoding.PEM):
            written = key.private_bytes(encoding, form, serialization.NoEncryption())
            needles.append(
                written if encoding == serialization.Encoding.DER else base64_line(written)
            )
    return [n.hex() for n in needles]


def base64_line(pem: bytes) -> bytes:
    """The second line of a PEM body (the first can be a header shared by every key)."""
    body = [line for line in pem.splitlines() if line and not line.startswith(b"-----")]
    return body[1] if len(body) > 1 else body[0]


# Run as root on the host: every regular file under 20 MB, /run and /tmp included (/proc,
# /sys and /dev skipped); report text files with a PEM private key (binaries are left out:
# libgnutls carries self-test keys) and every file holding any needle.
HOST_SCAN = r"""
import json, os, re, stat, sys
pem_key = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----\r?\n[A-Za-z0-9+/=]{16}")
needles = {name: [bytes.fromhex(h) for h in hexes] for name, hexes in json.load(sys.stdin).items()}
pem_keys, hits = [], {name: [] for name in needles}
for folder, dirs, files in os.walk("/"):
    if folder == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
    for name in files:
        path = os.path.join(folder, name)
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_size > 20 << 20:
                continue
            with open(path, "rb") as file:
                data = file.read()
        except OSError:
            continue
        if b"\0" not in data and pem_key.search(data):  # not a library's self-test keys
            pem_keys.append(path)
        for key, wanted in needles.items():
            if any(n in data for n in wanted):
                hits[key].append(path)
print(json.dumps({"pem_keys": sorted(pem_keys), "hits": hits}))
"""


@pytest.fixture(scope="module", params=HOSTS)
def audit(request, sec):
    """(host, scan result) of one host, with the needles of every key of this PKI."""
    name = request.param
    passphrase = sec.passphrase.encode()
    needles = {
        "client CA key": key_needles((sec.pki / "client-ca.key").read_bytes(), passphrase),
        "server CA key": key_needles((sec.pki / "server-ca.key").read_bytes(), passphrase),
        "client key": key_needles((sec.bundle / f"{CLIENT}.key").read_bytes()),
        "server key": key_needles((sec.pki / "servers" / name / f"{name}.key").read_bytes()),
    }
    script = base64.b64encode(HOST_SCAN.encode()).decode()
    stdin = base64.b64encode(json.dumps(needles).encode()).decode()
    command = f'echo {stdin} | base64 -d | python3 -c "$(echo {script} | base64 -d)"'
    result = sec.sudo(name, command)
    assert result.returncode == 0, result.stderr
    return name, json.loads(result.stdout)


def test_server_key_is_0600_root_and_the_tls_dir_closed(sec, audit):
    host, _ = audit

    def mode_and_owner(path: str) -> list[str]:
        return sec.sudo(host, f"stat -c '%a %U %G' {path}").stdout.split()

    assert mode_and_owner(SERVER_KEY) == ["600", "root", "root"]
    assert mode_and_owner("/etc/nginx/mtls") == ["750", "root", "root"]


def test_the_only_private_keys_are_the_server_key_and_sshd_host_keys(audit):
    _, found = audit
    others = [p for p in found["pem_keys"] if p != SERVER_KEY and not HOST_KEYS.fullmatch(p)]
    assert others == []
    assert SERVER_KEY in found["pem_keys"]


def test_no_ca_key_and_no_client_key_anywhere_on_the_host(audit):
    _, found = audit
    assert found["hits"]["server key"] == [SERVER_KEY]  # the scan finds what is there
    assert found["hits"]["client CA key"] == []
    assert found["hits"]["server CA key"] == []
    assert found["hits"]["client key"] == []


@pytest.mark.parametrize("user", ["www-data", "backend"])
def test_no_private_key_readable_by_nginx_workers_or_the_backend(sec, audit, user):
    host, found = audit
    user = BACKEND_USERS[sec.hosts[host].backend] if user == "backend" else user
    for path in found["pem_keys"]:
        readable = sec.sudo(host, f"sudo -u {user} test -r {path}")
        assert readable.returncode != 0, f"{user} can read {path}"


def test_no_key_material_in_the_logs(sec, audit):
    """The needles were searched in /var/log too (above); here the words, and the journal,
    which may compress what it stores."""
    host, found = audit
    logs = [p for paths in found["hits"].values() for p in paths if p.startswith("/var/log")]
    assert logs == []
    backend = sec.hosts[host].backend
    unit = "api-python" if backend == "python" else unit_name(sec, host, "php-fpm")
    grep = "grep -c -e 'PRIVATE KEY' -e 'BEGIN CERTIFICATE'"
    files = sec.sudo(host, f"cat /var/log/nginx/* /var/log/php*-fpm.log 2>/dev/null | {grep}")
    journal = sec.sudo(host, f"journalctl -u nginx -u {unit} -o cat --no-pager | {grep}")
    assert files.stdout.strip() == "0" and journal.stdout.strip() == "0"
    access = sec.sudo(host, "cat /var/log/nginx/api.access.log").stdout
    assert f"CN={CLIENT}" in access  # the requests were logged, by name and serial only
