"""Host keys without a host (mtls_deploy/host_keys.py): what the known_hosts file says, what
hosts.trust decides, what it writes."""

import socket

import paramiko
import pytest

from mtls_deploy import host_keys
from mtls_deploy.connection import ConnectError, fingerprint, known_hosts_name
from mtls_deploy.errors import BadInput
from mtls_deploy.host_keys import (
    HostKeyRefused,
    decide_trust,
    known_hosts_line,
    known_keys,
    parse_fingerprint,
    record_host_key,
    replace_known_host,
)
from tests.unit.ssh_keys import NAME, hashed, line, new_key, target

# --- the decision ----------------------------------------------------------------------------


def test_an_unknown_host_is_trusted_on_first_use(tmp_path):
    assert decide_trust(target(tmp_path / "kh"), [], new_key()) == "new"


def test_a_key_already_recorded_is_known_among_several(tmp_path):
    offered = new_key()
    assert decide_trust(target(tmp_path / "kh"), [new_key(), offered], offered) == "known"


def test_a_changed_key_is_refused_with_both_fingerprints_and_the_fix(tmp_path):
    old, offered = new_key(), new_key()
    with pytest.raises(HostKeyRefused) as refused:
        decide_trust(target(tmp_path / "kh"), [old], offered)
    message = str(refused.value)
    assert message.startswith(
        f"api1: HOST KEY CHANGED for {NAME}: offered ssh-ed25519 {fingerprint(offered)}, "
    )
    assert (
        f"known ssh-ed25519 {fingerprint(old)} (in {tmp_path / 'kh'}); nothing written" in message
    )
    assert message.endswith("then run `inv hosts.trust --host api1 --replace`")
    assert "\n" not in message and refused.value.exit_code == 2


def test_replace_vouches_for_a_changed_key(tmp_path):
    assert decide_trust(target(tmp_path / "kh"), [new_key()], new_key(), replace=True) == "replace"


@pytest.mark.parametrize("known", ["nothing", "the offered key", "another key"])
def test_a_pin_refuses_any_other_key(tmp_path, known):
    offered = new_key()
    recorded = {"nothing": [], "the offered key": [offered], "another key": [new_key()]}[known]
    pinned = fingerprint(new_key())
    with pytest.raises(HostKeyRefused) as refused:
        decide_trust(target(tmp_path / "kh"), recorded, offered, pinned=pinned)
    assert str(refused.value).startswith(
        f"api1: {NAME} offers ssh-ed25519 {fingerprint(offered)}, not the pinned {pinned}; "
        f"nothing written to {tmp_path / 'kh'}. "
    )


def test_a_matching_pin_records_or_replaces(tmp_path):
    offered = new_key()
    pinned = fingerprint(offered)
    at = target(tmp_path / "kh")
    assert decide_trust(at, [], offered, pinned=pinned) == "new"
    assert decide_trust(at, [offered], offered, pinned=pinned) == "known"
    assert decide_trust(at, [new_key()], offered, pinned=pinned) == "replace"


@pytest.mark.parametrize("given", ["SHA256:" + "A" * 43, " SHA256:" + "a+/9" * 10 + "xyz= "])
def test_a_fingerprint_as_ssh_keygen_prints_it(given):
    assert parse_fingerprint(given) == given.strip().rstrip("=")


@pytest.mark.parametrize(
    "given", ["", "SHA256:short", "MD5:aa:bb", "A" * 43, "SHA256:" + "A" * 42 + "!"]
)
def test_anything_else_is_not_a_fingerprint(given):
    with pytest.raises(
        BadInput, match=r"^--fingerprint .* is not a SHA256 host key fingerprint; give it as"
    ):
        parse_fingerprint(given)


# --- reading known_hosts ---------------------------------------------------------------------


def test_known_keys_reads_plain_hashed_and_shared_lines_only_for_this_host(tmp_path):
    mine = [new_key() for _ in range(3)]
    kh = tmp_path / "known_hosts"
    kh.write_text("\n".join([
        "# a comment",
        "",
        line("[127.0.0.1]:2202", new_key()),
        line(NAME, mine[0]),
        line(hashed(NAME), mine[1]),
        line(hashed("[127.0.0.1]:2202"), new_key()),
        line(f"bob.example,{NAME}", mine[2]),
        f"{NAME} ssh-unknown-type AAAA",  # a type paramiko does not know: skipped, as it does
    ]) + "\n")  # fmt: skip
    assert [k.asbytes() for k in known_keys(target(kh))] == [k.asbytes() for k in mine]
    assert known_keys(target(tmp_path / "missing")) == []


@pytest.mark.parametrize(
    "bad", ["@revoked {name} {key}", "@cert-authority *.example {key}", "{name} ssh-ed25519 AAA!"]
)
def test_a_line_we_cannot_honour_is_refused_naming_it(tmp_path, bad):
    key = new_key()
    kh = tmp_path / "known_hosts"
    kh.write_text(f"# first\n{bad.format(name=NAME, key=f'ssh-ed25519 {key.get_base64()}')}\n")
    with pytest.raises(
        ConnectError, match=rf"^api1: line 2 of {kh} is not a host key entry we can read"
    ):
        known_keys(target(kh))


