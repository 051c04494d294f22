"""SSH to inventory hosts: the one place connections are built, with strict host-key checking.

A ``Remote`` wraps one Fabric ``Connection`` per host. Commands run on a single exec channel
each (script on stdin, so a batch of checks is one round trip); privileged commands go through
``sudo -n`` when the host has ``ansible_become: true``.
"""

import base64
import errno
import getpass
import hashlib
import shlex
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path

from . import ssh_config
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

    jump: "SshTarget | None" = None  # the hop this host is reached through (ProxyJump)
    jump_for: str | None = None  # set on a hop: the inventory host it leads to

    @classmethod
    def from_vars(cls, name: str, v: dict) -> "SshTarget":
        """Build from ``ansible_host/ansible_port/ansible_user/ansible_ssh_private_key_file``,
        then the user's SSH config for what they leave unset (``ssh_config``), as Ansible does;
        a ProxyJump from ``ansible_ssh_common_args`` or the config makes the ``jump`` chain."""
        config = ssh_config.lookup(str(v.get("ansible_host", name)))
        key = v.get("ansible_ssh_private_key_file")
        target = cls(
            host=name,
            address=config.address,
            port=v.get("ansible_port") or config.port or 22,
            user=v.get("ansible_user") or config.user or "root",
            key_file=Path(key).expanduser() if key else config.key_file,
            known_hosts=Path(
                v.get("ssh_known_hosts_file") or project_path(DEFAULT_KNOWN_HOSTS)
            ).expanduser(),
            become=bool(v.get("ansible_become", False)),
            timeout=v.get("ssh_connect_timeout") or config.timeout or DEFAULT_CONNECT_TIMEOUT,
        )
        spec = ssh_config.jump_from_common_args(v.get("ansible_ssh_common_args"), name)
        return replace(target, jump=jump_chain(spec or config.proxy_jump, target))

    @property
    def known_hosts_name(self) -> str:
        """The name OpenSSH and paramiko use in known_hosts: ``[addr]:port`` off port 22."""
        return known_hosts_name(self.address, self.port)


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


def jump_chain(spec: str | None, target: SshTarget, depth: int = 0) -> SshTarget | None:
    """The last hop of a ProxyJump ``spec`` (each hop holding the one before it in ``jump``),
    or None. A hop is looked up in the SSH config too; its own ProxyJump there leads further."""
    if not spec:
        return None
    if depth > ssh_config.MAX_HOPS:
        raise BadInput(
            f"{target.host}: ProxyJump loops (more than {ssh_config.MAX_HOPS} hops); fix the SSH config"
        )
    before = None
    for number, hop in enumerate(ssh_config.parse_jumps(spec, target.host)):
        config = ssh_config.lookup(hop.host)
        chain = before if number else jump_chain(config.proxy_jump, target, depth + 1)
        before = _hop_target(target, hop, config, chain)
    return before


def _hop_target(target: SshTarget, hop, config, before: SshTarget | None) -> SshTarget:
    """A jump host: its user, port and key from the hop or the config; with no IdentityFile of
    its own, the target's key (then the agent); its key checked in the target's known_hosts."""
    return SshTarget(
        host=f"{target.jump_for or target.host}: jump host {hop.host}",
        address=config.address,
        port=hop.port or config.port or 22,
        user=hop.user or config.user or getpass.getuser(),
        key_file=config.key_file or target.key_file,
        known_hosts=target.known_hosts,
        become=False,
        timeout=config.timeout or target.timeout,
        jump=before,
        jump_for=target.jump_for or target.host,
    )


def known_hosts_name(address: str, port: int) -> str:
    """How known_hosts names a host: ``[127.0.0.1]:2201``, or bare ``127.0.0.1`` on port 22."""
    return address if port == 22 else f"[{address}]:{port}"


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
        self._hops: list = []  # the jump hosts' connections, nearest first

    def __enter__(self) -> "Remote":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        """Connect and authenticate, or raise one ``ConnectError`` line saying why and what to do."""
        if self._connection is None:
            *self._hops, self._connection = open_chain(self.target)

    def close(self) -> None:
        """Close the connection (a later ``run`` opens a new one)."""
        for connection in [self._connection, *reversed(self._hops)]:
            if connection is not None:
                connection.close()
        self._connection, self._hops = None, []

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


def open_chain(target: SshTarget) -> list:
    """Open the jump hosts' connections, then the target's through the last of them (a
    ``direct-tcpip`` channel as its socket), each with our host-key policy; nearest hop first.

    Not Fabric's gateway: the one it builds from a ProxyJump adds unknown keys automatically.
    """
    if target.jump is None:
        return [_connect(target)]
    hops = open_chain(target.jump)
    try:
        return [*hops, _connect(target, sock=forwarded_channel(target, hops[-1]))]
    except BaseException:
        for hop in reversed(hops):
            hop.close()
        raise


