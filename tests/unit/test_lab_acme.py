"""The lab's ACME world, pure parts: Pebble's config and both command lines, the certificate of
Pebble's listener, the DNS records of the ACME hosts, the DNS wire format, the trust script; and
the long-lived processes the lab owns (a real ``sleep`` stands in for Pebble)."""

import ipaddress
import json
import os
import re
import socket
import stat
import struct
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.verification import PolicyBuilder, Store

from mtls_deploy import inventory
from mtls_deploy.errors import BadInput, UserError
from mtls_deploy.lab.acme import ROOT_FILE, AcmeLab, ensure_listener_cert, trust_script
from mtls_deploy.lab.acme_config import (
    DIRECTORY_URL,
    PEBBLE_ENV,
    TCP_PORTS,
    AcmePaths,
    a_answers,
    a_query,
    acme_records,
    checked_dns_name,
    checked_loopback,
    dns_argv,
    make_listener_ca,
    make_listener_cert,
    needs_new_listener_cert,
    pebble_argv,
    pebble_config,
    utc_now,
)
from mtls_deploy.lab.procfs import start_time
from mtls_deploy.lab.services import (
    Service,
    ensure_running,
    require_ports_free,
    running_service_pid,
    settings_text,
    stop_service,
)

ROOT = Path(__file__).resolve().parents[2]


# --- config and command lines ------------------------------------------------------------------


def test_pebble_config_listens_on_loopback_with_the_labs_certificate(tmp_path):
    paths = AcmePaths(tmp_path)
    config = json.loads(pebble_config(paths))["pebble"]
    assert config["listenAddress"] == "127.0.0.1:14000"
    assert config["managementListenAddress"] == "127.0.0.1:15000"
    assert config["certificate"] == str(tmp_path / "listener.pem")
    assert config["privateKey"] == str(tmp_path / "listener.key")
    assert (config["httpPort"], config["tlsPort"]) == (80, 5001)
    assert config["externalAccountBindingRequired"] is False
    assert DIRECTORY_URL == "https://127.0.0.1:14000/dir"


def test_pebble_asks_the_labs_dns_and_validates_at_once_with_no_nonce_rejected(tmp_path):
    argv = pebble_argv("/usr/bin/pebble", AcmePaths(tmp_path))
    assert argv == [
        "/usr/bin/pebble", "-config", str(tmp_path / "pebble.json"),
        "-dnsserver", "127.0.0.1:8053",
    ]  # fmt: skip
    assert PEBBLE_ENV["PEBBLE_VA_NOSLEEP"] == "1"
    assert PEBBLE_ENV["PEBBLE_WFE_NONCEREJECT"] == "0"
    assert PEBBLE_ENV["PEBBLE_AUTHZREUSE"] == "0"  # every order validates its challenges


def test_challtestsrv_is_a_dns_only_with_no_default_answer():
    argv = dns_argv("pebble-challtestsrv")
    options = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert options == {
        "-defaultIPv4": "",  # an unregistered name stays unknown
        "-defaultIPv6": "",
        "-dns01": "127.0.0.1:8053",
        "-http01": "",
        "-https01": "",
        "-tlsalpn01": "",
        "-management": "127.0.0.1:8055",
    }


def test_acme_ports_are_clear_of_every_port_the_tests_and_benchmarks_use():
    used = set()
    for folder in ("tests", "bench", "mtls_deploy/lab"):
        for path in (ROOT / folder).rglob("*.py"):
            if "acme" in path.name:
                continue  # the ACME world's own modules and tests name Pebble's ports
            for line in path.read_text().lower().splitlines():
                if "acme" not in line and "pebble" not in line:  # so may these lines
                    used |= {int(p) for p in re.findall(r"\b(\d{4,5})\b", line)}
    assert not set(TCP_PORTS) & used
    assert all(not 2200 <= p < 2300 and not 8400 <= p < 8500 for p in TCP_PORTS)


def test_settings_change_with_any_input_file():
    one = settings_text(["pebble"], {"A": "1"}, {"listener.pem": b"x"})
    assert one == settings_text(["pebble"], {"A": "1"}, {"listener.pem": b"x"})
    assert one != settings_text(["pebble"], {"A": "1"}, {"listener.pem": b"y"})
    assert one != settings_text(["pebble"], {"A": "0"}, {"listener.pem": b"x"})


