"""Variable schemas: what each variable may hold, checked before anything connects.

A role declares every variable it reads beside its default, in ``roles/<role>/schema.yml``
(in the spirit of Ansible's ``meta/argument_specs.yml``)::

    client_max_body_size:
      type: str
      pattern: "[0-9]{1,9}[kKmMgG]?"
      format: a size such as 1m, 512k or 10M
      description: largest request body the site accepts

Keys of a spec: ``type`` (``TYPES`` below), ``pattern`` (a full match), ``format`` (the
pattern in words, for the error), ``choices``, ``min``/``max``, ``max_length``, ``elements``
(a list's item spec), ``options`` (a dict's specs by key), ``keys`` and ``values`` (a ``map``'s
specs: any number of keys, e.g. environment variables), ``alternatives`` (a ``one_of``'s specs,
the first that accepts the value wins), ``required``, ``description``; or
only ``declared_by: <role>``, for a variable another role owns. A ``str`` must have a pattern or choices: nothing from the
inventory reaches a config file or a command unless its characters are spelled out.

This module knows no role by name: it reads the schema of whatever role it is asked about.
"""

import ipaddress
import re
from functools import cache
from pathlib import Path

from . import role_loader
from .errors import BadInput

SPEC_KEYS = {
    "type", "pattern", "format", "choices", "min", "max", "max_length", "elements", "options",
    "required", "description", "declared_by", "keys", "values", "alternatives",
}  # fmt: skip
DNS_NAME = re.compile(
    r"(?=.{1,253}\Z)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
)
# Absolute and normalised: "/" or "/name/name", names of safe characters, never "." or "..".
PATH = re.compile(r"(?=.{1,255}\Z)(/|(/(?!\.\.?(/|\Z))[A-Za-z0-9._+-]{1,255})+)")
USER = re.compile(r"[a-z_][a-z0-9_-]{0,30}")  # systemd: at most 31 (UT_NAMESIZE - 1)
UNIT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
NEEDS = {
    "list": ("elements",),
    "dict": ("options",),
    "map": ("keys", "values"),
    "one_of": ("alternatives",),
    "int": ("min", "max"),
    "float": ("min", "max"),
}
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SHOWN = 60  # characters of a bad value quoted in an error


def shown(value) -> str:
    """``repr(value)``, cut short: a refused value may be a whole injected config block."""
    text = repr(value)
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def _number(kind: str, value, spec: dict, types: tuple, what: str):
    if isinstance(value, bool) or not isinstance(value, types):
        raise ValueError(f"must be {what}, not {shown(value)}")
    low, high = spec["min"], spec["max"]
    if not low <= value <= high:
        raise ValueError(f"{kind}{value} is out of range ({low}-{high})")
    return value


def _int(value, spec):
    return _number("", value, spec, (int,), "an integer")


def _float(value, spec):
    return _number("", value, spec, (int, float), "a number")


def _port(value, spec):
    return _number("port ", value, {"min": 1, "max": 65535}, (int,), "a port number")


def _bool(value, spec):
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {shown(value)}")
    return value


def _choice(value, choices: list):
    if value is True and "on" in choices:  # YAML 1.1 reads a bare `on` as true
        return "on"
    if value not in choices:
        raise ValueError(f"must be one of {', '.join(map(str, choices))}, not {shown(value)}")
    return value


def _str(value, spec):
    if "choices" in spec:
        return _choice(value, spec["choices"])
    if not isinstance(value, str) or not re.fullmatch(spec["pattern"], value):
        what = spec.get("format") or f"text matching {spec['pattern']}"
        raise ValueError(f"{shown(value)} is not {what}")
    return value


def _matching(regex: re.Pattern, what: str, lower: bool = False):
    def checked(value, spec):
        text = value.lower() if lower and isinstance(value, str) else value
        if not isinstance(text, str) or not regex.fullmatch(text):
            raise ValueError(f"{shown(value)} is not {what}")
        return text

    return checked


_dns_name = _matching(DNS_NAME, "a valid DNS name (letters, digits, '-' and '.')", lower=True)


def _ip(value, spec):
    # ipaddress accepts an IPv6 scope id ("fe80::1%eth0") with any characters after the %.
    if isinstance(value, str) and "%" in value:
        raise ValueError(f"{shown(value)} has an IPv6 scope id ('%'): give the address alone")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{shown(value)} is not an IP address") from None


def _listen(value, spec):
    return "*" if value == "*" else _ip(value, spec)


