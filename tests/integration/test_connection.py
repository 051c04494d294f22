"""The SSH layer against real sshd on the lab hosts: login users, sudo, host keys, failures."""

import dataclasses
import shutil

import pytest

from mtls_deploy.connection import ConnectError, Remote, SshTarget, fingerprint
from mtls_deploy.errors import UserError
from mtls_deploy.host_keys import fetch_host_key, known_keys, trust_host
from mtls_deploy.inventory import Host, Layer
from mtls_deploy.runner import HostResult, run_on_hosts

from .conftest import DEFAULT_LAB, ROOT, inv, needs_lab, remote

pytestmark = needs_lab


def target(lab_inventory, name, **changes) -> SshTarget:
    found = SshTarget.from_vars(name, lab_inventory.host(name).vars)
    return dataclasses.replace(found, **changes)


@pytest.mark.parametrize("name, user", [("api1", "deploy"), ("bob", "bob")])
def test_command_runs_as_the_login_user(lab_inventory, name, user):
    with Remote(target(lab_inventory, name)) as remote:
        assert remote.run("id -un").stdout.strip() == user
        assert remote.run("hostname").stdout.strip() == name


def test_sudo_on_api1_only(lab_inventory):
    with Remote(target(lab_inventory, "api1")) as remote:
        assert remote.run("id -u", sudo=True).stdout.strip() == "0"
    with (
        Remote(target(lab_inventory, "bob")) as remote,
        pytest.raises(UserError, match="ansible_become"),
    ):
        remote.run("id -u", sudo=True)
    # even if the inventory claimed become, bob's sudo asks for a password: -n fails, no hang
    with Remote(target(lab_inventory, "bob", become=True)) as remote:
        result = remote.run("id -u", sudo=True)
        assert not result.ok and "password" in result.stderr


def test_a_script_is_one_channel(lab_inventory):
    with Remote(target(lab_inventory, "api1")) as remote:
        result = remote.run_script("echo one\necho two >&2\nexit 7\n")
        assert (result.stdout, result.stderr.strip(), result.exit_status) == ("one\n", "two", 7)
        assert remote.channels == 1


def test_changed_host_key_is_refused(lab_inventory, tmp_path):
    real = target(lab_inventory, "api1")
    other = target(lab_inventory, "bob").known_hosts.read_text().split("\n")[1]  # bob's key line
    fake = tmp_path / "known_hosts"
    fake.write_text(f"{real.known_hosts_name} {other.split(' ', 1)[1]}\n")
    with pytest.raises(
        ConnectError, match=r"HOST KEY CHANGED for \[127.0.0.1\]:2201: offered ssh-ed25519 SHA256:"
    ) as refused:
        Remote(dataclasses.replace(real, known_hosts=fake)).open()
    assert str(refused.value).endswith(  # the fix it names is the one that works
        "if the host was rebuilt, check the new fingerprint out of band, then run "
        "`inv hosts.trust --host api1 --replace`"
    )