# --- the listener certificate ------------------------------------------------------------------


def test_the_listener_certificate_verifies_for_127_0_0_1_and_localhost_against_its_ca():
    now = utc_now()
    ca_key, ca = make_listener_ca(now)
    _, leaf = make_listener_cert(ca_key, ca, now)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for name in (IPAddress(ipaddress.ip_address("127.0.0.1")), DNSName("localhost")):
        verifier = PolicyBuilder().store(Store([ca])).time(now).build_server_verifier(name)
        assert verifier.verify(leaf, [])[-1] == ca  # raises if it does not verify
    assert not needs_new_listener_cert(leaf, ca, now)


def test_a_listener_certificate_near_its_end_or_from_another_ca_is_made_again():
    now = utc_now()
    ca_key, ca = make_listener_ca(now)
    _, leaf = make_listener_cert(ca_key, ca, now)
    assert needs_new_listener_cert(leaf, ca, now + timedelta(days=340))
    _, other = make_listener_ca(now)
    assert needs_new_listener_cert(leaf, other, now)


def test_ensure_listener_cert_keeps_keys_0600_and_files_on_a_second_run(tmp_path):
    paths = AcmePaths(tmp_path)
    ensure_listener_cert(paths)
    files = ("listener_ca", "listener_ca_key", "listener_cert", "listener_key")
    before = {name: getattr(paths, name).read_bytes() for name in files}
    for key in (paths.listener_ca_key, paths.listener_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    ensure_listener_cert(paths)
    assert {name: getattr(paths, name).read_bytes() for name in files} == before


def test_ensure_listener_cert_remakes_a_leaf_the_ca_did_not_sign(tmp_path):
    paths = AcmePaths(tmp_path)
    ensure_listener_cert(paths)
    stray_key, stray_ca = make_listener_ca(utc_now())
    _, stray = make_listener_cert(stray_key, stray_ca, utc_now())
    paths.listener_cert.write_bytes(stray.public_bytes(Encoding.PEM))
    ensure_listener_cert(paths)
    leaf = x509.load_pem_x509_certificate(paths.listener_cert.read_bytes())
    assert leaf.issuer == x509.load_pem_x509_certificate(paths.listener_ca.read_bytes()).subject


# --- the ACME hosts' records -------------------------------------------------------------------


def load_hosts(tmp_path: Path, hosts: dict) -> list:
    """Inventory hosts from ``{name: vars}``, through the real inventory loader."""
    folder = tmp_path / "inventory"
    folder.mkdir(exist_ok=True)
    (folder / "hosts.yml").write_text(json.dumps({"all": {"hosts": hosts}}))
    return inventory.load(folder).select()


def test_acme_hosts_map_server_name_and_aliases_to_their_own_address(tmp_path):
    hosts = load_hosts(tmp_path, {
        "api9": {"server_cert": "acme", "server_name": "API9.lab.test", "https_listen": "127.0.0.9",
                 "server_aliases": ["www9.lab.test."]},
        "api1": {"server_cert": "private", "server_name": "api1.lab.test",
                 "https_listen": "127.0.0.1"},
        "bob": {},
    })  # fmt: skip
    assert acme_records(hosts) == {"api9.lab.test": "127.0.0.9", "www9.lab.test": "127.0.0.9"}


@pytest.mark.parametrize("listen", ["127.0.0.1", "0.0.0.0", "*", "10.0.0.9", "::1"])
def test_an_acme_host_without_a_loopback_address_of_its_own_is_refused(tmp_path, listen):
    acme = {"server_cert": "acme", "server_name": "api9.lab.test", "https_listen": listen}
    with pytest.raises(BadInput, match=r"^api9: https_listen .*127\.0\.0\.2 and up"):
        acme_records(load_hosts(tmp_path, {"api9": acme}))


@pytest.mark.parametrize(
    "second, shared",
    [
        ({"server_name": "other.lab.test", "https_listen": "127.0.0.9"}, "address 127.0.0.9"),
        ({"server_name": "api9.lab.test", "https_listen": "127.0.0.10"}, "name api9.lab.test"),
    ],
    ids=["address", "name"],
)
def test_two_acme_hosts_sharing_an_address_or_a_name_are_refused(tmp_path, second, shared):
    hosts = load_hosts(tmp_path, {
        "api9": {"server_cert": "acme", "server_name": "api9.lab.test", "https_listen": "127.0.0.9"},
        "api10": {"server_cert": "acme", **second},
    })  # fmt: skip
    with pytest.raises(BadInput, match=f"share the {shared}: give each ACME lab host its own"):
        acme_records(hosts)


def test_an_acme_host_without_server_name_is_refused(tmp_path):
    hosts = load_hosts(tmp_path, {"api9": {"server_cert": "acme", "https_listen": "127.0.0.9"}})
    with pytest.raises(BadInput, match="^api9: server_cert acme needs a server_name"):
        acme_records(hosts)


@pytest.mark.parametrize("name", ["a b.test", "-x.test", "x..test", "x;rm.test", "é.test", ""])
def test_register_refuses_what_is_not_a_dns_name(name):
    with pytest.raises(BadInput, match="is not a DNS name"):
        checked_dns_name(name)


def test_register_takes_loopback_addresses_only():
    assert checked_dns_name("Api9.Lab.Test.") == "api9.lab.test"
    assert checked_loopback("127.0.0.9") == "127.0.0.9"
    for bad in ("10.0.0.1", "::1", "localhost", "127.0.0.9; true"):
        with pytest.raises(BadInput, match="is not a 127.x address"):
            checked_loopback(bad)


# --- DNS wire format ---------------------------------------------------------------------------


def dns_response(query: bytes, addresses: list[str]) -> bytes:
    """A DNS server's answer to ``query``: the question again, then one A record per address,
    each naming the question through a compression pointer (as challtestsrv answers)."""
    ident = query[:2]
    header = ident + struct.pack(">HHHHH", 0x8180, 1, len(addresses), 0, 0)
    answers = b"".join(
        struct.pack(">HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(a) for a in addresses
    )
    return header + query[12:] + answers


def test_a_query_asks_for_the_a_records_of_the_name():
    query = a_query("api9.lab.test", query_id=0x1234)
    assert query[:4] == b"\x12\x34\x01\x00"  # id, recursion desired
    assert query[12:] == b"\x04api9\x03lab\x04test\x00\x00\x01\x00\x01"


def test_a_answers_reads_every_address_and_none_for_an_unknown_name():
    query = a_query("api9.lab.test", query_id=7)
    assert a_answers(dns_response(query, ["127.0.0.9", "127.0.0.10"]), 7) == [
        "127.0.0.9",
        "127.0.0.10",
    ]
    assert a_answers(dns_response(query, []), 7) == []
    with pytest.raises(ValueError, match="not 8"):
        a_answers(dns_response(query, []), 8)


# --- trust script ------------------------------------------------------------------------------


def test_the_trust_script_writes_and_removes_only_the_labs_files_and_rebuilds_the_store():
    script = trust_script({ROOT_FILE: b"-----BEGIN CERTIFICATE-----\n'$(x)\n", "b.crt": None})
    assert script.startswith("set -e\n")
    assert "'$(x)" not in script  # the content travels base64, never as shell words
    assert f"base64 -d > /usr/local/share/ca-certificates/{ROOT_FILE}.tmp" in script
    assert "rm -f /usr/local/share/ca-certificates/b.crt\n" in script
    assert script.endswith("update-ca-certificates --fresh >/dev/null\n")


def test_trust_on_a_host_that_is_not_running_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLS_DEPLOY_LAB_ROOT", str(tmp_path / "lab"))
    acme = AcmeLab(tmp_path)
    with pytest.raises(UserError, match=r"^ghost: not running: run `inv lab.up --host ghost`"):
        acme.trust("ghost", roots=False, directory=False)
    with pytest.raises(BadInput, match="lab host name '../x'"):
        acme.untrust("../x")


def test_down_with_nothing_started_is_not_running(tmp_path):
    assert AcmeLab(tmp_path).down() == "not running"
    assert AcmeLab(tmp_path).status() == {"pebble": None, "dns": None}


# --- long-lived processes ----------------------------------------------------------------------


def sleeper(tmp_path: Path, seconds: str = "60", port: int | None = None) -> Service:
    """A Service running ``sleep``, its files in ``tmp_path``."""
    ports = ((socket.SOCK_STREAM, port),) if port else ()
    return Service(
        "sleeper", ["/bin/sleep", seconds], {"PATH": "/usr/bin:/bin"}, {},
        tmp_path / "sleeper.pid", tmp_path / "sleeper.log", tmp_path / "sleeper.json", ports,
    )  # fmt: skip


def test_a_service_starts_in_a_session_of_its_own_is_kept_then_stopped(tmp_path):
    service = sleeper(tmp_path)
    assert ensure_running(service, lambda: True) is True
    pid = running_service_pid(service)
    try:
        assert pid and os.getsid(pid) == pid  # setsid: it outlives the terminal's session
        assert ensure_running(service, lambda: True) is False  # same settings: kept
        assert running_service_pid(service) == pid
        assert ensure_running(sleeper(tmp_path, "61"), lambda: True) is True  # new settings
        assert running_service_pid(sleeper(tmp_path, "61")) not in (None, pid)
    finally:
        stop_service(sleeper(tmp_path, "61"))
        stop_service(service)
    assert running_service_pid(sleeper(tmp_path, "61")) is None
    assert not service.pid_file.exists()


def test_a_pid_file_naming_another_program_is_not_the_service(tmp_path):
    service = sleeper(tmp_path)
    service.settings.write_text(settings_text(service.argv, service.env, {}))
    service.pid_file.write_text(f"{os.getpid()}\n")  # this pytest, not sleep
    assert running_service_pid(service) is None
    assert stop_service(service) is False


def test_a_service_that_dies_at_start_is_one_line_with_its_last_log_line(tmp_path):
    service = Service(
        "failing", [sys.executable, "-c", "print('boom: no config'); raise SystemExit(3)"],
        {}, {}, tmp_path / "f.pid", tmp_path / "f.log", tmp_path / "f.json", (),
    )  # fmt: skip
    with pytest.raises(UserError, match=r"^failing did not start: boom: no config \(see "):
        ensure_running(service, lambda: False)


def test_a_taken_port_is_named_before_anything_starts(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(UserError, match=rf"^sleeper: 127\.0\.0\.1:{port} is taken by another"):
            require_ports_free(sleeper(tmp_path, port=port))


# --- the command line --------------------------------------------------------------------------


def test_lab_up_with_acme_refuses_an_acme_host_on_the_shared_address_before_anything(tmp_path):
    hosts = {"api9": {"server_cert": "acme", "server_name": "api9.lab.test",
                      "https_listen": "127.0.0.1", "lab": True, "ansible_port": 2999}}  # fmt: skip
    load_hosts(tmp_path, hosts)
    env = {**os.environ, "MTLS_DEPLOY_INVENTORY": str(tmp_path / "inventory")}
    done = subprocess.run(
        [sys.executable, "-m", "invoke", "lab.up", "--with-acme"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == (
        "error: api9: https_listen '127.0.0.1': a lab host with server_cert acme needs a loopback"
        " address of its own (127.0.0.2 and up), since Pebble checks port 80 of each name's"
        " address\n"
    )
    assert done.stdout == ""  # no host booted, no Pebble started


# --- test sessions sharing one Pebble ----------------------------------------------------------


def test_other_sessions_are_the_live_leases_but_ours_and_stale_ones_are_removed(tmp_path):
    acme = AcmeLab(tmp_path)
    sessions = acme.paths.sessions
    sessions.mkdir(parents=True)
    own = sessions / f"{os.getpid()}-{start_time(os.getpid())}"
    other = sessions / f"1-{start_time(1)}"  # init: alive for sure
    stale = sessions / f"1-{start_time(1) + 1}"  # pid 1 once more, but another start: a reused pid
    for lease in (own, other, stale):
        lease.touch()
    assert acme.other_sessions() == [1]
    assert sorted(p.name for p in sessions.iterdir()) == sorted([own.name, other.name])


def test_wait_for_sole_use_gives_up_naming_the_other_sessions(tmp_path):
    acme = AcmeLab(tmp_path)
    acme.paths.sessions.mkdir(parents=True)
    (acme.paths.sessions / f"1-{start_time(1)}").touch()
    with pytest.raises(UserError, match=r"^test sessions \[1\] still use Pebble after 0 s$"):
        acme.wait_for_sole_use(timeout=0)
    (acme.paths.sessions / f"1-{start_time(1)}").unlink()
    acme.wait_for_sole_use(timeout=0)  # alone: returns at once
