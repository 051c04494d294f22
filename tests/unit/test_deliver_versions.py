"""A bundle switched whole: version directories behind ``current``, stable links, bob.pem; run
here with sh as the login user would run it on a consumer (``LocalRemote``)."""

import os
import subprocess
import threading
from pathlib import Path

import pytest

from mtls_deploy import deliver_versions as versions
from mtls_deploy.connection import CommandResult, RemoteCommandError
from mtls_deploy.deliver import BundleFile
from mtls_deploy.errors import UserError

FOLDER = ".mtls/api"


class LocalRemote:
    """Scripts run with ``sh -s`` in a scratch home, as the consumer's login user."""

    def __init__(self, home: Path):
        self.home, self.scripts = home, []

    def run_script(self, script, check=False, sudo=False):
        assert not sudo
        self.scripts.append(script)
        env = {**os.environ, "HOME": str(self.home)}
        done = subprocess.run(["sh", "-s"], input=script, cwd=self.home, env=env,
                              capture_output=True, text=True)  # fmt: skip
        if check and done.returncode:
            raise RemoteCommandError(f"exit {done.returncode}: {done.stderr.strip()}")
        return CommandResult(done.stdout, done.stderr, done.returncode)


def bundle(n: int, ca: bytes = b"CA\n") -> list[BundleFile]:
    files = [BundleFile("bob.key", b"KEY%d\n" % n, 0o600), BundleFile("bob.crt", b"CERT%d\n" % n)]
    return files + ([BundleFile("api-ca.crt", ca)] if ca else [])


def deliver(home: Path, files) -> tuple[bool, str]:
    return versions.deliver_versioned(LocalRemote(home), FOLDER, "bob", files)


def versions_in(home: Path) -> list[str]:
    return sorted(p.name for p in (home / FOLDER).iterdir() if p.name.startswith("v-"))


def test_a_bundle_lands_in_a_version_directory_behind_current_with_stable_links(tmp_path):
    changed, reason = deliver(tmp_path, bundle(1))
    folder = tmp_path / FOLDER
    version = versions.version_name(versions.with_combined_pem("bob", bundle(1)))
    assert (
        changed and f"files written in {version}/, sha256 checked; current -> {version}" in reason
    )
    assert os.readlink(folder / "current") == version
    for name in ("bob.key", "bob.crt", "api-ca.crt", "bob.pem"):
        assert os.readlink(folder / name) == f"current/{name}"
    assert (folder / "bob.key").read_bytes() == b"KEY1\n"
    assert (folder / "bob.pem").read_bytes() == b"CERT1\nKEY1\n"  # certificate, then key
    modes = {p.name: p.stat().st_mode & 0o777 for p in (folder / version).iterdir()}
    assert modes == {"bob.key": 0o600, "bob.crt": 0o644, "api-ca.crt": 0o644, "bob.pem": 0o600}
    assert (folder / version).stat().st_mode & 0o777 == folder.stat().st_mode & 0o777 == 0o700
    assert not folder.is_symlink() and folder.is_dir()  # the bundle directory stays real
    again = LocalRemote(tmp_path)
    assert not versions.deliver_versioned(again, FOLDER, "bob", bundle(1))[0]
    assert len(again.scripts) == 1  # unchanged: the facts only


def test_two_versions_are_kept_and_older_ones_pruned(tmp_path):
    names = []
    for n in range(1, 5):
        deliver(tmp_path, bundle(n))
        names.append(os.readlink(tmp_path / FOLDER / "current"))
    assert len(set(names)) == 4
    assert versions_in(tmp_path) == sorted(names[-2:])
    assert (tmp_path / FOLDER / "bob.crt").read_bytes() == b"CERT4\n"


def test_a_new_api_ca_alone_is_a_new_version(tmp_path):
    deliver(tmp_path, bundle(1))
    changed, _ = deliver(tmp_path, bundle(1, ca=b"CA\nNEW CA\n"))
    assert changed and len(versions_in(tmp_path)) == 2
    assert (tmp_path / FOLDER / "api-ca.crt").read_bytes() == b"CA\nNEW CA\n"


def test_a_file_that_leaves_the_bundle_leaves_no_dangling_link(tmp_path):
    deliver(tmp_path, bundle(1))
    deliver(tmp_path, bundle(2, ca=b""))  # a public CA: no api-ca.crt
    assert not os.path.lexists(tmp_path / FOLDER / "api-ca.crt")