def test_an_unreadable_known_hosts_is_one_line(tmp_path):
    with pytest.raises(
        ConnectError, match=r"^api1: cannot read the known_hosts file .*: Is a directory; "
    ):
        known_keys(target(tmp_path))


# --- writing known_hosts ---------------------------------------------------------------------


def test_recording_appends_and_keeps_every_other_line(tmp_path):
    kh = tmp_path / "known_hosts"
    before = f"# ours\n{line('[127.0.0.1]:2202', new_key())}\n"
    kh.write_text(before)
    key = new_key()
    record_host_key(target(kh), key)
    assert kh.read_text() == before + line(NAME, key) + "\n"
    assert kh.stat().st_mode & 0o777 == 0o644


def test_replacing_drops_this_hosts_plain_and_hashed_lines_only(tmp_path):
    kh = tmp_path / "known_hosts"
    bob, shared = line("[127.0.0.1]:2202", new_key()), new_key()
    kh.write_text("\n".join([
        "# ours",
        line(NAME, new_key()),
        bob,
        line(hashed(NAME), new_key()),
        line(f"bob.example,{NAME}", shared),
    ]) + "\n")  # fmt: skip
    key = new_key()
    record_host_key(target(kh), key, replace=True)
    assert kh.read_text().splitlines() == [
        "# ours",
        bob,
        line("bob.example", shared),
        line(NAME, key),
    ]
    assert [k.asbytes() for k in known_keys(target(kh))] == [key.asbytes()]


def test_recording_creates_the_file_and_its_folder(tmp_path):
    kh = tmp_path / "new" / "known_hosts"
    key = new_key()
    record_host_key(target(kh), key)
    assert kh.read_text() == line(NAME, key) + "\n"


# --- hosts.trust's input, checked before any connection --------------------------------------


@pytest.mark.parametrize(
    "hosts, pin, message",
    [
        (0, None, r"^--host names no host; give one or more inventory hosts"),
        (
            2,
            "SHA256:" + "A" * 43,
            r"^--fingerprint pins one host's key, but --host names 2 \(api1, bob\); ",
        ),
        (1, "SHA256:nope", r"^--fingerprint 'SHA256:nope' is not a SHA256 host key fingerprint"),
    ],
)
def test_trust_input_is_refused_before_connecting(tmp_path, hosts, pin, message):
    targets = [target(tmp_path / "kh", port=1), target(tmp_path / "kh", host="bob", port=1)][:hosts]
    with pytest.raises(BadInput, match=message):
        list(host_keys.trust_targets(targets, fingerprint=pin))


# --- which key the host is asked for, and the message of a connection refused for it ----------


@pytest.mark.parametrize(
    "known, first",
    [
        ((), ["ssh-ed25519"]),  # paramiko's own order
        (("ecdsa-sha2-nistp256",), ["ecdsa-sha2-nistp256", "ssh-ed25519"]),
        (("ssh-rsa", "ssh-ed25519"), ["rsa-sha2-512", "rsa-sha2-256", "ssh-ed25519"]),
    ],
)
def test_the_key_types_already_recorded_are_asked_for_first(known, first):
    ours, theirs = socket.socketpair()
    with ours, theirs:
        options = paramiko.Transport(ours).get_security_options()
        host_keys._prefer_key_types(options, known)
        assert list(options.key_types[: len(first)]) == first
        assert len(set(options.key_types)) == len(options.key_types)


# --- plain known_hosts lines, as the lab writes them ----------------------------------------

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAE4yampipZdJhMYYJmQvLaMu9Ks5a6BHgEtZaPxVlQt"


def test_known_hosts_line_brackets_a_non_default_port_and_drops_the_comment():
    line = known_hosts_line("127.0.0.1", 2201, f"{ED25519} root@vm\n")
    assert line == f"[127.0.0.1]:2201 {ED25519}"


def test_known_hosts_name_is_bare_on_port_22():
    assert known_hosts_name("127.0.0.5", 22) == "127.0.0.5"


def test_replace_known_host_replaces_only_that_hosts_line():
    old = "[127.0.0.1]:2201 ssh-ed25519 OLD\n[127.0.0.1]:2202 ssh-ed25519 BOB\n"
    new = replace_known_host(old, "127.0.0.1", 2201, "[127.0.0.1]:2201 ssh-ed25519 NEW")
    assert new == "[127.0.0.1]:2202 ssh-ed25519 BOB\n[127.0.0.1]:2201 ssh-ed25519 NEW\n"


def test_replace_known_host_handles_comma_separated_names_and_an_empty_file():
    old = "example.org,[127.0.0.1]:2201 ssh-ed25519 OLD\n"
    assert replace_known_host(old, "127.0.0.1", 2201, "L") == "L\n"
    assert replace_known_host("", "127.0.0.1", 2201, "L") == "L\n"


def test_replace_known_host_keeps_the_same_address_on_another_port():
    old = "[127.0.0.1]:22010 ssh-ed25519 OTHER\n"
    assert replace_known_host(old, "127.0.0.1", 2201, "L") == f"{old}L\n"
