"""Data-driven plan tests: tests/operations/<op>/<case>.yaml — facts in, steps out."""

from pathlib import Path

import pytest
import yaml

from mtls_deploy import operations
from mtls_deploy.facts import HostFacts, PathState, ResourceFacts, UnitState
from mtls_deploy.resources import (
    Absent,
    Command,
    Directory,
    File,
    Packages,
    Removed,
    Service,
    User,
)

CASES = sorted(Path(__file__).parent.glob("*/*.yaml"))


def plan_case(op: str, desired: dict, actual: dict):
    if op == "file":
        desired = dict(desired, content=desired["content"].encode())
        desired["notify"] = tuple(desired.get("notify", ()))
        return operations.plan_file(File(**desired), PathState(**actual))
    if op == "directory":
        return operations.plan_directory(Directory(**desired), PathState(**actual))
    if op == "absent":
        desired["notify"] = tuple(desired.get("notify", ()))
        return operations.plan_absent(Absent(**desired), PathState(**actual))
    if op == "service":
        return operations.plan_service(Service(**desired), actual["enabled"], actual["active"])
    if op == "packages":
        return operations.plan_packages(Packages(tuple(desired["names"])), HostFacts(**actual))
    if op == "user":
        facts = ResourceFacts(paths={}, users=frozenset(actual["users"]), units={})
        return operations.plan_user(User(**desired), facts)
    if op == "command":
        desired["notify"] = tuple(desired.get("notify", ()))
        for key in ("command", "unless"):  # YAML lists of lists: argv, as roles give it
            if isinstance(desired.get(key), list):
                desired[key] = tuple(tuple(argv) for argv in desired[key])
        creates = PathState(**actual["creates"]) if "creates" in actual else None
        return operations.plan_command(Command(**desired), creates, actual.get("unless_succeeded"))
    if op == "removed":
        return operations.plan_removed(Removed(**desired), removal_facts(actual))
    raise AssertionError(f"no runner for operation {op}")


def removal_facts(actual: dict) -> ResourceFacts:
    """``paths``, ``users`` and ``units`` as the facts of the host a role left."""
    return ResourceFacts(
        paths={p: PathState(**state) for p, state in actual.get("paths", {}).items()},
        users=frozenset(actual.get("users", [])),
        units={u: UnitState(**state) for u, state in actual.get("units", {}).items()},
    )


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_operation_case(case: Path):
    spec = yaml.safe_load(case.read_text())
    step = plan_case(case.parent.name, spec["desired"], spec["actual"])
    assert step.status == spec["status"]
    if "reason" in spec:
        assert step.reason == spec["reason"]
    if "reason_startswith" in spec:
        assert step.reason.startswith(spec["reason_startswith"])
    if "commands" in spec:
        assert step.commands == spec["commands"]
    if "commands_count" in spec:
        assert len(step.commands) == spec["commands_count"]
    for fragment in spec.get("commands_contain", []):
        assert fragment in "\n".join(step.commands), fragment
    if "notify" in spec:
        assert list(step.notify) == spec["notify"]
    if "validate" in spec:
        assert step.validate == spec["validate"]
