"""Where an in-process provisioning run spends its time on SSH: the connection, each channel
(one command, one round trip at the command level), and the network turns underneath.

A *network turn* is a switch on the socket from sending to receiving data: the number of
times the client waited for the host. It counts what the SSH protocol itself costs
(banner, key exchange, authentication, channel open, exec request) beside our two scripts.

    with SshTrace() as trace:
        provision_host(host)
    trace.summary()  # {"connect_s": 0.05, "channels": [...], "turns": 17, ...}
"""

import socket
import threading
import time

from mtls_deploy import connection


class _Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.turns = self.sent = self.received = 0
        self.waiting = False  # sent since the last receive

    def on_send(self, n: int) -> None:
        with self.lock:
            self.sent += n
            self.waiting = self.waiting or n > 0

    def on_receive(self, n: int) -> None:
        with self.lock:
            self.received += n
            if n and self.waiting:
                self.turns += 1
                self.waiting = False


class SshTrace:
    """Patch, for the duration of a ``with``, the socket class paramiko connects with and the
    ``Remote`` methods that connect and run commands; record what they cost."""

    def __init__(self):
        self.counter = _Counter()
        self.connect_s = 0.0
        self.connections = 0
        self.channels: list[dict] = []

    def __enter__(self) -> "SshTrace":
        counter, trace = self.counter, self
        self._saved = (socket.socket, connection.Remote.open, connection.Remote.run)
        base_socket, base_open, base_run = self._saved

        class CountingSocket(base_socket):
            def send(self, data, *args):
                n = super().send(data, *args)
                counter.on_send(n)
                return n

            def sendall(self, data, *args):
                super().sendall(data, *args)
                counter.on_send(len(data))

            def recv(self, size, *args):
                data = super().recv(size, *args)
                counter.on_receive(len(data))
                return data

        def timed_open(remote):
            if remote._connection is not None:
                return base_open(remote)
            start = time.perf_counter()
            base_open(remote)
            trace.connect_s += time.perf_counter() - start
            trace.connections += 1

        def timed_run(remote, command, **options):
            remote.open()
            start, turns = time.perf_counter(), counter.turns
            result = base_run(remote, command, **options)
            stdin = options.get("stdin", b"").decode(errors="replace")
            trace.channels.append({
                "what": _first_command(stdin or command),
                "seconds": round(time.perf_counter() - start, 4),
                "turns": counter.turns - turns,
            })  # fmt: skip
            return result

        socket.socket = CountingSocket
        connection.Remote.open, connection.Remote.run = timed_open, timed_run
        return self

    def __exit__(self, *exc) -> None:
        socket.socket, connection.Remote.open, connection.Remote.run = self._saved

    def summary(self) -> dict:
        return {
            "connect_s": round(self.connect_s, 4),
            "connections": self.connections,
            "channels": self.channels,
            "turns": self.counter.turns,
            "bytes_sent": self.counter.sent,
            "bytes_received": self.counter.received,
        }


LABELS = (
    ("apt-get", "packages"),
    ("@@resources", "facts (system and resources)"),  # facts.gather_script
    ("os-release", "system facts"),
    ("stat -c", "resource facts"),
    ("umask 077", "apply (files, services, handlers)"),  # apply.build_script's first line
)


def _first_command(script: str) -> str:
    """A short label for a script: what it is for, else its first line that is a command."""
    for needle, label in LABELS:
        if needle in script:
            return label
    for line in script.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and line not in ("set -e", "set -eu"):
            return line[:40]
    return script[:40]
