"""Delivery: consumer lookup, bundle_dir, the plan (sha256, owner, modes), and the shell scripts,
run here with sh against a scratch "home" (the remote side is plain POSIX sh + coreutils)."""

import getpass
import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mtls_deploy import deliver, pki
from mtls_deploy.deliver import BundleFile, DeliveryPlan, Upload
from mtls_deploy.errors import BadInput, UserError
from mtls_deploy.facts import PathState, ResourceFacts, parse_resource_facts
from mtls_deploy.inventory import Host, Inventory, Layer
from mtls_deploy.operations import sha256

ME = getpass.getuser()
needs_openssl = pytest.mark.skipif(not shutil.which("openssl"), reason="openssl is missing")


def host(name, groups=("consumers",), **values) -> Host:
    return Host(name, ("all", *groups), [Layer("test", values)])


def inventory_of(*hosts) -> Inventory:
    groups = {"all": [h.name for h in hosts]}
    for h in hosts:
        for group in h.groups:
            groups.setdefault(group, []).append(h.name)
    return Inventory(Path("inventory"), {h.name: h for h in hosts}, groups)


def sh(script: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run a script as the remote would: ``sh -s`` in the login user's home."""
    env = {**os.environ, "HOME": str(cwd)}
    return subprocess.run(
        ["sh", "-s"], input=script, cwd=cwd, env=env, capture_output=True, text=True
    )


# --- where bundles go -----------------------------------------------------------------------


def test_consumer_is_the_host_named_like_the_client_or_listing_it():
    bob = host("bob")
    shared = host("shared", client_names=["alice", "bob"])
    api_bob = host("carol", groups=("api",))  # named differently, not a consumer
    loaded = inventory_of(bob, shared, api_bob)
    assert [h.name for h in deliver.consumer_hosts(loaded, "bob")] == ["bob", "shared"]
    assert [h.name for h in deliver.consumer_hosts(loaded, "alice")] == ["shared"]
    assert deliver.consumer_hosts(loaded, "carol") == []  # an API host is no consumer by name
    assert deliver.consumer_hosts(loaded, "dave") == []


def test_client_names_default_to_the_host_name():
    assert deliver.client_names(host("bob")) == ["bob"]
    assert deliver.client_names(host("box", client_names=["a", "b"])) == ["a", "b"]
    with pytest.raises(BadInput, match="client_names must be a list"):
        deliver.client_names(host("box", client_names="a"))


@pytest.mark.parametrize(
    "values, expected",
    [
        ({}, "~/.mtls/api"),
        ({"api_name": "billing"}, "~/.mtls/billing"),
        ({"bundle_dir": "/srv/app/mtls/"}, "/srv/app/mtls"),
        ({"bundle_dir": "~/certs/{api_name}", "api_name": "x"}, "~/certs/x"),
        ({"bundle_dir": "~"}, "~"),
    ],
)
def test_bundle_dir(values, expected):
    assert deliver.bundle_dir(values) == expected


@pytest.mark.parametrize("bad", ["relative/dir", "~bob/x", "/a\nb"])
def test_bundle_dir_must_be_absolute_or_in_home(bad):
    with pytest.raises(BadInput, match="bundle_dir"):
        deliver.bundle_dir({"bundle_dir": bad, "inventory_hostname": "bob"})


def test_session_paths_are_relative_to_the_home_where_ssh_starts():
    assert deliver.session_path("~/.mtls/api") == ".mtls/api"
    assert deliver.session_path("~") == "."
    assert deliver.session_path("/srv/x") == "/srv/x"
    assert deliver.shown_path("/home/bob", ".mtls/api") == "/home/bob/.mtls/api"
    assert deliver.shown_path("/home/bob", "/srv/x") == "/srv/x"
    assert deliver.parents(".mtls/api") == [".mtls", ".mtls/api"]
    assert deliver.parents("/srv/a/b") == ["/srv", "/srv/a", "/srv/a/b"]


def test_bundle_files_keep_private_files_private(tmp_path):
    (tmp_path / "bob.key").write_bytes(b"key")
    (tmp_path / "bob.key").chmod(0o600)
    (tmp_path / "bob.crt").write_bytes(b"cert")
    (tmp_path / "bob.crt").chmod(0o644)
    (tmp_path / ".bob.crt.tmp").write_bytes(b"leftover")
    files = {f.name: f.mode for f in deliver.bundle_files(tmp_path)}
    assert files == {"bob.key": 0o600, "bob.crt": 0o644}


# --- the plan -------------------------------------------------------------------------------

FILES = [BundleFile("bob.key", b"KEY", 0o600), BundleFile("bob.crt", b"CERT", 0o644)]


def facts(dir_state=None, **files) -> ResourceFacts:
    paths = {}
    if dir_state is not False:
        paths[".mtls"] = PathState("directory", 0o700, "bob", "bob")
        paths[".mtls/api"] = dir_state or PathState("directory", 0o700, "bob", "bob")
    for name, state in files.items():
        paths[f".mtls/api/{name.replace('_', '.')}"] = state
    return ResourceFacts(paths, frozenset(), {})


def present(content: bytes, mode: int, owner: str = "bob") -> PathState:
    return PathState("file", mode, owner, owner, sha256(content))


def test_nothing_there_makes_dirs_and_writes_everything():
    plan = deliver.plan_delivery(".mtls/api", FILES, facts(dir_state=False), "bob")
    assert plan.make_dirs == [".mtls", ".mtls/api"]
    assert [f.name for f in plan.write] == ["bob.key", "bob.crt"]
    assert plan.reasons == ["new directory, 0700"]


def test_matching_bundle_is_unchanged():
    state = facts(bob_key=present(b"KEY", 0o600), bob_crt=present(b"CERT", 0o644))
    assert deliver.plan_delivery(".mtls/api", FILES, state, "bob").unchanged


def test_differences_each_have_their_fix():
    state = facts(
        PathState("directory", 0o755, "bob", "bob"),
        bob_key=present(b"KEY", 0o644),  # same content, loose mode
        bob_crt=present(b"CERT", 0o644, owner="root"),  # same content, someone else's
    )
    plan = deliver.plan_delivery(".mtls/api", FILES, state, "bob")
    assert plan.fix_dir_mode and [f.name for f in plan.chmod] == ["bob.key"]
    assert [f.name for f in plan.write] == ["bob.crt"]
    assert plan.reasons == [
        "directory mode 0755 -> 0700",
        "bob.key mode 0644 -> 0600",
        "bob.crt owner root",
    ]
    changed = facts(bob_key=present(b"OLD", 0o600), bob_crt=present(b"CERT", 0o644))
    assert [f.name for f in deliver.plan_delivery(".mtls/api", FILES, changed, "bob").write] == [
        "bob.key"
    ]


def test_things_in_the_way_are_errors_not_changes():
    with pytest.raises(UserError, match="owned by root, not bob"):
        deliver.plan_delivery(
            ".mtls/api", FILES, facts(PathState("directory", 0o700, "root", "root")), "bob"
        )
    with pytest.raises(UserError, match="is a file, not a directory"):
        deliver.plan_delivery(
            ".mtls/api", FILES, facts(PathState("file", 0o600, "bob", "bob")), "bob"
        )
    with pytest.raises(UserError, match="bob.key is a directory"):
        deliver.plan_delivery(
            ".mtls/api", FILES, facts(bob_key=PathState("directory", 0o700, "bob", "bob")), "bob"
        )


# --- the scripts, run here with sh ------------------------------------------------------------


def stage(
    home: Path, files: list[BundleFile], corrupt: str | None = None
) -> tuple[DeliveryPlan, list[Upload]]:
    """What upload() does over SFTP, done locally: directories, then temporary files."""
    folder = home / ".mtls/api"
    folder.mkdir(parents=True, mode=0o700, exist_ok=True)
    plan, uploads = DeliveryPlan(".mtls/api", write=list(files)), []
    for f in files:
        temporary = f".mtls/api/.{f.name}.x.mtls-tmp"
        (home / temporary).write_bytes(b"CORRUPT" if f.name == corrupt else f.content)
        uploads.append(Upload(temporary, f".mtls/api/{f.name}", f.sha256, f.mode))
    return plan, uploads


def test_facts_script_sees_what_is_there(tmp_path):
    (tmp_path / ".mtls/api").mkdir(parents=True, mode=0o700)
    (tmp_path / ".mtls/api/bob.crt").write_bytes(b"CERT")
    output = sh(deliver.facts_script(".mtls/api", ["bob.key", "bob.crt"]), tmp_path).stdout
    session = {"home": str(tmp_path), "user": ME, "uid": str(os.getuid())}
    assert deliver.parse_session(output) == session
    found = parse_resource_facts(output)
    assert found.path(".mtls/api").kind == "directory"
    assert found.path(".mtls/api/bob.crt").sha256 == sha256(b"CERT")
    assert found.path(".mtls/api/bob.key").kind == "absent"


class LocalSftp:
    """paramiko's SFTPClient calls that ``upload`` makes, on a local "home"; each file created
    records the bundle directory's mode and owner at that moment."""

    def __init__(self, home: Path):
        self.home, self.calls, self.created = home, [], {}

    def mkdir(self, path, mode):
        self.calls.append(("mkdir", path))
        os.mkdir(self.home / path, mode)

    def chmod(self, path, mode):
        self.calls.append(("chmod", path))
        os.chmod(self.home / path, mode)

    def lstat(self, path):
        self.calls.append(("lstat", path))
        return os.lstat(self.home / path)

    def open(self, path, flags):
        self.calls.append(("open", path))
        folder = os.lstat((self.home / path).parent)
        self.created[path] = (folder.st_mode & 0o777, folder.st_uid)
        return LocalFile(self.home / path)


class LocalFile(io.FileIO):
    """A paramiko SFTPFile's ``chmod`` on a local file."""

    def __init__(self, path: Path):
        super().__init__(path, "wb")

    def chmod(self, mode):
        os.fchmod(self.fileno(), mode)


class FakeRemote:
    def __init__(self, sftp):
        self._sftp = sftp

    def sftp(self):
        return self._sftp


@pytest.mark.parametrize("existing_mode", [None, 0o755, 0o777])
def test_the_bundle_directory_is_private_before_any_file_is_created_in_it(tmp_path, existing_mode):
    if existing_mode is not None:
        (tmp_path / ".mtls/api").mkdir(parents=True)
        (tmp_path / ".mtls/api").chmod(existing_mode)
    made = [] if existing_mode else [".mtls", ".mtls/api"]
    plan = DeliveryPlan(".mtls/api", make_dirs=made, write=list(FILES))
    sftp = LocalSftp(tmp_path)
    uploads = deliver.upload(FakeRemote(sftp), plan, os.getuid())
    assert sftp.created and set(sftp.created.values()) == {(0o700, os.getuid())}
    assert [u.final for u in uploads] == [".mtls/api/bob.key", ".mtls/api/bob.crt"]
    first_open = next(i for i, call in enumerate(sftp.calls) if call[0] == "open")
    assert ("lstat", ".mtls/api") in sftp.calls[:first_open]


def test_a_bundle_directory_swapped_for_a_link_gets_no_file(tmp_path):
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (tmp_path / ".mtls").mkdir()
    (tmp_path / ".mtls/api").symlink_to(tmp_path / "elsewhere")
    sftp = LocalSftp(tmp_path)
    plan = DeliveryPlan(".mtls/api", write=list(FILES))
    with pytest.raises(UserError, match=r"\.mtls/api is a symbolic link: nothing written"):
        deliver.upload(FakeRemote(sftp), plan, os.getuid())
    assert not sftp.created and not list((tmp_path / "elsewhere").iterdir())


def test_folder_problems():
    directory = 0o040000
    assert deliver.folder_problem(directory | 0o700, 1000, 1000) == ""
    assert deliver.folder_problem(0o120777, 1000, 1000) == "is a symbolic link"
    assert deliver.folder_problem(0o100600, 1000, 1000) == "is not a directory"
    assert deliver.folder_problem(directory | 0o700, 0, 1000) == "is owned by uid 0, not 1000"
    assert deliver.folder_problem(directory | 0o500, 1000, 1000) == "has mode 0500, not 0700"


def test_install_checks_sha256_then_renames_with_modes(tmp_path):
    plan, uploads = stage(tmp_path, FILES)
    (tmp_path / ".mtls/api").chmod(0o755)
    done = sh(deliver.install_script(plan, uploads), tmp_path)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / ".mtls/api"
    assert sorted(p.name for p in folder.iterdir()) == ["bob.crt", "bob.key"]
    assert (folder / "bob.key").read_bytes() == b"KEY"
    assert (folder / "bob.key").stat().st_mode & 0o777 == 0o600
    assert (folder / "bob.crt").stat().st_mode & 0o777 == 0o644
    assert folder.stat().st_mode & 0o777 == 0o700
    after = parse_resource_facts(
        sh(deliver.facts_script(".mtls/api", ["bob.key", "bob.crt"]), tmp_path).stdout
    )
    assert deliver.verify_final(".mtls/api", FILES, after, ME) == []


def test_a_corrupted_transfer_replaces_nothing(tmp_path):
    (tmp_path / ".mtls/api").mkdir(parents=True, mode=0o700)
    (tmp_path / ".mtls/api/bob.key").write_bytes(b"OLD KEY")
    plan, uploads = stage(tmp_path, FILES, corrupt="bob.crt")
    script = deliver.install_script(plan, uploads)
    assert script.count("sha256sum -c") == 1  # one batched check for every file
    done = sh(script, tmp_path)
    assert done.returncode == 3 and "sha256 mismatch after transfer" in done.stderr
    assert sorted(p.name for p in (tmp_path / ".mtls/api").iterdir()) == ["bob.key"]
    assert (tmp_path / ".mtls/api/bob.key").read_bytes() == b"OLD KEY"


# --- --csr ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca():
    import datetime as dt

    key = pki.generate_key("ec")
    return pki.make_ca(key, "Test client CA", dt.datetime.now(dt.UTC)), key


def cert_for(ca, public_key):
    import datetime as dt

    return pki.issue_client_cert(*ca, public_key, "bob", pki.new_serial(), dt.datetime.now(dt.UTC))


def test_csr_decision(ca):
    key = pki.generate_key("ec")
    pem = cert_for(ca, key.public_key()).public_bytes(serialization.Encoding.PEM)
    spki = deliver.spki_sha256(key.public_key())
    assert deliver.csr_decision(None, None, False, None, None, False) == "new"
    assert deliver.csr_decision("revoked", None, False, None, None, False) == "new"
    assert deliver.csr_decision("valid", pem, False, sha256(pem), spki, False) == "keep"
    assert deliver.csr_decision("valid", pem, False, sha256(pem), spki, True) == "new"
    assert deliver.csr_decision("valid", pem, True, sha256(pem), spki, True) == "new"
    with pytest.raises(BadInput, match="key was made here, not on the consumer: add --reissue"):
        deliver.csr_decision("valid", pem, True, sha256(pem), spki, False)  # a delivered bundle
    other = deliver.spki_sha256(pki.generate_key("ec").public_key())
    for remote_cert, remote_spki in ((sha256(pem), other), ("0" * 64, spki), (None, None)):
        with pytest.raises(BadInput, match="key is not on the consumer: add --reissue"):
            deliver.csr_decision("valid", pem, False, remote_cert, remote_spki, False)


@needs_openssl
@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_keygen_makes_a_private_key_there_and_an_acceptable_csr(tmp_path, key_type):
    done = sh(
        deliver.keygen_script(".mtls/api", ".mtls/api/.bob.key.new", "bob", key_type), tmp_path
    )
    assert done.returncode == 0, done.stderr
    key_file = tmp_path / ".mtls/api/.bob.key.new"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / ".mtls/api").stat().st_mode & 0o777 == 0o700
    csr = x509.load_pem_x509_csr(done.stdout.encode())
    public_key = pki.check_csr(csr, "bob")
    spki = sh(deliver.remote_spki_command(".mtls/api/.bob.key.new"), tmp_path).stdout
    assert deliver.parse_spki(spki) == deliver.spki_sha256(public_key)


