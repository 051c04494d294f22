"""The inventory variables this tool reads, their types, and checks that name the file at fault."""

import ipaddress
import re

from .errors import BadInput

HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


def _port(value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be a port number, not {value!r}")
    if not 1 <= value <= 65535:
        raise ValueError(f"port {value} is out of range (1-65535)")
    return value


def _boolean(value):
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {value!r}")
    return value


def _text(value):
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty string, not {value!r}")
    return value


def _hostname(value):
    if not isinstance(value, str) or not HOSTNAME.match(value.lower()):
        raise ValueError(f"{value!r} is not a valid DNS name (letters, digits, '-' and '.')")
    return value.lower()


def _ip(value):
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None


def _listen(value):
    return "*" if value == "*" else _ip(value)


def _address(value):
    try:
        return _ip(value)
    except ValueError:
        return _hostname(value)


def _list_of(check):
    def checked(value):
        if not isinstance(value, list):
            raise ValueError(f"must be a list, not {value!r}")
        return [check(item) for item in value]

    return checked


def _one_of(*choices):
    def checked(value):
        if value is True and "on" in choices:  # YAML 1.1 reads a bare `on` as true
            value = "on"
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    return checked


def _seconds(value):
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"must be a positive number of seconds, not {value!r}")
    return value


CHECKS = {
    "ansible_host": _address,
    "ansible_port": _port,
    "ansible_user": _text,
    "ansible_become": _boolean,
    "ansible_ssh_private_key_file": _text,
    "ssh_known_hosts_file": _text,
    "ssh_connect_timeout": _seconds,
    "server_name": _hostname,
    "server_aliases": _list_of(_hostname),
    "server_ip_addresses": _list_of(_ip),
    "https_port": _port,
    "https_listen": _listen,
    "client_verify": _one_of("on", "optional"),
    "backend": _one_of("php", "python"),
    "server_cert": _one_of("private", "files"),
    "pki_key_type": _one_of("ec", "rsa"),
    "lab": _boolean,
}


def check_types(host) -> None:
    """Check every known variable in every layer of ``host``, normalising in place.

    A bad value is one line naming the host, the variable, the file that set it and the fix.
    """
    for layer in host.layers:
        for name, check in CHECKS.items():
            if name not in layer.values:
                continue
            try:
                layer.values[name] = check(layer.values[name])
            except ValueError as problem:
                raise BadInput(f"{host.name}: {name} {problem} (set in {layer.source})") from None


def require(host, *names: str) -> dict:
    """The host's merged vars, or one clear error naming the first missing variable."""
    merged = host.vars
    for name in names:
        if merged.get(name) in (None, ""):
            raise BadInput(
                f"{host.name}: {name} is not set; set it in host_vars/{host.name}.yml "
                f"or in the group's group_vars"
            )
    return merged
