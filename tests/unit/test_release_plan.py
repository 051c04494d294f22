"""Pure decisions of a release run (mtls_deploy/release/plan.py): the probe read, nothing
changed, the rollback target, what is pruned."""

import re
from datetime import UTC, datetime

import pytest

from mtls_deploy.errors import BadInput, UserError
from mtls_deploy.release import plan
from mtls_deploy.release.plan import HostState

A, B, C, D = (f"2026113{n}T080000Z-{n}a2b3c4d5e6f" for n in range(4))


def test_an_unprovisioned_host_says_nothing():
    assert plan.parse_probe("") == HostState(False)


def test_the_probe_gives_current_and_the_releases_oldest_first():
    output = f"provisioned\ncurrent releases/{B}\nrelease {B}\nrelease {A}\nrelease {C}.partial\nrelease junk\n"
    assert plan.parse_probe(output) == HostState(True, B, (A, B))


def test_a_first_release_has_no_current():
    assert plan.parse_probe("provisioned\ncurrent \n") == HostState(True, None, ())


def test_the_release_id_is_the_utc_time_then_the_sha12():
    moment = datetime(2026, 11, 30, 8, 15, 0, tzinfo=UTC)
    assert plan.release_id("1a2b3c4d5e6f", moment) == "20261130T081500Z-1a2b3c4d5e6f"
    assert plan.RELEASE_ID.fullmatch(plan.release_id("1a2b3c4d5e6f"))


def test_nothing_changed_when_current_is_this_tree():
    state = HostState(True, B, (A, B))
    assert plan.is_current(state, "1a2b3c4d5e6f")
    assert not plan.is_current(state, "0a2b3c4d5e6f")
    assert not plan.is_current(HostState(True), "1a2b3c4d5e6f")


def test_a_tree_already_on_the_host_is_found():
    state = HostState(True, B, (A, B))
    assert (
        plan.existing(state, "0a2b3c4d5e6f") == A and plan.existing(state, "9a2b3c4d5e6f") is None
    )


def test_rollback_goes_to_the_release_before_current():
    assert plan.rollback_target("api1", HostState(True, C, (A, B, C))) == B
    assert plan.rollback_target("api1", HostState(True, B, (A, B, C))) == A


def test_rollback_to_a_named_release_newer_or_older():
    assert plan.rollback_target("api1", HostState(True, B, (A, B, C)), C) == C
    assert plan.rollback_target("api1", HostState(True, C, (A, B, C)), A) == A


def test_rollback_with_nothing_before_current_is_one_line():
    with pytest.raises(UserError, match=f"api1: no release before {A} to roll back to"):
        plan.rollback_target("api1", HostState(True, A, (A, B)))


def test_rollback_to_an_unknown_or_current_release_is_one_line():
    with pytest.raises(BadInput, match=r"--to 'nope' is no release on the host; releases: "):
        plan.rollback_target("api1", HostState(True, B, (A, B)), "nope")
    with pytest.raises(UserError, match="already the current release"):
        plan.rollback_target("api1", HostState(True, B, (A, B)), B)


def test_pruning_keeps_the_newest():
    assert plan.to_prune([A, B, C, D], D, C, 2) == [A, B]
    assert plan.to_prune([A, B, C, D], D, C, 5) == []


def test_pruning_never_removes_current_or_previous():
    """After a rollback current is old: it and the release it replaces stay."""
    assert plan.to_prune([A, B, C, D], A, D, 2) == [B]
    assert plan.to_prune([A, B, C, D], B, A, 2) == []


def test_the_same_tree_under_another_backend_is_another_release():
    digest = "ab" * 32
    assert plan.release_sha12(digest, "backend_php") != plan.release_sha12(digest, "backend_python")
    assert plan.release_sha12(digest, "backend_php") == plan.release_sha12(digest, "backend_php")
    assert re.fullmatch(r"[0-9a-f]{12}", plan.release_sha12(digest, "backend_php"))
