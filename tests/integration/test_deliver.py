"""Delivery to bob and revocation on api1, through the commands users type: `inv issue-client`
(the engine's facts -> plan -> apply as bob without sudo, unchanged re-delivery, drift repair,
--csr) and `inv revoke-client` (rejected
at once). Another user on bob opens no file of the bundle while it is written; a bundle
directory that is a link gets no key and no certificate is signed for it; a renewal that
cannot be delivered revokes nothing. Then api1 holds no client key and no CA key anywhere.

A PKI of this module's own (in a temporary directory); api1 is provisioned against it first.
"""

import hashlib
import json
import re
import shlex
import subprocess
from contextlib import contextmanager

import pytest

from mtls_deploy import lab
from mtls_deploy.pki.store import PkiStore

from .conftest import DEFAULT_LAB, inv, needs_lab, own_pki, provision_cleanly, remote, run_on

pytestmark = [*needs_lab, pytest.mark.slow]

BUNDLE = ".mtls/api"  # bob's default bundle_dir, relative to his home
CURL_WHOAMI = (
    f"cd {BUNDLE} && curl -sS --max-time 10 -w ' %{{http_code}}' --resolve api1.lab.test:8441:127.0.0.1 "
    "--cacert api-ca.crt --cert bob.crt --key bob.key https://api1.lab.test:8441/whoami"
)


@pytest.fixture(scope="module")
def world(lab_inventory, tmp_path_factory):
    """This module's PKI and dist/, api1 provisioned against it, bob without a bundle."""
    with own_pki(tmp_path_factory, "Deliver API", "integration-deliver") as base:
        provision_cleanly(DEFAULT_LAB, "api1")
        run_on(DEFAULT_LAB, "bob", "rm -rf ~/.mtls")
        yield base


def stat_bundle() -> dict[str, str]:
    """The bundle directory's mode and owner ("."), then those of the files of its current
    version (the paths bob uses are links to them; a --csr bundle is plain files), and their
    sha256."""
    out = run_on(DEFAULT_LAB, "bob", f"cd {BUNDLE} && stat -c '%n %a %U:%G' . && "
                 "{ [ ! -L current ] || cd current; } && stat -c '%n %a %U:%G' * && sha256sum *")  # fmt: skip
    lines = out.splitlines()
    modes = {
        line.split()[0]: " ".join(line.split()[1:]) for line in lines if len(line.split()) == 3
    }
    hashes = {line.split()[1]: line.split()[0] for line in lines if len(line.split()) == 2}
    return {"modes": modes, "hashes": hashes}


def test_issue_client_delivers_the_bundle_to_bob(world):
    done = inv("issue-client", "--name", "bob")
    assert "changed  bob  bundle bob  (/home/bob/.mtls/api/: 7 files written in v-" in done.stdout
    found = stat_bundle()
    assert found["modes"]["."] == "700 bob:bob"
    assert found["modes"]["bob.key"] == "600 bob:bob"
    assert found["modes"]["bob.p12"] == "600 bob:bob"
    assert all(owner.endswith("bob:bob") for owner in found["modes"].values())
    dist = world / "dist" / "bob"
    combined = (dist / "bob.crt").read_bytes() + (dist / "bob.key").read_bytes()
    assert found["hashes"] == {
        **{p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in dist.iterdir()},
        "bob.pem": hashlib.sha256(combined).hexdigest(),  # certificate and key, one open
    }
    links = run_on(
        DEFAULT_LAB, "bob", f"cd {BUNDLE} && for f in *; do echo $f $(readlink $f); done"
    )
    assert "bob.key current/bob.key" in links and "bob.crt current/bob.crt" in links
    answer = run_on(DEFAULT_LAB, "bob", CURL_WHOAMI)
    assert '"subject":{"CN":"bob"}' in answer and answer.endswith(" 200")


