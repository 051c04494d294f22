"""SSH to inventory hosts: the one place connections are built, with strict host-key checking.

A ``Remote`` wraps one Fabric ``Connection`` per host. Commands run on a single exec channel
each (script on stdin, so a batch of checks is one round trip); privileged commands go through
``sudo -n`` when the host has ``ansible_become: true``.
"""

import base64
import hashlib
import re
import shlex
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import BadInput, UserError
from .project import project_path

DEFAULT_KNOWN_HOSTS = "inventory/known_hosts"  # in the project directory (project.py)
DEFAULT_CONNECT_TIMEOUT = 10


class ConnectError(UserError):
    """The host could not be reached, or refused us, or offered a key we don't trust."""


class RemoteCommandError(UserError):
    """A remote command exited non-zero."""


@dataclass(frozen=True)
class SshTarget:
    """Where and how to log in, read from a host's inventory vars."""

    host: str
    address: str
    port: int
    user: str
    key_file: Path | None
    known_hosts: Path
    become: bool
    timeout: float

    @classmethod
    def from_vars(cls, name: str, v: dict) -> "SshTarget":
        """Build from ``ansible_host/ansible_port/ansible_user/ansible_ssh_private_key_file``."""
        key = v.get("ansible_ssh_private_key_file")
        return cls(
            host=name,
            address=v.get("ansible_host", name),
            port=v.get("ansible_port", 22),
            user=v.get("ansible_user") or "root",
            key_file=Path(key).expanduser() if key else None,
            known_hosts=Path(
                v.get("ssh_known_hosts_file") or project_path(DEFAULT_KNOWN_HOSTS)
            ).expanduser(),
            become=bool(v.get("ansible_become", False)),
            timeout=v.get("ssh_connect_timeout", DEFAULT_CONNECT_TIMEOUT),
        )

    @property
    def known_hosts_name(self) -> str:
        """The name OpenSSH and paramiko use in known_hosts: ``[addr]:port`` off port 22."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


@dataclass(frozen=True)
class CommandResult:
    """What a remote command printed and how it exited."""

    stdout: str
    stderr: str
    exit_status: int

    @property
    def ok(self) -> bool:
        """Whether the command exited 0."""
        return self.exit_status == 0


def fingerprint(key) -> str:
    """OpenSSH's SHA256 fingerprint of a paramiko public key: ``SHA256:abc...``."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class Remote:
    """One SSH connection to one host. Counts channels so benchmarks can report round trips.

    Example::

        with Remote(target) as remote:
            print(remote.run("uname -r").stdout)
    """

    def __init__(self, target: SshTarget):
        self.target = target
        self.channels = 0
        self._connection = None

    def __enter__(self) -> "Remote":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        """Connect and authenticate, or raise one ``ConnectError`` line saying why and what to do."""
        if self._connection is None:
            self._connection = _connect(self.target)

    def close(self) -> None:
        """Close the connection (a later ``run`` opens a new one)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def run(
        self,
        command: str,
        *,
        sudo: bool = False,
        stdin: bytes = b"",
        check: bool = False,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run ``command`` with ``sh -c`` (as root through sudo when ``sudo``), feeding ``stdin``."""
        self.open()
        channel = self._connection.client.get_transport().open_session(timeout=self.target.timeout)
        self.channels += 1
        channel.exec_command(self.wrap(command, sudo))
        result = _communicate(channel, stdin, timeout)
        if check and not result.ok:
            detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise RemoteCommandError(
                f"{self.target.host}: `{_short(command)}` failed "
                f"(exit {result.exit_status}): {detail[0]}"
            )
        return result

    def run_script(
        self, script: str, *, sudo: bool = False, check: bool = False, timeout: float | None = None
    ) -> CommandResult:
        """Run a whole shell script in one round trip: ``sh -s`` reading it from stdin."""
        return self.run("sh -s", sudo=sudo, stdin=script.encode(), check=check, timeout=timeout)

    def wrap(self, command: str, sudo: bool) -> str:
        """The command line sent to the host: ``sudo -n`` only when needed and allowed."""
        if not sudo or self.target.user == "root":
            return f"sh -c {shlex.quote(command)}"
        if not self.target.become:
            raise UserError(
                f"{self.target.host}: this step needs root, but {self.target.user} may not use "
                "sudo here; set ansible_become: true for this host (with passwordless sudo)"
            )
        return f"sudo -n -- sh -c {shlex.quote(command)}"

    def sftp(self):
        """An SFTP session on this connection (counts as one channel)."""
        self.open()
        self.channels += 1
        return self._connection.sftp()


def _short(command: str) -> str:
    first = command.strip().splitlines()[0] if command.strip() else command
    return first if len(first) <= 60 else first[:57] + "..."


def _communicate(channel, stdin: bytes, timeout: float | None) -> CommandResult:
    """Send stdin, then read stdout and stderr to their end, then the exit status.

    sshd may send the exit status before the last output (it reports the child's exit as soon
    as it sees it), so the end of the output is its EOF, never the status.
    """
    if stdin:
        channel.sendall(stdin)
    channel.shutdown_write()
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + timeout if timeout else None
    channel.settimeout(0.05)
    while _drain(channel, out, err):
        if deadline and time.monotonic() > deadline:
            channel.close()
            return CommandResult(out.decode(errors="replace"), "timed out", 124)
    status = channel.recv_exit_status()  # -1 when the connection dropped without one
    while channel.recv_stderr_ready():
        err += channel.recv_stderr(65536)
    channel.close()
    return CommandResult(out.decode(errors="replace"), err.decode(errors="replace"), status)


