"""Ansible's host ranges and host patterns, read as Ansible reads them.

Ranges (in an inventory's ``hosts:``): ``api[01:20].example.com`` (zero-padded),
``web[a:c]``, ``db[1:10:2]`` (a step), several ranges in one name.

Patterns (``--host``, ``--group``, as ``ansible --limit`` reads them): names of hosts or groups,
``all``, globs (``api*``), regexes (``~api[0-9]+``), unions (``a:b``, ``a,b``), exclusions
(``api:!api3``) and intersections (``api:&web``), and Ansible's subscripts (``api[0]``,
``api[1:3]``, by position in the group). As in Ansible, every union is taken first, then every
``&``, then every ``!``, whatever their order in the pattern. Unlike Ansible, a plain name that
is neither a host nor a group is an error (Ansible warns and goes on), and so is a pattern that
matches no host.
"""

import fnmatch
import re
import string

from .errors import BadInput

RANGE = re.compile(r"\[([^\]]*)\]")
SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|(-?[0-9]+):(-?[0-9]*))\]$")
TERM = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")  # a ':'-separated term; [x:y] stays whole
GLOB_CHARS = ("*", "?", "[")
HOST_PORT = re.compile(r"((?:[^:\[\]]|\[[^\]]*\])+):([0-9]{1,5})")  # api[1:3]:2222
NUMBERED = re.compile(r"(\d+)")


# --- ranges ----------------------------------------------------------------------------------


def split_port(name: str) -> tuple[str, int | None]:
    """``("api1", 2222)`` for an inventory's ``api1:2222`` (Ansible's YAML plugin reads the port
    as ``ansible_port``); ``(name, None)`` without one. Example: ``split_port("db[1:2]:5")``
    -> ``("db[1:2]", 5)``"""
    found = HOST_PORT.fullmatch(name)
    return (found.group(1), int(found.group(2))) if found else (name, None)


def expand_range(name: str) -> list[str]:
    """Every host name a ranged name stands for, as Ansible expands it; ``[name]`` without one.

    Example: ``expand_range("api[01:03].x")`` -> ``["api01.x", "api02.x", "api03.x"]``
    """
    found = RANGE.search(name)
    if not found:
        return [name]
    head, tail = name[: found.start()], name[found.end() :]
    names = []
    for part in _range_items(found.group(1), name):
        names += expand_range(f"{head}{part}{tail}")
    return names


def _range_items(spec: str, name: str) -> list[str]:
    """The items of one ``[begin:end(:step)]``: letters or numbers, zero-padded like begin."""
    bounds = spec.split(":")
    if len(bounds) not in (2, 3) or not bounds[1]:
        raise BadInput(_range_error(name, "a range is [begin:end] or [begin:end:step]"))
    begin, end = bounds[0] or "0", bounds[1]
    step = _whole(bounds[2], name) if len(bounds) == 3 else 1
    if step < 1:
        raise BadInput(_range_error(name, "a range's step must be 1 or more"))
    if begin in string.ascii_letters and end in string.ascii_letters:
        return _letter_range(begin, end, step, name)
    return _number_range(begin, end, step, name)


def _letter_range(begin: str, end: str, step: int, name: str) -> list[str]:
    first, last = string.ascii_letters.index(begin), string.ascii_letters.index(end)
    if first > last:
        raise BadInput(_range_error(name, "a range's begin must not come after its end"))
    return list(string.ascii_letters[first : last + 1 : step])


def _number_range(begin: str, end: str, step: int, name: str) -> list[str]:
    width = len(begin) if begin.startswith("0") and len(begin) > 1 else 0
    if width and len(end) != width:
        raise BadInput(_range_error(name, "a zero-padded range needs begin and end of one width"))
    first, last = _whole(begin, name), _whole(end, name)
    if first > last:
        raise BadInput(_range_error(name, "a range's begin must not come after its end"))
    return [str(number).zfill(width) for number in range(first, last + 1, step)]


def _whole(text: str, name: str) -> int:
    if not text.isdigit():
        raise BadInput(_range_error(name, f"{text!r} is neither a number nor a single letter"))
    return int(text)


def _range_error(name: str, why: str) -> str:
    return f"host range {name!r}: {why} (e.g. api[01:20], web[a:c], db[1:10:2])"


# --- patterns --------------------------------------------------------------------------------


def natural_key(name: str) -> list:
    """Sort key putting ``api2`` before ``api10``."""
    return [int(part) if part.isdigit() else part for part in NUMBERED.split(name)]


def split_pattern(pattern: str) -> list[str]:
    """The terms of a pattern, as Ansible splits it: on commas if it has any, else on colons
    outside brackets. Example: ``split_pattern("api:!api3")`` -> ``["api", "!api3"]``"""
    terms = pattern.split(",") if "," in pattern else TERM.findall(pattern)
    return [term.strip() for term in terms if term.strip()]