def test_delivering_again_changes_nothing(world):
    before = run_on(DEFAULT_LAB, "bob", f"stat -c '%i %Y' {BUNDLE}/*")
    done = inv("issue-client", "--name", "bob")
    assert (
        "ok       bob  bundle bob  (unchanged in /home/bob/.mtls/api/: current -> v-" in done.stdout
        and "sha256 of 7 files match)" in done.stdout
    )
    assert run_on(DEFAULT_LAB, "bob", f"stat -c '%i %Y' {BUNDLE}/*") == before


def test_drift_on_bob_is_repaired(world):
    run_on(
        DEFAULT_LAB,
        "bob",
        f"chmod 644 {BUNDLE}/bob.key && chmod 755 {BUNDLE} && echo tampered > {BUNDLE}/bob.crt",
    )
    done = inv("issue-client", "--name", "bob")
    assert re.search(
        r"1 files written in v-\w+-\w+/, sha256 checked; current -> v-\w+-\w+ \(directory mode "
        r"0755 -> 0700; bob.crt content differs \(sha256 \w+ -> \w+\); bob.key mode 0644 -> 0600",
        done.stdout,
    ), done.stdout
    found = stat_bundle()
    assert (found["modes"]["."], found["modes"]["bob.key"]) == ("700 bob:bob", "600 bob:bob")
    temporaries = run_on(
        DEFAULT_LAB, "bob", f"ls -A {BUNDLE} | grep -E 'mtls-tmp|^[.]mtls-' || true"
    )
    assert not temporaries.strip()  # no temporary left


# --- a reader on bob while renewed bundles land ----------------------------------------------

# Runs on bob as bob until ~/reader.stop exists: reads the key and the certificate through the
# bundle's stable paths, as a client would, and compares their public keys. bob.pem is one open
# (certificate + key); current/ is resolved once, then both files are read from that version.
# Prints "<reads> <mismatches> <unreadable>".
READER = r"""cd ~/.mtls/api || exit 1
reads=0; bad=0; gone=0
while [ ! -e ~/reader.stop ]; do
  if cat bob.pem > ~/reader.pem 2>/dev/null; then
    a=$(openssl x509 -in ~/reader.pem -noout -pubkey 2>/dev/null)
    b=$(openssl pkey -in ~/reader.pem -pubout 2>/dev/null)
    [ -n "$a" ] && [ "$a" = "$b" ] || bad=$((bad + 1))
  else
    gone=$((gone + 1))
  fi
  d=$(readlink -f current)
  a=$(openssl x509 -in "$d/bob.crt" -noout -pubkey 2>/dev/null)
  b=$(openssl pkey -in "$d/bob.key" -pubout 2>/dev/null)
  [ -n "$a" ] && [ "$a" = "$b" ] || bad=$((bad + 1))
  reads=$((reads + 1))
done
echo "$reads $bad $gone"
"""


def test_a_reader_never_pairs_a_new_certificate_with_an_old_key(world):
    run_on(DEFAULT_LAB, "bob", "rm -f ~/reader.stop ~/reader.out")
    with remote(DEFAULT_LAB, "bob") as bob:
        bob.run(f"nohup sh -c {shlex.quote(READER)} </dev/null >~/reader.out 2>&1 &", check=True)
        serials = set()
        try:
            for _ in range(10):
                done = inv("renew-client", "--name", "bob")
                serials.add(re.search(r"new serial (\w+)", done.stdout)[1])
        finally:
            bob.run("touch ~/reader.stop", check=True)
        out = bob.run("for i in $(seq 50); do [ -s ~/reader.out ] && break; sleep 0.2; done; "
                      "cat ~/reader.out", check=True).stdout.split()  # fmt: skip
    reads, mismatches, unreadable = map(int, out)
    assert len(serials) == 10
    assert reads >= 20 and (mismatches, unreadable) == (0, 0), out
    versions = run_on(DEFAULT_LAB, "bob", f"ls -d {BUNDLE}/v-* | wc -l").strip()
    assert versions == "2"  # the current version and the one before it; older ones pruned
    assert run_on(DEFAULT_LAB, "bob", CURL_WHOAMI).endswith(" 200")