def _address(value, spec):
    try:
        return _ip(value, spec)
    except ValueError:
        return _dns_name(value, spec)


def _local_path(value, spec):
    if not isinstance(value, str) or CONTROL.search(value):
        raise ValueError(f"must be a file path on this machine (one line), not {shown(value)}")
    return value


def _duration(value, spec):
    from .durations import parse_duration

    parse_duration(value)  # ValueError in words
    return value


def _list(value, spec):
    if not isinstance(value, list):
        raise ValueError(f"must be a list, not {shown(value)}")
    return [check_value(item, spec["elements"]) for item in value]


def _dict(value, spec):
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping, not {shown(value)}")
    options = spec["options"]
    unknown = sorted(set(map(str, value)) - set(options))
    if unknown:
        raise ValueError(f"has no key {unknown[0]!r} (keys: {', '.join(options)})")
    return {key: _nested(key, item, options[key]) for key, item in value.items()}


def _map(value, spec):
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping, not {shown(value)}")
    for key in value:
        try:
            check_value(key, spec["keys"])
        except ValueError as problem:
            raise ValueError(f"has a bad key: {problem}") from None
    return {key: _nested(key, item, spec["values"]) for key, item in value.items()}


def _one_of(value, spec):
    for alternative in spec["alternatives"]:
        try:
            return check_value(value, alternative)
        except ValueError:
            continue
    raise ValueError(f"must be {describe(spec)}, not {shown(value)}")


def _nested(key: str, value, spec: dict):
    try:
        return check_value(value, spec)
    except ValueError as problem:
        raise ValueError(f".{key} {problem}") from None


TYPES = {
    "bool": _bool,
    "int": _int,
    "float": _float,
    "port": _port,
    "str": _str,
    "dns_name": _dns_name,
    "ip": _ip,
    "listen": _listen,
    "address": _address,
    "path": _matching(
        PATH,
        "an absolute, normalised path of at most 255 characters ('/' then names of letters, "
        "digits, '.', '_', '+' and '-'; no '.' or '..', no '//', no trailing '/')",
    ),
    "user": _matching(USER, "a user or group name (a-z, 0-9, '_' and '-', at most 31)"),
    "unit": _matching(UNIT, "a systemd unit name (letters, digits, '_', '.' and '-')"),
    "local_path": _local_path,
    "duration": _duration,
    "list": _list,
    "dict": _dict,
    "map": _map,
    "one_of": _one_of,
}


def check_value(value, spec: dict):
    """``value`` normalised (``on`` for YAML's true, a DNS name lower-cased, an IP address in
    its short form), or ``ValueError`` with the problem in words.

    Example: ``check_value("1m", {"type": "str", "pattern": "[0-9]+[km]?"})`` -> ``"1m"``
    """
    checked = TYPES[spec["type"]](value, spec)
    if isinstance(checked, str) and len(checked) > spec.get("max_length", len(checked)):
        raise ValueError(f"{shown(value)} is longer than {spec['max_length']} characters")
    return checked


WORDS = {
    "bool": "true or false",
    "port": "a port (1-65535)",
    "dns_name": "a DNS name",
    "ip": "an IP address",
    "listen": "`*` or an IP address",
    "address": "an IP address or a DNS name",
    "path": "an absolute path",
    "user": "a user name",
    "unit": "a unit name",
    "local_path": "a path on the control machine",
    "duration": "a duration such as 365d, 12h, 10m or 90s",
}


def describe(spec: dict) -> str:
    """What a spec accepts, in a few words, for a role's README.

    Example: ``describe({"type": "int", "min": 1, "max": 4})`` -> ``"an integer, 1-4"``
    """
    kind = spec["type"]
    if "choices" in spec:
        return "one of " + ", ".join(f"`{c}`" for c in spec["choices"])
    if kind in ("int", "float"):
        return f"{'an integer' if kind == 'int' else 'a number'}, {spec['min']}-{spec['max']}"
    if kind == "list":
        return f"a list of: {describe(spec['elements'])}"
    if kind == "dict":
        return "a mapping of " + ", ".join(f"`{key}`" for key in spec["options"])
    if kind == "map":
        return f"a mapping of {describe(spec['keys'])} to {describe(spec['values'])}"
    if kind == "one_of":
        return " or ".join(describe(alternative) for alternative in spec["alternatives"])
    words = spec.get("format") or WORDS.get(kind) or f"text matching `{spec['pattern']}`"
    return words + (f", at most {spec['max_length']} characters" if "max_length" in spec else "")


