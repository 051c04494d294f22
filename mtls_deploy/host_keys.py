"""Host keys: what the known_hosts file says, what a host offers, and what ``inv hosts.trust``
records. The one place that reads and writes known_hosts lines (the lab's too)."""

import re
import socket

from .connection import (
    ConnectError,
    SshTarget,
    describe_connect_error,
    fingerprint,
    forwarded_channel,
    known_hosts_name,
    open_chain,
)
from .errors import BadInput, UserError

FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
# A recorded "ssh-rsa" key is fetched with SHA-2 signatures: OpenSSH no longer signs with SHA-1.
KEY_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256")}


class HostKeyRefused(BadInput):
    """``inv hosts.trust`` will not record the key a host offers (changed, or not the pinned one)."""


def parse_fingerprint(value: str) -> str:
    """``--fingerprint`` as OpenSSH prints it (``SHA256:`` and 43 base64 characters), or BadInput."""
    pinned = value.strip().rstrip("=")
    if not FINGERPRINT.fullmatch(pinned):
        raise BadInput(
            f"--fingerprint {value!r} is not a SHA256 host key fingerprint; give it as "
            "`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` prints it on the host: SHA256:<43 characters>"
        )
    return pinned


def known_entries(target: SshTarget) -> list[tuple[str, object]]:
    """Each line of the known_hosts file with its paramiko ``HostKeyEntry`` (None for a comment,
    a blank line or a key type paramiko does not know). A line nobody can read is refused: we
    could not honour it (an ``@revoked`` marker, a damaged key), so we do not guess."""
    path = target.known_hosts
    try:
        lines = path.read_text().splitlines() if path.exists() else []
    except (OSError, UnicodeDecodeError) as error:
        raise ConnectError(
            f"{target.host}: cannot read the known_hosts file {path}: {_reason(error)}; "
            "fix ssh_known_hosts_file or the file"
        ) from None
    return [(line, _parse_known_line(target, number, line)) for number, line in enumerate(lines, 1)]


def _parse_known_line(target: SshTarget, number: int, line: str):
    from paramiko.hostkeys import HostKeyEntry, InvalidHostKey

    text = line.strip()
    if not text or text.startswith("#"):
        return None
    try:
        if not text.startswith("@"):  # markers (@revoked, @cert-authority): see below
            return HostKeyEntry.from_line(text)
    except InvalidHostKey:
        pass
    raise ConnectError(
        f"{target.host}: line {number} of {target.known_hosts} is not a host key entry we can read "
        f"({text[:40]}...); fix or delete that line (markers such as @revoked are not supported)"
    )


def names_host(entry, name: str) -> bool:
    """Whether a known_hosts entry is for ``name``, written plainly or hashed (``|1|salt|hash``)."""
    return any(_is_name(written, name) for written in entry.hostnames)


def _is_name(written: str, name: str) -> bool:
    from paramiko.hostkeys import HostKeys

    if not written.startswith("|1|"):
        return written == name
    try:
        return HostKeys.hash_host(name, written) == written
    except Exception:  # a damaged salt: not this host (paramiko asserts on its length)
        return False


def known_keys(target: SshTarget) -> list:
    """Every key the known_hosts file records for this host, in file order."""
    name = target.known_hosts_name
    return [entry.key for _, entry in known_entries(target) if entry and names_host(entry, name)]


def decide_trust(target: SshTarget, known: list, offered, *, replace=False, pinned=None) -> str:
    """What ``inv hosts.trust`` does with the key a host offers, given the keys ``known`` for it.

    ``"known"``: already recorded, nothing to do. ``"new"``: nothing recorded for this host, so
    record it (trust on first use). ``"replace"``: the key changed and the operator vouched for
    the new one, with ``replace`` or with a ``pinned`` fingerprint it matches. Refused
    (``HostKeyRefused``): a key that is not the pinned one, or a changed key nobody vouched for.
    Example: ``decide_trust(target, [], key)`` -> ``"new"``
    """
    if pinned and fingerprint(offered) != pinned:
        raise HostKeyRefused(_not_pinned(target, offered, pinned))
    if not known:
        return "new"
    if any(key.asbytes() == offered.asbytes() for key in known):
        return "known"
    if replace or pinned:
        return "replace"
    raise HostKeyRefused(_changed(target, known, offered))


def _described(key) -> str:
    return f"{key.get_name()} {fingerprint(key)}"


def _not_pinned(target: SshTarget, offered, pinned: str) -> str:
    return (
        f"{target.host}: {target.known_hosts_name} offers {_described(offered)}, not the pinned "
        f"{pinned}; nothing written to {target.known_hosts}. Check the fingerprint you were given "
        "and the address: something else may be answering for this host"
    )


def _changed(target: SshTarget, known: list, offered) -> str:
    return (
        f"{target.host}: HOST KEY CHANGED for {target.known_hosts_name}: offered "
        f"{_described(offered)}, known {', '.join(map(_described, known))} "
        f"(in {target.known_hosts}); nothing written. If the host was rebuilt, check "
        f"{fingerprint(offered)} out of band (on its console: ssh-keygen -lf "
        f"/etc/ssh/ssh_host_*_key.pub), then run `inv hosts.trust --host {target.host} --replace`"
    )


