"""Delivery: consumer lookup, bundle_dir, the bundle as engine resources, and the whole pipeline
(facts -> plan -> apply) run here with sh against a scratch "home", as the current user without
sudo, as on a consumer (the remote side is plain POSIX sh + coreutils)."""

import getpass
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mtls_deploy import deliver, deliver_csr
from mtls_deploy.connection import CommandResult, RemoteCommandError
from mtls_deploy.deliver import BundleFile
from mtls_deploy.errors import BadInput, UserError
from mtls_deploy.facts import PathState, ResourceFacts
from mtls_deploy.inventory import Host, Inventory, Layer
from mtls_deploy.operations import plan, sha256
from mtls_deploy.pki import profile as pki
from mtls_deploy.resources import Command, Directory, File

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


# --- the bundle as desired state ------------------------------------------------------------

FILES = [BundleFile("bob.key", b"KEY", 0o600), BundleFile("bob.crt", b"CERT", 0o644)]


def test_a_bundle_is_the_engines_resources_the_directory_first():
    found = deliver.owned_by(deliver.bundle_resources(".mtls/api", FILES), "bob", "staff")
    assert found == [
        Directory(".mtls/api", 0o700, "bob", "staff"),
        File(".mtls/api/bob.key", b"KEY", 0o600, "bob", "staff", secret=True),
        File(".mtls/api/bob.crt", b"CERT", 0o644, "bob", "staff"),
    ]


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


def planned(state: ResourceFacts) -> list[tuple[str, str, str]]:
    wanted = deliver.owned_by(deliver.bundle_resources(".mtls/api", FILES), "bob", "bob")
    return [(s.name, s.status, s.reason) for s in plan(wanted, state)]


def test_a_matching_bundle_plans_no_change():
    state = facts(bob_key=present(b"KEY", 0o600), bob_crt=present(b"CERT", 0o644))
    assert {status for _, status, _ in planned(state)} == {"ok"}


def test_differences_each_have_their_fix():
    state = facts(
        PathState("directory", 0o755, "bob", "bob"),
        bob_key=present(b"KEY", 0o644),  # same content, loose mode
        bob_crt=present(b"CERT", 0o644, owner="root"),  # same content, someone else's
    )
    assert planned(state) == [
        (".mtls/api", "changed", "mode 0755 -> 0700"),
        (".mtls/api/bob.key", "changed", "mode 0644 -> 0600"),
        (".mtls/api/bob.crt", "changed", "owner root:root -> bob:bob"),
    ]


def test_a_file_of_another_owner_is_replaced_not_chowned():
    """A login user (no sudo) cannot chown root's file; a new file renamed over it works."""
    wanted = File(".mtls/api/bob.crt", b"CERT", 0o644, "bob", "bob")
    step = plan([wanted], facts(bob_crt=present(b"CERT", 0o644, owner="root")))[0]
    assert "base64 -d" in step.commands[0] and not step.commands[0].startswith("chown")
    mode_only = plan([wanted], facts(bob_crt=present(b"CERT", 0o600)))[0]
    assert mode_only.commands[0].startswith("chown")  # its own file: chown and chmod suffice


@pytest.mark.parametrize(
    "state, message",
    [
        (facts(PathState("directory", 0o700, "root", "root")), "owned by root, not bob"),
        (facts(PathState("file", 0o600, "bob", "bob")), ".mtls/api is a file, not a directory"),
        (facts(PathState("link", 0o777, "bob", "bob")), ".mtls/api is a link, not a directory"),
        (facts(bob_key=PathState("directory", 0o700, "bob", "bob")), "bob.key is a directory"),
    ],
)
def test_things_in_the_way_are_refused_before_anything_is_planned(state, message):
    wanted = deliver.bundle_resources(".mtls/api", FILES)
    with pytest.raises(UserError, match=message):
        deliver.refuse_unsafe_folder(".mtls/api", wanted, state, "bob")


# --- the pipeline, run here with sh as the login user ------------------------------------------