@needs_openssl
def test_install_key_only_when_it_matches_the_signed_certificate(tmp_path, ca):
    done = sh(deliver.keygen_script(".mtls/api", ".mtls/api/.bob.key.new", "bob", "ec"), tmp_path)
    public_key = x509.load_pem_x509_csr(done.stdout.encode()).public_key()
    (tmp_path / ".mtls/api/bob.p12").write_bytes(b"an old key's p12")
    wrong = deliver._install_key(".mtls/api", "bob", ".mtls/api/.bob.key.new", "0" * 64)
    assert sh("set -e\n" + wrong, tmp_path).returncode == 4
    assert not (tmp_path / ".mtls/api/bob.key").exists()
    right = deliver._install_key(
        ".mtls/api", "bob", ".mtls/api/.bob.key.new", deliver.spki_sha256(public_key)
    )
    assert sh("set -e\n" + right, tmp_path).returncode == 0
    assert (tmp_path / ".mtls/api/bob.key").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / ".mtls/api/bob.p12").exists()


# --- what may leave dist/ -----------------------------------------------------------------------


def test_only_the_current_bundle_is_deliverable(pki_store, pki_env):
    from mtls_deploy.bundle import issue_bundles

    issue_bundles(pki_store, ["bob"], dist_dir=pki_env.dist_dir)
    files = deliver.deliverable(pki_store, "bob", pki_env.dist_dir / "bob")
    assert {f.name for f in files} >= {"bob.key", "bob.crt", "api-ca.crt"}
    assert (
        "no certificate"
        in deliver.deliverable(pki_store, "nobody", pki_env.dist_dir / "nobody").reason
    )
    pki_store.issue_client("bob", reissue=True)  # dist/bob/ now holds the superseded pair
    refusal = deliver.deliverable(pki_store, "bob", pki_env.dist_dir / "bob")
    assert (refusal.status, "does not hold the current certificate" in refusal.reason) == (
        "failed",
        True,
    )


