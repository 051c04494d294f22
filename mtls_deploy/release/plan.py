"""Pure decisions of a release run, over what the host's probe said: is the tree already
current, which release a rollback goes to, which releases are pruned. No I/O."""

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..errors import BadInput, UserError
from ..facts import HostFacts

RELEASE_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}")


@dataclass(frozen=True)
class HostState:
    """The host as the probe found it: ``provisioned`` (the releases directory exists),
    ``current`` (the release id ``current`` points at, or None), every release, oldest first,
    and the system facts (package versions: the backend's paths follow them)."""

    provisioned: bool
    current: str | None = None
    releases: tuple[str, ...] = ()
    facts: HostFacts = field(default_factory=HostFacts, compare=False)


def parse_probe(output: str) -> HostState:
    """The probe's lines (``current releases/<id>``, ``release <id>``) as a ``HostState``;
    names that are no release id (a ``.partial`` left by a crash) are left out."""
    if not any(line.startswith("provisioned") for line in output.splitlines()):
        return HostState(False)
    current, releases = None, []
    for line in output.splitlines():
        word, _, value = line.partition(" ")
        name = value.removeprefix("releases/")
        if word == "current" and RELEASE_ID.fullmatch(name):
            current = name
        elif word == "release" and RELEASE_ID.fullmatch(value):
            releases.append(value)
    return HostState(True, current, tuple(sorted(releases)))


def release_sha12(tree_digest: str, backend: str) -> str:
    """The end of a release's name: the first 12 hex digits of the digest of the tree and of
    the backend role that builds it, so that the same tree under another backend (a virtualenv
    instead of composer's vendor/) is a new release, not "unchanged".

    Example: ``release_sha12(tree.digest, "backend_php")`` -> ``"1a2b3c4d5e6f"``
    """
    return hashlib.sha256(f"{tree_digest}\0{backend}".encode()).hexdigest()[:12]


def release_id(sha12: str, now: datetime | None = None) -> str:
    """``20261130T081500Z-1a2b3c4d5e6f``: the time of the deploy (UTC), then the tree's sha12.

    Example: ``release_id("1a2b3c4d5e6f", datetime(2026, 11, 30, 8, 15, tzinfo=UTC))``
    """
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{sha12}"


def is_current(state: HostState, sha12: str) -> bool:
    """True when ``current`` already points at a release of this tree: nothing to send."""
    return state.current is not None and state.current.endswith(f"-{sha12}")


def existing(state: HostState, sha12: str) -> str | None:
    """The newest release of this tree already on the host (after a rollback), if any."""
    found = [r for r in state.releases if r.endswith(f"-{sha12}")]
    return found[-1] if found else None


def rollback_target(host: str, state: HostState, to: str | None = None) -> str:
    """The release a rollback switches to: ``to`` when given (it must be on the host and not
    current), else the newest release older than ``current``; one line when there is none."""
    if to is not None:
        return _named_target(host, state, to)
    older = [r for r in state.releases if state.current is None or r < state.current]
    if not older:
        raise UserError(
            f"{host}: no release before {state.current or 'the current one'} to roll back to "
            f"(releases: {', '.join(state.releases) or 'none'})"
        )
    return older[-1]


def _named_target(host: str, state: HostState, to: str) -> str:
    if to not in state.releases:
        raise BadInput(
            f"{host}: --to {to!r} is no release on the host; releases: "
            f"{', '.join(state.releases) or 'none'}"
        )
    if to == state.current:
        raise UserError(f"{host}: {to} is already the current release")
    return to


def to_prune(releases, current: str, previous: str | None, keep: int) -> list[str]:
    """Releases beyond the newest ``keep``, oldest first, never ``current`` or ``previous``.

    Example: ``to_prune(["a", "b", "c", "d"], "d", "c", 2)`` -> ``["a", "b"]``
    """
    ordered = sorted(set(releases))
    kept = set(ordered[-keep:]) | {current, previous}
    return [r for r in ordered if r not in kept]