# --- another user on bob while bundles are written ---------------------------------------------

# Runs inside bob as nobody: every name that appears in the bundle directory (inotify, watched
# from the moment the directory is 0755, and a scandir loop) is opened at once. Ends at EOF on
# stdin and prints what it saw and what it could open.
WATCHER = r"""
import ctypes, json, os, select, struct, sys
folder = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(os.O_NONBLOCK)
if libc.inotify_add_watch(fd, folder.encode(), 0x100 | 0x80) < 0:  # IN_CREATE | IN_MOVED_TO
    sys.exit(f"cannot watch {folder}: errno {ctypes.get_errno()}")
print("watching", flush=True)
seen, opened = set(), set()
def attempt(name):
    seen.add(name)
    try:
        with open(os.path.join(folder, name), "rb") as handle:
            handle.read()
        opened.add(name)
    except OSError:
        pass
def listed():
    try:
        return [entry.name for entry in os.scandir(folder)]
    except OSError:
        return []
while True:
    ready = select.select([fd, sys.stdin], [], [], 0.001)[0]
    if fd in ready:
        data, at = os.read(fd, 65536), 0
        while at < len(data):
            size = struct.unpack_from("iIII", data, at)[3]
            name = data[at + 16 : at + 16 + size].rstrip(b"\0").decode()
            attempt(name)
            at += 16 + size
    if sys.stdin in ready and not sys.stdin.readline():
        break
    for name in listed():
        attempt(name)
print(json.dumps({"seen": sorted(seen), "opened": sorted(opened)}))
"""


def bob_init_pid() -> int:
    """bob's systemd (the child of its systemd-nspawn): its namespaces are bob's."""
    supervisor = lab.parse_pid(lab.paths_for("bob").pid_file.read_text())
    nspawn = lab.nspawn_of_supervisor(supervisor)
    return lab.child_pids(nspawn)[0]


@contextmanager
def watcher_as_nobody(folder: str):
    """WATCHER on bob as user nobody (entered with nsenter, as root on the control machine,
    since bob's login user has no sudo); yields a function that stops it and returns its
    findings."""
    command = ["nsenter", "-t", str(bob_init_pid()), "-m", "-p", "-u", "-i", "--",
               "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
               "python3", "-c", WATCHER, folder]  # fmt: skip
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "watching", process.stderr.read()

        def findings() -> dict:
            out, err = process.communicate(input="", timeout=30)
            assert process.returncode == 0, err
            return json.loads(out)

        yield findings
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_no_other_user_opens_a_file_of_the_bundle_while_it_is_written(world):
    # the situation that was proven unsafe: a bundle directory left 0755 (by hand, a restored
    # backup, ...) that the next delivery must fix before it writes a key in it
    home = run_on(DEFAULT_LAB, "bob", "echo $HOME").strip()
    folder = f"{home}/{BUNDLE}"
    loosen = f"rm -rf {BUNDLE}/* && chmod 755 {home}/.mtls {BUNDLE}"
    run_on(DEFAULT_LAB, "bob", loosen)
    try:
        with watcher_as_nobody(folder) as findings, remote(DEFAULT_LAB, "bob") as bob:
            for _ in range(20):
                bob.run(loosen, check=True)  # every file is written again, in a 0755 directory
                done = inv("issue-client", "--name", "bob")
                assert "7 files written in v-" in done.stdout
            found = findings()
    finally:
        run_on(DEFAULT_LAB, "bob", f"chmod 700 {home}/.mtls {BUNDLE}")
    # it saw the names appear (the version directory, the links and their temporary names);
    # the files themselves are written inside the version directory, behind the 0700 one
    assert {"current", ".current.new", "bob.key", ".bob.key.new", "bob.pem"} <= set(found["seen"])
    assert any(name.startswith("v-") for name in found["seen"])
    assert found["opened"] == []
    modes = stat_bundle()["modes"]
    assert (modes["."], modes["bob.key"], modes["bob.p12.pass"]) == ("700 bob:bob",) + (
        "600 bob:bob",
    ) * 2