def test_a_flat_bundle_of_before_becomes_links_in_place(tmp_path):
    folder = tmp_path / FOLDER
    folder.mkdir(parents=True, mode=0o700)
    (folder / "bob.key").write_bytes(b"OLD KEY\n")
    (folder / "bob.crt").write_bytes(b"OLD CERT\n")
    (folder / "notes.txt").write_bytes(b"mine\n")
    deliver(tmp_path, bundle(1))
    assert os.readlink(folder / "bob.key") == "current/bob.key"
    assert (folder / "bob.key").read_bytes() == b"KEY1\n"
    assert (folder / "notes.txt").read_bytes() == b"mine\n"  # not ours: left alone


def test_a_version_path_that_is_a_link_is_refused(tmp_path):
    folder = tmp_path / FOLDER
    folder.mkdir(parents=True, mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    version = versions.version_name(versions.with_combined_pem("bob", bundle(1)))
    (folder / version).symlink_to(elsewhere)
    with pytest.raises(UserError, match=f"{version} is a .*link.*: move it away"):
        deliver(tmp_path, bundle(1))
    assert list(elsewhere.iterdir()) == []


def test_a_reader_never_pairs_a_new_certificate_with_an_old_key(tmp_path):
    deliver(tmp_path, bundle(0))
    folder, stop, seen = tmp_path / FOLDER, threading.Event(), {"reads": 0, "bad": []}

    def reader():
        while not stop.is_set():
            pem = (folder / "bob.pem").read_bytes()  # one open: never half of two versions
            at = os.path.realpath(folder / "current")  # resolved once, then both files
            pair = (Path(at, "bob.crt").read_bytes(), Path(at, "bob.key").read_bytes())
            for cert, key in ((pem.split(b"\n")[0], pem.split(b"\n")[1]), pair):
                if cert.strip()[4:] != key.strip()[3:]:
                    seen["bad"].append((cert, key))
            seen["reads"] += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in range(1, 11):
            deliver(tmp_path, bundle(n))
    finally:
        stop.set()
        thread.join()
    assert seen["reads"] > 10 and seen["bad"] == []
    assert (folder / "bob.key").read_bytes() == b"KEY10\n"


def test_the_version_name_carries_the_certificates_serial():
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "bob")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(0xABC123)
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))  # fmt: skip
    files = [BundleFile("bob.crt", cert.public_bytes(serialization.Encoding.PEM))]
    assert versions.version_name(files).startswith("v-abc123-")
    assert versions.version_name(bundle(1)).startswith("v-bundle-")  # not a certificate
    assert versions.version_name(bundle(1)) != versions.version_name(bundle(2))


def test_drift_in_the_current_version_is_repaired_in_place(tmp_path):
    deliver(tmp_path, bundle(1))
    folder = tmp_path / FOLDER
    (folder / "bob.key").chmod(0o644)  # through the link: the version's file
    (folder / "bob.crt").write_bytes(b"tampered")
    folder.chmod(0o755)
    changed, reason = deliver(tmp_path, bundle(1))
    assert changed and "1 files written in v-" in reason
    assert "(directory mode 0755 -> 0700; bob.key mode 0644 -> 0600; bob.crt content" in reason
    assert (folder / "bob.crt").read_bytes() == b"CERT1\n"
    assert len(versions_in(tmp_path)) == 1


def test_flatten_turns_a_versioned_bundle_back_into_files_for_csr(tmp_path):
    deliver(tmp_path, bundle(1))
    deliver(tmp_path, bundle(2))
    folder = tmp_path / FOLDER
    (folder / "notes").symlink_to("/etc/hostname")  # not ours: kept
    versions.flatten(LocalRemote(tmp_path), FOLDER, "bob")
    assert sorted(p.name for p in folder.iterdir()) == ["api-ca.crt", "bob.crt", "bob.key", "notes"]
    assert not (folder / "bob.key").is_symlink() and (folder / "bob.key").read_bytes() == b"KEY2\n"
    assert (folder / "bob.key").stat().st_mode & 0o777 == 0o600
    assert (folder / "notes").is_symlink()
    versions.flatten(LocalRemote(tmp_path), FOLDER, "bob")  # a plain bundle: nothing to do
    assert (folder / "bob.crt").read_bytes() == b"CERT2\n"
