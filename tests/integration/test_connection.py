"""The SSH layer against real sshd on the lab hosts: login users, sudo, host keys, failures."""

import dataclasses

import pytest

from mtls_deploy.connection import ConnectError, Remote, SshTarget, trust_host
from mtls_deploy.errors import UserError
from mtls_deploy.inventory import Host, Layer
from mtls_deploy.runner import HostResult, run_on_hosts

from .conftest import needs_lab

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
    with Remote(target(lab_inventory, "bob")) as remote, pytest.raises(UserError, match="ansible_become"):
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
    with pytest.raises(ConnectError, match=r"HOST KEY CHANGED for \[127.0.0.1\]:2201: offered ssh-ed25519 SHA256:"):
        Remote(dataclasses.replace(real, known_hosts=fake)).open()


def test_unknown_host_key_is_refused_then_trusted(lab_inventory, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    unknown = target(lab_inventory, "api1", known_hosts=empty)
    with pytest.raises(ConnectError, match=r"unknown host key .* SHA256:\S+\); if that is right, run `inv hosts.trust --host api1`"):
        Remote(unknown).open()
    line, changed = trust_host(unknown)
    assert changed and line.startswith("[127.0.0.1]:2201 ssh-ed25519 SHA256:")
    with Remote(unknown) as remote:
        assert remote.run("true").ok
    assert trust_host(unknown) == (line, False)


def test_refused_authentication(lab_inventory, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    stranger = tmp_path / "id_stranger"
    stranger.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
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