def _drain(channel, out: bytearray, err: bytearray) -> bool:
    """Read what has arrived; False once stdout reached its end (EOF or a closed channel)."""
    while channel.recv_stderr_ready():
        err += channel.recv_stderr(65536)
    try:
        chunk = channel.recv(65536)
    except TimeoutError:
        return True
    out += chunk
    return bool(chunk)


def _connect(target: SshTarget):
    """Open a Fabric Connection that trusts only the keys in ``target.known_hosts``."""
    from fabric import Config, Connection

    _check_files(target)
    config = Config(lazy=True, runtime_ssh_path=None)
    config.load_ssh_configs = False  # the user's ~/.ssh/config must not change what we do
    connection = Connection(
        host=target.address,
        port=target.port,
        user=target.user,
        config=config,
        connect_timeout=int(target.timeout),
        connect_kwargs={
            # no key file: no key_filename at all (Fabric cannot merge a None into its list)
            **({"key_filename": str(target.key_file)} if target.key_file else {}),
            "allow_agent": target.key_file is None,
            "look_for_keys": target.key_file is None,
            "banner_timeout": target.timeout,
            "auth_timeout": target.timeout,
        },
    )
    known_entries(target)  # refuses a line paramiko would crash on, naming it
    connection.client.load_host_keys(str(target.known_hosts))
    connection.client.set_missing_host_key_policy(_RefuseUnknown(target))
    try:
        connection.open()
    except Exception as error:  # paramiko and socket errors: one line each
        raise ConnectError(describe_connect_error(target, error)) from None
    return connection


def _check_files(target: SshTarget) -> None:
    if target.key_file and not target.key_file.is_file():
        raise ConnectError(
            f"{target.host}: SSH key file {target.key_file} does not exist; fix "
            "ansible_ssh_private_key_file (for the lab, run `inv lab.up`)"
        )
    if not target.known_hosts.is_file():
        raise ConnectError(
            f"{target.host}: known_hosts file {target.known_hosts} does not exist; "
            f"run `inv hosts.trust --host {target.host}` (for the lab, `inv lab.up`)"
        )


class _RefuseUnknown:
    """paramiko policy: an unknown host key is refused, showing its fingerprint and the fix."""

    def __init__(self, target: SshTarget):
        self.target = target

    def missing_host_key(self, client, hostname, key):
        raise ConnectError(
            f"{self.target.host}: unknown host key for {hostname} "
            f"({key.get_name()} {fingerprint(key)}); if that is right, run "
            f"`inv hosts.trust --host {self.target.host}`"
        )


def describe_connect_error(target: SshTarget, error: Exception) -> str:
    """One line for each way a connection fails: what happened and what to do."""
    import paramiko

    where = f"{target.user}@{target.address}:{target.port}"
    if isinstance(error, ConnectError):
        return str(error)
    if isinstance(error, paramiko.BadHostKeyException):
        return (
            f"{target.host}: HOST KEY CHANGED for {target.known_hosts_name}: offered "
            f"{error.key.get_name()} {fingerprint(error.key)}, expected {fingerprint(error.expected_key)}"
            f" (in {target.known_hosts}); if the host was rebuilt, check the new fingerprint out of "
            f"band, then run `inv hosts.trust --host {target.host} --replace`"
        )
    if isinstance(error, paramiko.AuthenticationException):
        return (
            f"{target.host}: authentication refused for {where}; check ansible_user and "
            "ansible_ssh_private_key_file"
        )
    if isinstance(error, paramiko.ssh_exception.NoValidConnectionsError | ConnectionRefusedError):
        return f"{target.host}: cannot reach {where}: connection refused; is the host up and sshd running?"
    if isinstance(error, socket.timeout | TimeoutError):
        return f"{target.host}: cannot reach {where}: timed out after {target.timeout:g} s"
    if isinstance(error, socket.gaierror):
        return f"{target.host}: cannot resolve {target.address}: {error.strerror}"
    return f"{target.host}: SSH to {where} failed: {type(error).__name__}: {error}"


# --- host keys: what the known_hosts file says, what the host offers, what hosts.trust does ---

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
    """The host key the server offers, without logging in (for ``inv hosts.trust``).

    ``prefer``: key types to ask for first (those already recorded, as ssh and paramiko do),
    so a host with several keys shows the one we know rather than look changed.
    """
    import paramiko

    transport = None
    try:
        sock = socket.create_connection((target.address, target.port), timeout=target.timeout)
        transport = paramiko.Transport(sock)
        _prefer_key_types(transport.get_security_options(), prefer)
        transport.start_client(timeout=target.timeout)
        return transport.get_remote_server_key()
    except Exception as error:
        raise ConnectError(describe_connect_error(target, error)) from None
    finally:
        if transport is not None:
            transport.close()


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