def test_a_key_made_on_the_consumer_is_never_overwritten_from_dist(pki_store, pki_env):
    from mtls_deploy.bundle import issue_bundles

    issue_bundles(pki_store, ["bob"], dist_dir=pki_env.dist_dir)
    key = pki.generate_key("ec")
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "bob")]))
        .sign(key, pki.hashes.SHA256())
    )
    pki_store.sign_client_csr("bob", csr.public_bytes(serialization.Encoding.PEM), reissue=True)
    refusal = deliver.deliverable(pki_store, "bob", pki_env.dist_dir / "bob")
    assert refusal.status == "skipped" and "--csr" in refusal.reason


# --- --csr end to end, the consumer being a scratch home here -----------------------------------


class LocalRemote(FakeRemote):
    """A ``Remote`` whose scripts run here with sh in a scratch home, its SFTP a ``LocalSftp``."""

    def __init__(self, home: Path):
        super().__init__(LocalSftp(home))
        self.home = home

    def run_script(self, script, check=False):
        from mtls_deploy.connection import CommandResult, RemoteCommandError

        done = sh(script, self.home)
        if check and done.returncode:
            raise RemoteCommandError(f"exit {done.returncode}: {done.stderr.strip()}")
        return CommandResult(done.stdout, done.stderr, done.returncode)

    def run(self, command, check=False):
        return self.run_script(command, check)