def validate_spec(name: str, spec, source: str) -> None:
    """A schema entry that the checker understands, or one line naming the schema file."""
    problem = _spec_problem(spec)
    if problem:
        raise BadInput(f"{source}: {name}: {problem}")
    nested_specs = [spec.get("elements"), spec.get("keys"), spec.get("values")]
    nested_specs += [*(spec.get("options") or {}).values(), *(spec.get("alternatives") or [])]
    for nested in nested_specs:
        if nested is not None:
            validate_spec(name, nested, source)


def _spec_problem(spec) -> str | None:
    if not isinstance(spec, dict):
        return "a variable's spec must be a mapping"
    if set(spec) == {"declared_by"}:
        return None
    if set(spec) - SPEC_KEYS or spec.get("type") not in TYPES:
        return f"unknown type or key in {sorted(spec)} (types: {', '.join(TYPES)})"
    if spec["type"] == "str" and not ({"pattern", "choices"} & set(spec)):
        return "type str needs a pattern or choices"
    try:
        re.compile(spec.get("pattern", ""))
    except re.error as error:
        return f"pattern {spec['pattern']!r} is not a regular expression: {error}"
    missing = [key for key in NEEDS.get(spec["type"], ()) if key not in spec]
    return f"type {spec['type']} needs {' and '.join(missing)}" if missing else None


def _declared_in(role: str) -> dict:
    """``roles/<role>/schema.yml`` as written (none: no variable), each spec checked."""
    return _declared_at(role_loader.schema_file(role))


@cache
def _declared_at(path: Path) -> dict:
    from .files import parse_yaml

    if not path.is_file():
        return {}
    specs = parse_yaml(path.read_text()) or {}
    if not isinstance(specs, dict):
        raise BadInput(f"{path}: must map each variable to its spec")
    for name, spec in specs.items():
        validate_spec(name, spec, str(path))
    return specs


def role_schema(role: str) -> dict:
    """``roles/<role>/schema.yml`` as ``{variable: spec}``, each spec checked, ``declared_by``
    resolved.

    Example: ``role_schema("web")["client_max_body_size"]["type"]`` -> ``"str"``
    """
    return {name: resolve(name, spec) for name, spec in _declared_in(role).items()}


def resolve(name: str, spec: dict) -> dict:
    """The spec itself, or the owning role's when it says ``declared_by: <role>`` (which must
    declare it itself: no chains, so no cycles)."""
    if "declared_by" not in spec:
        return spec
    owned = _declared_in(spec["declared_by"])
    if name not in owned or "declared_by" in owned[name]:
        raise BadInput(f"{name}: declared_by {spec['declared_by']}, which does not declare it")
    return owned[name]


def all_roles() -> list[str]:
    """Every role, by name (project roles and the package's)."""
    return role_loader.all_roles()


def check_layers(host, specs: dict) -> None:
    """Check and normalise, in every layer of ``host`` that sets it, each variable of
    ``specs``; a bad value is one line: host, variable, value, the file that set it, the fix."""
    for layer in host.layers:
        for name in specs.keys() & layer.values.keys():
            try:
                layer.values[name] = check_value(layer.values[name], specs[name])
            except ValueError as problem:
                separator = "" if str(problem).startswith(".") else " "
                raise BadInput(
                    f"{host.name}: {name}{separator}{problem} (set in {layer.source})"
                ) from None


def one_edit_apart(a: str, b: str) -> bool:
    """True when ``b`` is ``a`` with one character added, removed, replaced, or two
    neighbours swapped (Damerau-Levenshtein distance 1)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = next((k for k in range(len(a)) if a[k] != b[k]), len(a))
    if len(a) < len(b):
        return a[i:] == b[i + 1 :]
    swapped = i + 1 < len(a) and a[i] == b[i + 1] and a[i + 1] == b[i]
    return a[i + 1 :] == b[i + 1 :] or (swapped and a[i + 2 :] == b[i + 2 :])


def likely_typos(host, declared: set[str]) -> list[str]:
    """A warning per variable nothing declares but that is one edit away from one that is
    declared (``client_verfiy``); Ansible's own and other tools' variables pass silently."""
    found = []
    for layer in host.layers:
        for name in layer.values.keys() - declared:
            if str(name).startswith("ansible_"):
                continue
            near = sorted(d for d in declared if one_edit_apart(str(name), d))
            if near:
                found.append(
                    f"warning: {name} is not a variable any role or the engine reads; "
                    f"did you mean {near[0]}? (set in {layer.source})"
                )
    return found