class LocalRemote:
    """A ``Remote`` whose scripts run here with sh in a scratch home (no sudo: none is asked
    for); ``between`` runs after the first script, as another process could."""

    def __init__(self, home: Path, between=None):
        self.home, self.scripts, self.between = home, [], between

    def run_script(self, script, check=False, sudo=False):
        assert not sudo, "a consumer has no sudo"
        self.scripts.append(script)
        done = sh(script, self.home)
        if self.between and len(self.scripts) == 1:
            self.between()
        if check and done.returncode:
            raise RemoteCommandError(f"exit {done.returncode}: {done.stderr.strip()}")
        return CommandResult(done.stdout, done.stderr, done.returncode)

    def run(self, command, check=False):
        return self.run_script(command, check)


def bundle_state(home: Path) -> dict[str, tuple[str, bytes]]:
    folder = home / ".mtls/api"
    found = {".": (f"{folder.stat().st_mode & 0o777:o}", b"")}
    for path in folder.iterdir():
        found[path.name] = (f"{path.stat().st_mode & 0o777:o}", path.read_bytes())
    return found


def test_a_delivery_writes_the_bundle_and_a_second_is_one_unchanged_round_trip(tmp_path):
    remote = LocalRemote(tmp_path)
    changed, reason = deliver.deliver_files(remote, ".mtls/api", FILES)
    assert changed and reason.startswith(f"{tmp_path}/.mtls/api/: 2 files written, sha256 checked")
    assert bundle_state(tmp_path) == {
        ".": ("700", b""),
        "bob.key": ("600", b"KEY"),
        "bob.crt": ("644", b"CERT"),
    }
    assert (tmp_path / ".mtls").stat().st_mode & 0o777 == 0o700  # made under umask 077
    assert len(remote.scripts) == 2 and "sudo" not in "".join(remote.scripts)
    again = LocalRemote(tmp_path)
    assert deliver.deliver_files(again, ".mtls/api", FILES) == (
        False,
        f"unchanged in {tmp_path}/.mtls/api/: sha256 of 2 files match",
    )
    assert len(again.scripts) == 1


def test_drift_is_repaired_and_only_changed_files_are_written(tmp_path):
    deliver.deliver_files(LocalRemote(tmp_path), ".mtls/api", FILES)
    (tmp_path / ".mtls/api").chmod(0o755)
    (tmp_path / ".mtls/api/bob.key").chmod(0o644)
    (tmp_path / ".mtls/api/bob.crt").write_bytes(b"tampered")
    changed, reason = deliver.deliver_files(LocalRemote(tmp_path), ".mtls/api", FILES)
    assert "1 files written" in reason
    assert (
        "(directory mode 0755 -> 0700; bob.key mode 0644 -> 0600; bob.crt content differs" in reason
    )
    assert bundle_state(tmp_path)["bob.crt"] == ("644", b"CERT")
    assert bundle_state(tmp_path)["."] == ("700", b"")
    assert not [p for p in (tmp_path / ".mtls/api").iterdir() if p.name.startswith(".")]


def test_the_directory_is_private_before_the_first_file_is_created_in_it(tmp_path):
    (tmp_path / ".mtls/api").mkdir(parents=True)
    (tmp_path / ".mtls/api").chmod(0o777)
    remote = LocalRemote(tmp_path)
    deliver.deliver_files(remote, ".mtls/api", FILES)
    script = remote.scripts[1]
    chmod, guard = script.index("chmod 0700 .mtls/api"), script.index("stat -c '%F %U %a'")
    assert chmod < guard < script.index("mktemp")  # and mktemp makes 0600 files
    assert script.index("umask 077") < script.index("mkdir -p")


def test_a_bundle_directory_swapped_for_a_link_after_the_facts_gets_no_file(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp_path / ".mtls/api").mkdir(parents=True, mode=0o700)

    def swap():
        (tmp_path / ".mtls/api").rmdir()
        (tmp_path / ".mtls/api").symlink_to(elsewhere)

    with pytest.raises(UserError, match=r"\.mtls/api is a link, or not a directory of .*'s with "
                                        r"mode 0700: nothing written"):  # fmt: skip
        deliver.deliver_files(LocalRemote(tmp_path, between=swap), ".mtls/api", FILES)
    assert list(elsewhere.iterdir()) == []