@contextmanager
def bundle_dir_linked_elsewhere():
    """~/.mtls/api a link to ~/elsewhere (0755, empty) for a while; the real one set aside.
    Yields a function that tells what ~/elsewhere holds now (mode, then names)."""
    run_on(DEFAULT_LAB, "bob", f"mv {BUNDLE} {BUNDLE}.real && mkdir -m 755 elsewhere && "
           f"ln -s ~/elsewhere {BUNDLE}")  # fmt: skip
    try:
        yield lambda: run_on(DEFAULT_LAB, "bob", "stat -c %a elsewhere; ls -A elsewhere").split()
    finally:
        run_on(
            DEFAULT_LAB, "bob", f"rm -f {BUNDLE} && rm -rf elsewhere && mv {BUNDLE}.real {BUNDLE}"
        )


def index_rows(world) -> list[tuple[str, str]]:
    return [(r.serial_hex, r.status) for r in PkiStore.open(world / "pki").list()]


def test_a_renewal_that_cannot_be_delivered_revokes_nothing(world):
    store = PkiStore.open(world / "pki")
    old = store.client_material("bob").serial
    with bundle_dir_linked_elsewhere() as elsewhere:
        refused = inv("renew-client", "--name", "bob", check=False)
        assert elsewhere() == ["755"]
    assert refused.returncode == 2 and refused.stderr.strip() == "failed on: bob"
    assert f"{BUNDLE} is a link, not a directory" in refused.stdout
    assert f"bob: previous serial {old} stays valid" in refused.stdout
    assert (old, "valid") in index_rows(world)
    assert store.crl().get_revoked_certificate_by_serial_number(int(old, 16)) is None
    assert run_on(DEFAULT_LAB, "bob", CURL_WHOAMI).endswith(" 200")  # bob is not locked out
    done = inv("issue-client", "--name", "bob")  # the delivery works again: it finishes
    assert f"bob: previous serial {old} revoked as superseded" in done.stdout
    assert "changed  api1  file /etc/nginx/mtls/crl.pem" in done.stdout
    assert run_on(DEFAULT_LAB, "bob", CURL_WHOAMI).endswith(" 200")  # with the new bundle


def test_without_a_consumer_or_with_no_deliver_the_bundle_stays_in_dist(world):
    done = inv("issue-client", "--name", "carol")
    assert "carol: not delivered: no consumer host in the inventory" in done.stdout
    assert f"the bundle is in {world / 'dist' / 'carol'}/" in done.stdout
    done = inv("issue-client", "--name", "bob", "--no-deliver")
    assert "bob: not delivered: --no-deliver" in done.stdout