def forwarded_channel(target: SshTarget, hop):
    """A channel from the open jump host connection ``hop`` to the target's sshd, or one
    ``ConnectError`` line."""
    try:
        return hop.client.get_transport().open_channel(
            "direct-tcpip", (target.address, target.port), ("", 0), timeout=target.timeout
        )
    except Exception as error:  # ChannelException (refused, prohibited), timeouts, EOF
        raise ConnectError(
            f"{target.host}: the jump host {target.jump.address}:{target.jump.port} cannot reach "
            f"{target.address}:{target.port} ({error or type(error).__name__}); check ansible_host "
            "and ansible_port, and that the jump host allows TCP forwarding"
        ) from None


def _connect(target: SshTarget, sock=None):
    """Open a Fabric Connection that trusts only the keys in ``target.known_hosts`` (over
    ``sock`` when a jump host forwards it)."""
    from fabric import Config, Connection

    _check_files(target)
    config = Config(lazy=True, runtime_ssh_path=None)
    config.load_ssh_configs = False  # the SSH config is read once, by ssh_config, not by Fabric
    connection = Connection(
        host=target.address,
        port=target.port,
        user=target.user,
        config=config,
        gateway=False,  # never Fabric's own: see open_chain
        connect_timeout=int(target.timeout),
        connect_kwargs={
            # no key file: no key_filename at all (Fabric cannot merge a None into its list)
            **({"key_filename": str(target.key_file)} if target.key_file else {}),
            **({"sock": sock} if sock is not None else {}),
            "allow_agent": target.key_file is None,
            "look_for_keys": target.key_file is None,
            "banner_timeout": target.timeout,
            "auth_timeout": target.timeout,
        },
    )
    from .host_keys import known_entries  # host_keys builds on this module's SshTarget

    known_entries(target)  # refuses a line paramiko would crash on, naming it
    connection.client.load_host_keys(str(target.known_hosts))
    connection.client.set_missing_host_key_policy(_RefuseUnknown(target))
    own = None
    try:
        if sock is None:  # ours, not paramiko's: with Nagle's algorithm off
            own = connection.connect_kwargs["sock"] = tcp_socket(target)
        connection.open()
    except Exception as error:  # paramiko and socket errors: one line each
        if own is not None:
            own.close()
        raise ConnectError(describe_connect_error(target, error)) from None
    return connection


def tcp_socket(target: SshTarget) -> socket.socket:
    """A TCP connection to the target's sshd with TCP_NODELAY set, as OpenSSH's ssh sets it.

    The key exchange, the authentication and each channel are small writes that wait for an
    answer; with Nagle's algorithm a write waits for the host's delayed ACK of the one before
    (40 ms on Linux): connecting and authenticating took 70 ms in the lab instead of 25.
    Addresses are tried and errors raised as paramiko's own ``SSHClient.connect`` does.
    """
    from paramiko.ssh_exception import NoValidConnectionsError

    found = socket.getaddrinfo(target.address, target.port, socket.AF_UNSPEC, socket.SOCK_STREAM)
    errors = {}
    for family, _, _, _, address in found:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(int(target.timeout))  # Fabric's connect_timeout
        try:
            sock.connect(address)
        except OSError as error:
            sock.close()
            if error.errno not in (errno.ECONNREFUSED, errno.EHOSTUNREACH):
                raise
            errors[address] = error
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise NoValidConnectionsError(errors)


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
            f"({key.get_name()} {fingerprint(key)}); if that is right, {self.fix()}"
        )

    def fix(self) -> str:
        if self.target.jump_for is None:
            return f"run `inv hosts.trust --host {self.target.host}`"
        return (  # a jump host is not in the inventory: hosts.trust cannot name it
            f"add it to {self.target.known_hosts} (`ssh-keyscan -p {self.target.port} "
            f"{self.target.address}` prints its line); nothing was written"
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
        settings = "ansible_user and ansible_ssh_private_key_file"
        if target.jump_for:
            settings = "the jump host's user (user@host in ProxyJump, or User) and IdentityFile"
        return f"{target.host}: authentication refused for {where}; check {settings}"
    if isinstance(error, paramiko.ssh_exception.NoValidConnectionsError | ConnectionRefusedError):
        return f"{target.host}: cannot reach {where}: connection refused; is the host up and sshd running?"
    if isinstance(error, socket.timeout | TimeoutError):
        return f"{target.host}: cannot reach {where}: timed out after {target.timeout:g} s"
    if isinstance(error, socket.gaierror):
        return f"{target.host}: cannot resolve {target.address}: {error.strerror}"
    return f"{target.host}: SSH to {where} failed: {type(error).__name__}: {error}"