def test_a_linked_bundle_dir_is_refused_before_anything_is_written(tmp_path):
    target = linked_bundle_dir(tmp_path)
    remote = LocalRemote(tmp_path)
    with pytest.raises(UserError, match=r"\.mtls/api is a link, not a directory"):
        deliver.deliver_files(remote, ".mtls/api", FILES)
    assert len(remote.scripts) == 1  # the facts only
    assert list(target.iterdir()) == [] and target.stat().st_mode & 0o777 == 0o755


def test_a_corrupted_transfer_replaces_nothing_and_leaves_no_temporary(tmp_path, monkeypatch):
    deliver.deliver_files(LocalRemote(tmp_path), ".mtls/api", FILES)
    new = [BundleFile("bob.key", b"NEW KEY", 0o600), BundleFile("bob.crt", b"NEW CERT")]
    real = deliver.plan

    def corrupting(resources, found):  # the content sent is not what was hashed
        steps = real(resources, found)
        for step in steps:
            step.commands = [c.replace(sha256(b"NEW CERT"), "0" * 64) for c in step.commands]
        return steps

    monkeypatch.setattr(deliver, "plan", corrupting)
    with pytest.raises(UserError):
        deliver.deliver_files(LocalRemote(tmp_path), ".mtls/api", new)
    assert bundle_state(tmp_path)["bob.crt"] == ("644", b"CERT")
    assert not [p for p in (tmp_path / ".mtls/api").iterdir() if p.name.startswith(".")]


def test_facts_script_reads_who_and_what_is_there(tmp_path):
    (tmp_path / ".mtls/api").mkdir(parents=True, mode=0o700)
    (tmp_path / ".mtls/api/bob.crt").write_bytes(b"CERT")
    wanted = deliver.bundle_resources(".mtls/api", FILES)
    found = deliver.parse_consumer(sh(deliver.facts_script(".mtls/api", wanted), tmp_path).stdout)
    assert (found.home, found.user) == (str(tmp_path), ME)
    assert found.facts.path(".mtls").kind == found.facts.path(".mtls/api").kind == "directory"
    assert found.facts.path(".mtls/api/bob.crt").sha256 == sha256(b"CERT")
    assert found.facts.path(".mtls/api/bob.key").kind == "absent"


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
    spki = deliver_csr.spki_sha256(key.public_key())
    assert deliver_csr.csr_decision(None, None, False, None, None, False) == "new"
    assert deliver_csr.csr_decision("revoked", None, False, None, None, False) == "new"
    assert deliver_csr.csr_decision("valid", pem, False, sha256(pem), spki, False) == "keep"
    assert deliver_csr.csr_decision("valid", pem, False, sha256(pem), spki, True) == "new"
    assert deliver_csr.csr_decision("valid", pem, True, sha256(pem), spki, True) == "new"
    with pytest.raises(BadInput, match="key was made here, not on the consumer: add --reissue"):
        deliver_csr.csr_decision("valid", pem, True, sha256(pem), spki, False)  # a delivered bundle
    other = deliver_csr.spki_sha256(pki.generate_key("ec").public_key())
    for remote_cert, remote_spki in ((sha256(pem), other), ("0" * 64, spki), (None, None)):
        with pytest.raises(BadInput, match="key is not on the consumer: add --reissue"):
            deliver_csr.csr_decision("valid", pem, False, remote_cert, remote_spki, False)