def linked_bundle_dir(home: Path) -> Path:
    """~/.mtls/api a link to ~/target (0755, empty): what must never receive a key."""
    target = home / "target"
    target.mkdir(parents=True)
    target.chmod(0o755)
    (home / ".mtls").mkdir(mode=0o700)
    (home / ".mtls/api").symlink_to(target)
    return target


@needs_openssl
def test_csr_in_a_linked_bundle_dir_makes_no_key_and_signs_nothing(tmp_path, pki_store):
    target = linked_bundle_dir(tmp_path / "home")
    remote = LocalRemote(tmp_path / "home")
    with pytest.raises(UserError, match=r"\.mtls/api is a link, not a directory"):
        deliver._csr_step(pki_store, remote, ".mtls/api", "bob", deliver.CsrOptions())
    assert pki_store.client_status("bob") is None  # no row in the index
    assert list(target.iterdir()) == [] and target.stat().st_mode & 0o777 == 0o755
    assert [call for call in remote.sftp().calls] == []


@needs_openssl
def test_keygen_itself_refuses_a_linked_bundle_dir(tmp_path):
    target = linked_bundle_dir(tmp_path)
    done = sh(deliver.keygen_script(".mtls/api", ".mtls/api/.bob.key.new", "bob", "ec"), tmp_path)
    assert done.returncode == 5 and "is a link or not a directory of yours" in done.stderr
    assert list(target.iterdir()) == [] and target.stat().st_mode & 0o777 == 0o755