def evaluate(patterns: list[str], hosts: list[str], groups: dict[str, list[str]], kind="host"):
    """The host names ``patterns`` select, in order: unions, then ``&`` terms, then ``!`` terms.

    Each pattern is split on its own (``["api:!api3", "bob"]``, as the command line's
    comma-separated names arrive). ``hosts``: every host name; ``groups``: members of each group
    (``all`` included). ``kind`` says what a plain unknown name was expected to be, for the error.
    Example: ``evaluate(["api:!api3"], ["api1", "api3"], {"api": ["api1", "api3"]})`` -> ``["api1"]``
    """
    pattern = ",".join(patterns)
    terms = [term for part in patterns for term in split_pattern(part)]
    if not terms:
        raise BadInput(f"empty host pattern {pattern!r}: name hosts or groups, e.g. api1 or api")
    plain = [t for t in terms if t[0] not in "&!"] or ["all"]
    chosen: list[str] = []
    for term in plain:
        chosen += [n for n in _match(term, pattern, hosts, groups, kind) if n not in chosen]
    for term in (t for t in terms if t[0] == "&"):
        kept = set(_match(term[1:], pattern, hosts, groups, kind))
        chosen = [n for n in chosen if n in kept]
    for term in (t for t in terms if t[0] == "!"):
        dropped = set(_match(term[1:], pattern, hosts, groups, kind))
        chosen = [n for n in chosen if n not in dropped]
    if not chosen:
        raise BadInput(f"no host matches {pattern!r}; known hosts: {', '.join(hosts) or 'none'}")
    return chosen


def _match(term: str, pattern: str, hosts, groups, kind) -> list[str]:
    """The hosts of one term: a host, a group's members, a glob or regex over both, subscripted."""
    if term in hosts:
        return [term]
    if term.startswith("~"):
        return _enumerate(term, hosts, groups)
    base, subscript = _subscript(term)
    if _is_plain(base) and base not in groups and base not in hosts:
        raise BadInput(_unknown(base, pattern, hosts, groups, kind))
    return _apply_subscript(_enumerate(base, hosts, groups), subscript, term)


def _is_plain(term: str) -> bool:
    return not term.startswith("~") and not any(char in term for char in GLOB_CHARS)


def _enumerate(term: str, hosts, groups) -> list[str]:
    """Members of every group the term matches, then every host it matches (Ansible's order)."""
    matcher = _matcher(term)
    found = [n for g in groups if matcher(g) for n in groups[g]]
    if term in groups and _is_plain(term) and "." not in term:
        return list(dict.fromkeys(found))
    return list(dict.fromkeys(found + [h for h in hosts if matcher(h)]))


def _matcher(term: str):
    """``~regex`` (matched at the start, as Ansible does) or a shell glob over a whole name."""
    try:
        if term.startswith("~"):
            return re.compile(term[1:]).match
        return re.compile(fnmatch.translate(term)).match
    except re.error as error:
        raise BadInput(
            f"host pattern {term!r} is not a valid regular expression: {error}"
        ) from None


def _subscript(term: str) -> tuple[str, tuple[int, int | None] | None]:
    """``("api", (1, 3))`` for ``api[1:3]``; ``(term, None)`` without a subscript."""
    found = SUBSCRIPT.match(term)
    if not found:
        return term, None
    base, index, start, end = found.groups()
    if index is not None:
        return base, (int(index), None)
    return base, (int(start), int(end) if end else -1)


def _apply_subscript(names: list[str], subscript, term: str) -> list[str]:
    """Ansible's subscript: ``[i]`` one host, ``[i:j]`` hosts i to j inclusive, ``[i:]`` to the end."""
    if subscript is None:
        return names
    start, end = subscript
    try:
        if not end:
            return [names[start]]
        return names[start : (len(names) - 1 if end == -1 else end) + 1]
    except IndexError:
        raise BadInput(
            f"no host matches the subscripted pattern {term!r}: "
            f"it selects {len(names)} host(s), counted from 0"
        ) from None


def _unknown(name: str, pattern: str, hosts, groups, kind: str) -> str:
    where = f" in pattern {pattern!r}" if pattern.strip() != name else ""
    known_hosts = f"known hosts: {', '.join(hosts) or 'none'}"
    named = sorted(g for g in groups if g != "ungrouped" or groups[g])
    known_groups = f"known groups: {', '.join(named)}"
    if kind == "group":
        return f"unknown group {name!r}{where}; {known_groups}; {known_hosts}"
    return f"unknown host {name!r}{where}; {known_hosts}; {known_groups}"