def fetch_host_key(target: SshTarget, prefer: tuple[str, ...] = ()):
    """The host key the server offers, without logging in (for ``inv hosts.trust``); through
    its jump hosts (ProxyJump) if it has any, logged in to with their keys checked strictly.

    ``prefer``: key types to ask for first (those already recorded, as ssh and paramiko do),
    so a host with several keys shows the one we know rather than look changed.
    """
    import paramiko

    transport, hops = None, []
    try:
        hops = open_chain(target.jump) if target.jump else []  # their keys checked strictly
        transport = paramiko.Transport(_socket_to(target, hops))
        _prefer_key_types(transport.get_security_options(), prefer)
        transport.start_client(timeout=target.timeout)
        return transport.get_remote_server_key()
    except Exception as error:
        raise ConnectError(describe_connect_error(target, error)) from None
    finally:
        for opened in [transport, *reversed(hops)]:
            if opened is not None:
                opened.close()


def _socket_to(target: SshTarget, hops: list):
    """A TCP connection to the target's sshd, or a channel through the last jump host."""
    if hops:
        return forwarded_channel(target, hops[-1])
    return socket.create_connection((target.address, target.port), timeout=target.timeout)


def _prefer_key_types(options, prefer: tuple[str, ...]) -> None:
    wanted = [algorithm for t in prefer for algorithm in KEY_ALGORITHMS.get(t, (t,))]
    first = [t for t in dict.fromkeys(wanted) if t in options.key_types]
    options.key_types = first + [t for t in options.key_types if t not in first]


def trust_host(target: SshTarget, *, replace: bool = False, pinned: str | None = None) -> str:
    """Record the key the host offers in the known_hosts file, as ``decide_trust`` rules;
    the line to print, with the fingerprint. Refused keys raise ``HostKeyRefused``, nothing written.

    Example: ``trust_host(target)`` -> ``"trusted (first use): api1 [127.0.0.1]:2201 ssh-ed25519 SHA256:..."``
    """
    known = known_keys(target)
    offered = fetch_host_key(target, prefer=tuple(key.get_name() for key in known))
    action = decide_trust(target, known, offered, replace=replace, pinned=pinned)
    if action != "known":
        record_host_key(target, offered, replace=action == "replace")
    shown = f"{target.host} {target.known_hosts_name} {_described(offered)}"
    if action == "known":
        return f"already trusted: {shown}"
    if action == "new":
        return f"trusted (first use): {shown}, recorded in {target.known_hosts}"
    was = ", ".join(fingerprint(key) for key in known)
    return f"replaced: {shown} (was {was}) in {target.known_hosts}"


def record_host_key(target: SshTarget, key, *, replace: bool = False) -> None:
    """Add ``key`` for this host to the known_hosts file; ``replace`` first drops every key
    recorded for it (plain or hashed). Other hosts' lines and comments stay as they are."""
    from .files import atomic_write

    name = target.known_hosts_name
    entries = known_entries(target)
    lines = [_without(line, entry, name) if replace else line for line, entry in entries]
    lines = [line for line in lines if line is not None]
    lines.append(f"{name} {key.get_name()} {key.get_base64()}")
    try:
        target.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target.known_hosts, "\n".join(lines) + "\n", mode=0o644)
    except OSError as error:
        raise UserError(
            f"{target.host}: cannot write the known_hosts file {target.known_hosts}: "
            f"{_reason(error)}; fix ssh_known_hosts_file or the file's permissions"
        ) from None


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def _without(line: str, entry, name: str) -> str | None:
    """``line`` without ``name`` in its host list; None when no other host is left in it."""
    if entry is None or not names_host(entry, name):
        return line
    others = [written for written in entry.hostnames if not _is_name(written, name)]
    return ",".join(others) + " " + line.split(None, 1)[1] if others else None


def trust_targets(targets: list[SshTarget], *, replace=False, fingerprint=None):
    """``trust_host`` on each target in turn, yielding the line to print for each; stops at the
    first refusal. Input is checked before any connection: at least one host, and a pinned
    ``fingerprint`` only for one host (a pin is one key).

    Example: ``for line in trust_targets([target], fingerprint="SHA256:..."): print(line)``
    """
    if not targets:
        raise BadInput("--host names no host; give one or more inventory hosts, comma-separated")
    pinned = parse_fingerprint(fingerprint) if fingerprint else None
    if pinned and len(targets) > 1:
        raise BadInput(
            f"--fingerprint pins one host's key, but --host names {len(targets)} "
            f"({', '.join(t.host for t in targets)}); trust them one at a time"
        )
    for target in targets:
        yield trust_host(target, replace=replace, pinned=pinned)


# --- plain known_hosts lines (the lab writes its own file with these) ---------------------------


def known_hosts_line(address: str, port: int, host_key: str) -> str:
    """``"ssh-ed25519 AAAA... root@vm"`` -> ``"[127.0.0.1]:2201 ssh-ed25519 AAAA..."``."""
    key_type, key = host_key.split()[:2]
    return f"{known_hosts_name(address, port)} {key_type} {key}"


def replace_known_host(text: str, address: str, port: int, line: str) -> str:
    """known_hosts ``text`` with every line for ``address``:``port`` replaced by ``line``."""
    name = known_hosts_name(address, port)
    kept = [old for old in text.splitlines() if name not in old.split(" ", 1)[0].split(",")]
    return "\n".join([*kept, line]) + "\n"
