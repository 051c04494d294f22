"""The user's SSH setup: ``~/.ssh/config`` (read with paramiko's ``SSHConfig``) and the
``ansible_ssh_common_args`` an Ansible inventory carries, merged as Ansible merges them: a
variable set for the host wins over the config. Only what we honour is read; every other option
that applies to a host is named in one warning line per run, never dropped silently.
"""

import os
import shlex
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .errors import BadInput

CONFIG_ENV = "MTLS_DEPLOY_SSH_CONFIG"  # a config file to read instead of ~/.ssh/config
HONOURED = ("hostname", "user", "port", "identityfile", "proxyjump", "connecttimeout")
MAX_HOPS = 8  # a ProxyJump chain longer than this is a loop in the config
_warned: set[str] = set()  # options already named in a warning this run


@dataclass(frozen=True)
class HostSettings:
    """What the SSH config says about one name, the options we honour only."""

    address: str
    port: int | None = None
    user: str | None = None
    key_file: Path | None = None
    proxy_jump: str | None = None
    timeout: float | None = None


def config_path() -> Path | None:
    """``$MTLS_DEPLOY_SSH_CONFIG`` if set (empty: read none), else ``~/.ssh/config`` when it exists."""
    chosen = os.environ.get(CONFIG_ENV)
    if chosen is not None:
        return Path(chosen).expanduser() if chosen else None
    default = Path("~/.ssh/config").expanduser()
    return default if default.is_file() else None


def lookup(name: str) -> HostSettings:
    """The honoured settings for ``name`` in the user's SSH config (just ``name`` without one);
    options we do not honour are named in a warning, once per run."""
    path = config_path()
    found = _parsed(path, _mtime(path)).lookup(name) if path else {"hostname": name}
    warn_ignored(sorted(key for key in found if key not in HONOURED), f"{path}")
    return HostSettings(
        address=found.get("hostname", name),
        port=_number(found, "port", int, path),
        user=found.get("user"),
        key_file=_first_key(found.get("identityfile")),
        proxy_jump=found.get("proxyjump"),
        timeout=_number(found, "connecttimeout", float, path),
    )


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError as error:
        raise BadInput(
            f"cannot read the SSH config {path}: {error.strerror}; fix the file or set "
            f"{CONFIG_ENV} to another (empty: none)"
        ) from None


@cache
def _parsed(path: Path, mtime: float):
    """The parsed config (read again when the file changes)."""
    import paramiko

    try:
        return paramiko.SSHConfig.from_path(str(path))
    except (
        OSError,
        UnicodeDecodeError,
        ValueError,
        paramiko.ssh_exception.ConfigParseError,
    ) as error:
        raise BadInput(
            f"cannot read the SSH config {path}: {error}; fix the file or set {CONFIG_ENV} "
            "to another (empty: none)"
        ) from None


def _number(found: dict, key: str, kind, path) -> int | float | None:
    if key not in found:
        return None
    try:
        return kind(found[key])
    except ValueError:
        raise BadInput(
            f"SSH config {path}: {key} {found[key]!r} is not a number; fix that line"
        ) from None


def _first_key(files: list[str] | None) -> Path | None:
    """The first IdentityFile (paramiko has expanded ``~`` and tokens already)."""
    return Path(files[0]).expanduser() if files else None


def warn_ignored(options: list[str], where: str) -> None:
    """One line on stderr naming the options we do not honour, each named once per run."""
    new = [option for option in options if option not in _warned]
    if new:
        _warned.update(new)
        print(
            f"warning: SSH options not honoured, ignored: {', '.join(new)} (in {where}); "
            "mtls-deploy reads only HostName, User, Port, IdentityFile, ProxyJump, ConnectTimeout "
            "and checks host keys in its own known_hosts file",
            file=sys.stderr,
        )


def jump_from_common_args(args: str | None, host: str) -> str | None:
    """The ProxyJump in ``ansible_ssh_common_args`` (``-o ProxyJump=bastion`` or ``-J bastion``);
    other options are named in a warning. None when the string sets no jump.

    Example: ``jump_from_common_args("-o ProxyJump=deploy@10.0.0.1:2222", "api1")`` -> ``"deploy@10.0.0.1:2222"``
    """
    words = _split(args, host) if args else []
    jump, ignored = None, []
    while words:
        word = words.pop(0)
        option, value = _option(word, words, host)
        if option.lower() == "proxyjump":
            jump = value
        else:
            ignored.append(f"{option}={value}" if value else option)
    warn_ignored(ignored, f"ansible_ssh_common_args of {host}")
    return jump


def _split(args: str, host: str) -> list[str]:
    try:
        return shlex.split(args)
    except ValueError as error:
        raise BadInput(
            f"{host}: ansible_ssh_common_args {args!r} cannot be read ({error}); fix its quoting"
        ) from None


def _option(word: str, rest: list[str], host: str) -> tuple[str, str]:
    """(option, value) of one ssh argument: ``-J x`` is ProxyJump; ``-o K=V``/``-o "K V"``."""
    if word in ("-J", "-o") or word.startswith(("-J", "-o")):
        value = word[2:] or (rest.pop(0) if rest else "")
        if not value:
            raise BadInput(
                f"{host}: ansible_ssh_common_args: {word} needs a value; write {word} VALUE"
            )
        if word.startswith("-J"):
            return "ProxyJump", value
        key, _, setting = value.replace("=", " ", 1).partition(" ")
        return key, setting.strip()
    return word, ""


@dataclass(frozen=True)
class JumpHop:
    """One ProxyJump hop as written: ``[user@]host[:port]``."""

    user: str | None
    host: str
    port: int | None


def parse_jumps(spec: str, where: str) -> list[JumpHop]:
    """``"a,deploy@b:2222"`` -> hops in the order they are reached; ``"none"`` -> no hop."""
    if spec.strip().lower() == "none":
        return []
    hops = [_parse_hop(part.strip(), where) for part in spec.split(",")]
    if len(hops) > MAX_HOPS:
        raise BadInput(f"{where}: ProxyJump {spec!r} has more than {MAX_HOPS} hops; shorten it")
    return hops


def _parse_hop(text: str, where: str) -> JumpHop:
    text = text.removeprefix("ssh://")
    user, _, rest = text.rpartition("@")
    host, port = rest, None
    if rest.startswith("["):  # [v6]:port
        host, _, tail = rest[1:].partition("]")
        port = tail.removeprefix(":") or None
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    bad_port = port is not None and not (port.isdigit() and 0 < int(port) < 65536)
    if not host or bad_port or any(c.isspace() for c in text):
        raise BadInput(
            f"{where}: ProxyJump hop {text!r} is not [user@]host[:port]; fix the ProxyJump"
        )
    return JumpHop(user or None, host, int(port) if port else None)