def test_unknown_host_key_is_refused_then_trusted(lab_inventory, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    unknown = target(lab_inventory, "api1", known_hosts=empty)
    with pytest.raises(
        ConnectError,
        match=r"unknown host key .* SHA256:\S+\); if that is right, run `inv hosts.trust --host api1`",
    ):
        Remote(unknown).open()
    line = trust_host(unknown)
    assert line.startswith("trusted (first use): api1 [127.0.0.1]:2201 ssh-ed25519 SHA256:")
    with Remote(unknown) as connection:
        assert connection.run("true").ok
    assert trust_host(unknown).startswith(
        "already trusted: api1 [127.0.0.1]:2201 ssh-ed25519 SHA256:"
    )


def test_refused_authentication(lab_inventory, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    stranger = tmp_path / "id_stranger"
    stranger.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    stranger.chmod(0o600)
    with pytest.raises(ConnectError, match="authentication refused for deploy@127.0.0.1:2201"):
        Remote(target(lab_inventory, "api1", key_file=stranger)).open()


def test_missing_key_file(lab_inventory, tmp_path):
    with pytest.raises(ConnectError, match="SSH key file .* does not exist"):
        Remote(target(lab_inventory, "api1", key_file=tmp_path / "nope")).open()


def test_unreachable_host_is_reported_while_the_other_succeeds(lab_inventory):
    api1 = lab_inventory.host("api1")
    ghost = Host("ghost", ("api",), [*api1.layers, Layer("test", {"ansible_port": 2299})])

    def work(host) -> HostResult:
        with Remote(SshTarget.from_vars(host.name, host.vars)) as remote:
            remote.run("true", check=True)
        return HostResult(host.name)

    group = run_on_hosts([ghost, api1], work)
    assert [r.host for r in group.succeeded] == ["api1"]
    assert group.failed[0].error == (
        "ghost: cannot reach deploy@127.0.0.1:2299: connection refused; is the host up and sshd running?"
    )


def test_all_output_arrives_even_when_the_exit_status_comes_first(lab_inventory):
    """sshd may report the exit before the last output: read to EOF, never stop at the status."""
    expected_small = "".join(f"{n}\n" for n in range(1, 3001))
    with Remote(target(lab_inventory, "bob")) as remote:
        for _ in range(30):
            assert remote.run("seq 1 3000").stdout == expected_small
        big = remote.run("head -c 3000000 /dev/zero | base64 -w 76")
        assert big.ok and len(big.stdout) == 4000000 + 4000000 // 76 + 1


# --- inv hosts.trust: trust on first use, a changed key refused, a pinned key ------------------


@pytest.fixture
def own_known_hosts(lab_inventory, tmp_path):
    """The default inventory (api1, bob), but with a known_hosts file of the test's own (not
    there yet): (inventory folder, known_hosts path)."""
    folder = tmp_path / "inventory"
    (folder / "group_vars").mkdir(parents=True)
    shutil.copy(DEFAULT_LAB / "hosts.yml", folder / "hosts.yml")
    (folder / "group_vars" / "all.yml").write_text(
        f"ansible_ssh_private_key_file: {ROOT}/.lab/id_ed25519\n"
        f"ssh_known_hosts_file: {tmp_path}/known_hosts\n"
        "https_listen: 127.0.0.1\nlab: true\n"
    )
    return folder, tmp_path / "known_hosts"


def trust(folder, *flags, host="api1"):
    return inv("hosts.trust", "--host", host, *flags, check=False,
               env={"MTLS_DEPLOY_INVENTORY": str(folder)})  # fmt: skip


def lab_key(lab_inventory, name):
    """The host's ed25519 key as `inv lab.up` read it from the host's own files."""
    return known_keys(target(lab_inventory, name))[0]


def key_line(name, key) -> str:
    return f"{name} {key.get_name()} {key.get_base64()}\n"


API1 = "[127.0.0.1]:2201"


def test_hosts_trust_records_an_unknown_key_with_its_fingerprint_then_knows_it(
    lab_inventory, own_known_hosts
):
    folder, known_hosts = own_known_hosts
    api1 = lab_key(lab_inventory, "api1")
    first = trust(folder)
    assert (first.returncode, first.stderr) == (0, "")
    assert first.stdout == (
        f"trusted (first use): api1 {API1} ssh-ed25519 {fingerprint(api1)}, recorded in {known_hosts}\n"
    )
    assert known_hosts.read_text() == key_line(API1, api1)
    again = trust(folder)
    assert again.stdout == f"already trusted: api1 {API1} ssh-ed25519 {fingerprint(api1)}\n"
    assert known_hosts.read_text() == key_line(API1, api1)
    with remote(folder, "api1") as connection:
        assert connection.run("hostname").stdout.strip() == "api1"


def test_hosts_trust_refuses_a_changed_key_and_replaces_it_only_when_told(
    lab_inventory, own_known_hosts
):
    folder, known_hosts = own_known_hosts
    api1, bob = lab_key(lab_inventory, "api1"), lab_key(lab_inventory, "bob")
    before = "# ours\n" + key_line(API1, bob) + key_line("[127.0.0.1]:2202", bob)
    known_hosts.write_text(before)
    refused = trust(folder)
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr == (
        f"error: api1: HOST KEY CHANGED for {API1}: offered ssh-ed25519 {fingerprint(api1)}, known "
        f"ssh-ed25519 {fingerprint(bob)} (in {known_hosts}); nothing written. If the host was "
        f"rebuilt, check {fingerprint(api1)} out of band (on its console: ssh-keygen -lf "
        "/etc/ssh/ssh_host_*_key.pub), then run `inv hosts.trust --host api1 --replace`\n"
    )
    assert known_hosts.read_text() == before
    replaced = trust(folder, "--replace")
    assert replaced.stdout == (
        f"replaced: api1 {API1} ssh-ed25519 {fingerprint(api1)} (was {fingerprint(bob)}) in {known_hosts}\n"
    )
    assert known_hosts.read_text() == "# ours\n" + key_line("[127.0.0.1]:2202", bob) + key_line(
        API1, api1
    )
    with remote(folder, "api1") as connection:
        assert connection.run("true").ok


def test_hosts_trust_with_a_pin_accepts_that_key_only(lab_inventory, own_known_hosts):
    folder, known_hosts = own_known_hosts
    api1, bob = lab_key(lab_inventory, "api1"), lab_key(lab_inventory, "bob")
    wrong = trust(folder, "--fingerprint", fingerprint(bob))
    assert (wrong.returncode, wrong.stdout) == (2, "")
    assert wrong.stderr == (
        f"error: api1: {API1} offers ssh-ed25519 {fingerprint(api1)}, not the pinned {fingerprint(bob)}; "
        f"nothing written to {known_hosts}. Check the fingerprint you were given and the address: "
        "something else may be answering for this host\n"
    )
    assert not known_hosts.exists()
    pinned = trust(folder, "--fingerprint", fingerprint(api1))
    assert pinned.stdout.startswith(
        f"trusted (first use): api1 {API1} ssh-ed25519 {fingerprint(api1)}"
    )
    # a rebuilt host, its new key pinned: replaced without --replace (the pin is the check)
    known_hosts.write_text(key_line(API1, bob))
    assert trust(folder, "--fingerprint", fingerprint(bob)).returncode == 2
    assert known_hosts.read_text() == key_line(API1, bob)
    rebuilt = trust(folder, "--fingerprint", fingerprint(api1))
    assert rebuilt.stdout.startswith(f"replaced: api1 {API1} ssh-ed25519 {fingerprint(api1)} (was ")
    assert known_hosts.read_text() == key_line(API1, api1)


@pytest.mark.parametrize(
    "hosts, pin, message",
    [
        (
            "api1",
            "SHA256:abc",
            "error: --fingerprint 'SHA256:abc' is not a SHA256 host key fingerprint",
        ),
        (
            "api1,bob",
            "SHA256:" + "A" * 43,
            "error: --fingerprint pins one host's key, but --host names 2",
        ),
    ],
)
def test_hosts_trust_checks_its_flags_before_connecting(own_known_hosts, hosts, pin, message):
    folder, known_hosts = own_known_hosts
    done = trust(folder, "--fingerprint", pin, host=hosts)
    assert done.returncode == 2 and done.stderr.startswith(message), done.stderr
    assert len(done.stderr.splitlines()) == 1 and not known_hosts.exists()


def test_hosts_trust_knows_a_host_by_any_key_it_has_and_by_a_hashed_name(
    lab_inventory, own_known_hosts
):
    """api1 also has an ECDSA key: recorded alone, and hashed, it is the one we ask for."""
    import paramiko

    folder, known_hosts = own_known_hosts
    ecdsa = fetch_host_key(target(lab_inventory, "api1"), prefer=("ecdsa-sha2-nistp256",))
    assert ecdsa.get_name() == "ecdsa-sha2-nistp256"
    hashed = key_line(paramiko.HostKeys.hash_host(API1), ecdsa)
    known_hosts.write_text(hashed)
    known = trust(folder)
    assert (
        known.stdout == f"already trusted: api1 {API1} ecdsa-sha2-nistp256 {fingerprint(ecdsa)}\n"
    )
    assert known_hosts.read_text() == hashed
    with remote(folder, "api1") as connection:  # and the connection agrees
        assert connection.run("true").ok
    # a hashed line with another key is a changed key, and --replace drops that line
    bob = lab_key(lab_inventory, "bob")
    known_hosts.write_text(key_line(paramiko.HostKeys.hash_host(API1), bob))
    assert trust(folder).returncode == 2
    trust(folder, "--replace")
    assert known_hosts.read_text() == key_line(API1, lab_key(lab_inventory, "api1"))