def test_csr_the_key_is_made_on_bob_and_never_leaves_it(world):
    old_key = run_on(DEFAULT_LAB, "bob", f"sha256sum < {BUNDLE}/bob.key")
    refused = inv("issue-client", "--name", "bob", "--csr", check=False)
    assert (
        refused.returncode == 2
        and "key was made here, not on the consumer: add --reissue" in refused.stdout
    )
    done = inv("issue-client", "--name", "bob", "--csr", "--reissue")
    assert "key made on the consumer, never left it" in done.stdout
    assert (
        "changed  api1  file /etc/nginx/mtls/crl.pem" in done.stdout
    )  # the superseded one is refused
    assert run_on(DEFAULT_LAB, "bob", f"sha256sum < {BUNDLE}/bob.key") != old_key
    assert not (world / "pki" / "clients" / "bob" / "bob.key").exists()
    store = PkiStore.open(world / "pki")
    index_cert = store.client_material("bob").cert_pem
    assert run_on(DEFAULT_LAB, "bob", f"cat {BUNDLE}/bob.crt").encode() == index_cert
    pair = run_on(
        DEFAULT_LAB,
        "bob",
        f"cd {BUNDLE} && openssl pkey -in bob.key -pubout && openssl x509 -in bob.crt -noout -pubkey",
    )
    assert (
        pair[: len(pair) // 2] == pair[len(pair) // 2 :]
    )  # the key on bob matches the certificate
    assert stat_bundle()["modes"]["bob.key"] == "600 bob:bob"
    assert "bob.p12" not in stat_bundle()["modes"]  # the old key's .p12 went with it
    assert run_on(DEFAULT_LAB, "bob", CURL_WHOAMI).endswith(" 200")
    again = inv("issue-client", "--name", "bob", "--csr")
    assert "unchanged in /home/bob/.mtls/api/" in again.stdout


def test_csr_into_a_linked_bundle_dir_makes_no_key_and_signs_nothing(world):
    before = index_rows(world)
    with bundle_dir_linked_elsewhere() as elsewhere:
        refused = inv("issue-client", "--name", "bob", "--csr", "--reissue", check=False)
        assert elsewhere() == ["755"]  # no key made there, its mode untouched
    assert refused.returncode == 2 and f"{BUNDLE} is a link, not a directory" in refused.stdout
    assert index_rows(world) == before  # nothing signed, nothing recorded
    assert run_on(DEFAULT_LAB, "bob", CURL_WHOAMI).endswith(" 200")


def test_revocation_is_refused_as_soon_as_revoke_client_returns(world):
    # connected before, so nothing but the request runs after
    with remote(DEFAULT_LAB, "bob") as bob:
        assert bob.run(CURL_WHOAMI).stdout.endswith(" 200")
        done = inv("revoke-client", "--name", "bob")
        answer = bob.run(CURL_WHOAMI).stdout
    assert '"reason":"certificate revoked"' in answer and answer.endswith(" 400")
    assert "changed  api1  file /etc/nginx/mtls/crl.pem" in done.stdout
    assert "changed  api1  handler reload nginx" in done.stdout


def test_api1_holds_no_client_key_and_no_ca_key(world):
    pem_keys = run_on(
        DEFAULT_LAB,
        "api1",
        "grep -rlIs -E '^-----BEGIN ([A-Z]+ )?PRIVATE KEY-----' /etc /home /root /tmp /var /srv /opt "
        "/usr/local /run /dev/shm /boot; find / /tmp /run /dev/shm -xdev -type f "
        "\\( -name '*.key' -o -name '*.p12' -o -name '*.pfx' \\); true",
        sudo=True,
    ).split()
    allowed = {"/etc/nginx/mtls/server.key"} | {
        p for p in pem_keys if p.startswith("/etc/ssh/ssh_host_")
    }
    assert set(pem_keys) <= allowed, set(pem_keys) - allowed
    secrets = {hashlib.sha256(p.read_bytes()).hexdigest(): str(p) for p in world.rglob("*")
               if p.is_file() and p.suffix in (".key", ".p12", ".pass") and "servers" not in p.parts}  # fmt: skip
    assert any("client-ca.key" in p for p in secrets.values())
    every_file = run_on(
        DEFAULT_LAB,
        "api1",
        "{ find / -xdev -type f -size -64k; find /tmp /var/tmp /run /dev/shm -type f -size -64k; } "
        "2>/dev/null | sort -u | xargs -d '\\n' sha256sum 2>/dev/null; true",
        sudo=True,
    )
    hashes = {line.split()[0] for line in every_file.splitlines() if line.strip()}
    assert len(hashes) > 1000  # the whole filesystem was read
    assert not [secrets[h] for h in hashes & set(secrets)]