@needs_openssl
def test_csr_makes_the_key_there_and_delivers_the_certificate(tmp_path, pki_store):
    home = tmp_path / "home"
    home.mkdir()
    step = deliver._csr_step(pki_store, LocalRemote(home), ".mtls/api", "bob", deliver.CsrOptions())
    assert step.status == "changed" and "key made on the consumer, never left it" in step.reason
    folder = home / ".mtls/api"
    assert sorted(p.name for p in folder.iterdir()) == ["api-ca.crt", "bob.crt", "bob.key"]
    assert (folder / "bob.key").stat().st_mode & 0o777 == 0o600
    assert (folder / "bob.crt").read_bytes() == pki_store.client_material("bob").cert_pem


def test_confirmed_means_on_every_consumer_host_and_checked():
    from mtls_deploy.operations import Step
    from mtls_deploy.runner import GroupResult, HostResult

    results = [
        HostResult("bob", [Step("bundle", "bob", "changed", ""), Step("bundle", "eve", "ok", "")]),
        HostResult("shared", [Step("bundle", "bob", "ok", ""), Step("bundle", "al", "failed", "")]),
        HostResult("down", error="down: connection refused"),
        HostResult("csr", [Step("bundle", "dan", "skipped", "its key was made on the consumer")]),
    ]
    targets = {"bob": ["bob", "shared"], "eve": ["bob", "down"], "al": ["shared"], "dan": ["csr"]}
    report = deliver.DeliveryReport(GroupResult(results), ["carol"], targets=targets)
    assert report.confirmed() == {"bob"}