def keygen(home: Path, key_type: str = "ec") -> subprocess.CompletedProcess:
    """The keygen resources planned on an empty home and applied with the engine, as deliver does."""
    found = deliver.parse_consumer(sh(deliver.SESSION, home).stdout)
    wanted = deliver.owned_by(
        deliver_csr.keygen_resources(".mtls/api", ".mtls/api/.bob.key.new", "bob", key_type),
        found.user, found.group,
    )  # fmt: skip
    steps = plan(wanted, ResourceFacts({}, frozenset(), {}))
    assert [s.kind for s in steps] == ["directory", "command"]
    return deliver.apply_as_login_user(LocalRemote(home), ".mtls/api", wanted, steps, "there")


def test_keygen_is_a_command_guarded_by_creates():
    command = deliver_csr.keygen_resources(".mtls/api", ".mtls/api/.k", "bob", "ec")[1]
    assert isinstance(command, Command) and command.creates == ".mtls/api/.k"
    done = plan([command], ResourceFacts({".mtls/api/.k": PathState("file")}, frozenset(), {}))
    assert done[0].status == "ok"


@needs_openssl
@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_keygen_makes_a_private_key_there_and_an_acceptable_csr(tmp_path, key_type):
    output = keygen(tmp_path, key_type)
    key_file = tmp_path / ".mtls/api/.bob.key.new"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / ".mtls/api").stat().st_mode & 0o777 == 0o700
    csr = x509.load_pem_x509_csr(deliver_csr.CSR_PEM.search(output).group().encode())
    public_key = pki.check_csr(csr, "bob")
    spki = sh(deliver_csr.remote_spki_command(".mtls/api/.bob.key.new"), tmp_path).stdout
    assert deliver_csr.parse_spki(spki) == deliver_csr.spki_sha256(public_key)


@needs_openssl
def test_install_key_only_when_it_matches_the_signed_certificate(tmp_path):
    output = keygen(tmp_path)
    public_key = x509.load_pem_x509_csr(
        deliver_csr.CSR_PEM.search(output).group().encode()
    ).public_key()
    (tmp_path / ".mtls/api/bob.p12").write_bytes(b"an old key's p12")

    def install(spki):
        command = deliver_csr.install_key_resource(
            ".mtls/api", "bob", ".mtls/api/.bob.key.new", spki
        )
        return sh(plan([command], ResourceFacts({}, frozenset(), {}))[0].commands[0], tmp_path)

    assert install("0" * 64).returncode == 4
    assert not (tmp_path / ".mtls/api/bob.key").exists()
    assert install(deliver_csr.spki_sha256(public_key)).returncode == 0
    assert (tmp_path / ".mtls/api/bob.key").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / ".mtls/api/bob.p12").exists()


# --- what may leave dist/ -----------------------------------------------------------------------


def test_only_the_current_bundle_is_deliverable(pki_store, pki_env):
    from mtls_deploy.pki.bundle import issue_bundles

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
    from mtls_deploy.pki.bundle import issue_bundles

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
        deliver_csr._csr_step(pki_store, remote, ".mtls/api", "bob", deliver_csr.CsrOptions(), [])
    assert pki_store.client_status("bob") is None  # no row in the index
    assert list(target.iterdir()) == [] and target.stat().st_mode & 0o777 == 0o755
    assert len(remote.scripts) == 1  # the facts, nothing else


@needs_openssl
def test_csr_makes_the_key_there_and_delivers_the_certificate(tmp_path, pki_store):
    home = tmp_path / "home"
    home.mkdir()
    public = deliver_csr.api_ca_files(pki_store, inventory_of(host("bob")))  # our server CA
    step = deliver_csr._csr_step(
        pki_store, LocalRemote(home), ".mtls/api", "bob", deliver_csr.CsrOptions(), public
    )
    assert step.status == "changed" and "key made on the consumer, never left it" in step.reason
    folder = home / ".mtls/api"
    assert sorted(p.name for p in folder.iterdir()) == ["api-ca.crt", "bob.crt", "bob.key"]
    assert (folder / "bob.key").stat().st_mode & 0o777 == 0o600
    assert (folder / "bob.crt").read_bytes() == pki_store.client_material("bob").cert_pem
    again = deliver_csr._csr_step(
        pki_store, LocalRemote(home), ".mtls/api", "bob", deliver_csr.CsrOptions(), public
    )
    assert again.status == "ok" and "unchanged in" in again.reason


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


# --- api-ca.crt follows the API hosts' server certificates ---------------------------------------

OURS = b"-----BEGIN CERTIFICATE-----\nOUR SERVER CA\n-----END CERTIFICATE-----\n"


def api(name, **values) -> Host:
    return host(name, groups=("api",), **values)


def test_our_server_ca_while_an_api_uses_it():
    loaded = inventory_of(api("api1", server_cert="private"), host("bob"))
    assert deliver.api_trust(loaded, OURS) == OURS
    assert deliver.api_trust(inventory_of(host("bob")), OURS) == OURS  # no API: as before


@pytest.mark.parametrize("kind", ["acme", "files"])
def test_no_api_ca_when_every_api_has_a_public_certificate(kind):
    loaded = inventory_of(api("api1", server_cert=kind), api("api2", server_cert="acme"))
    assert deliver.api_trust(loaded, OURS) is None


def test_a_private_acme_ca_or_a_files_root_is_shipped_each_once(tmp_path):
    pebble, corp = tmp_path / "pebble.pem", tmp_path / "corp.pem"
    pebble.write_bytes(b"PEBBLE ROOT\n")
    corp.write_bytes(b"CORP ROOT")
    loaded = inventory_of(
        api("a1", server_cert="acme", acme_ca_bundle=str(pebble)),
        api("a2", server_cert="acme", acme_ca_bundle=str(pebble)),
        api("a3", server_cert="files", server_cert_files={"ca": str(corp)}),
        api("a4", server_cert="acme"),
    )
    assert deliver.api_trust(loaded, OURS) == b"PEBBLE ROOT\nCORP ROOT\n"


def test_mixed_private_and_public_apis_ship_our_ca():
    loaded = inventory_of(api("a1", server_cert="acme"), api("a2", server_cert="private"))
    assert deliver.api_trust(loaded, OURS) == OURS


def test_an_unreadable_acme_ca_bundle_is_one_line(tmp_path):
    loaded = inventory_of(api("a1", server_cert="acme", acme_ca_bundle=str(tmp_path / "gone")))
    with pytest.raises(UserError, match=r"^a1: cannot read .*gone .*No such file"):
        deliver.api_trust(loaded, OURS)


class TrustStore:
    """What ``issue_with_csr`` asks a store before any consumer is touched."""

    def trusted_server_cas_pem(self):
        return OURS

    def check_client_days(self, days):
        return None


def csr_api_ca(monkeypatch, loaded) -> list:
    """The files ``issue-client --csr`` would ship beside the certificate (no SSH: the
    consumer step is replaced by one that records them)."""
    shipped = []

    def on_host(store, consumer, name, options, public):
        shipped.extend(public)
        return deliver_csr.HostResult(consumer.name, [])

    monkeypatch.setattr(deliver_csr, "_csr_on_host", on_host)
    deliver_csr.issue_with_csr(TrustStore(), ["bob"], deliver_csr.CsrOptions(), loaded)
    return shipped


def test_csr_bundles_follow_the_server_certificate(monkeypatch, tmp_path):
    public = inventory_of(api("a1", server_cert="acme"), host("bob"))
    assert csr_api_ca(monkeypatch, public) == []  # a public CA: no api-ca.crt
    ours = inventory_of(api("a1", server_cert="private"), host("bob"))
    assert csr_api_ca(monkeypatch, ours) == [BundleFile("api-ca.crt", OURS)]
    bundle = tmp_path / "pebble.pem"
    bundle.write_bytes(b"PEBBLE ROOT\n")
    private_acme = inventory_of(api("a1", server_cert="acme", acme_ca_bundle=str(bundle)),
                                host("bob"))  # fmt: skip
    assert csr_api_ca(monkeypatch, private_acme) == [BundleFile("api-ca.crt", b"PEBBLE ROOT\n")]
