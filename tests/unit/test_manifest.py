"""The host's manifest, without a host: entries from resources, the diff old -> new, the removal
plan, packages that stay recorded, and a whole run through a fake transport (one round trip for
a no-op; a tagged run leaves the manifest alone; removals run after the checks)."""

import base64
import hashlib
import json
import subprocess
from types import SimpleNamespace

import pytest

from mtls_deploy import apply as applying
from mtls_deploy import manifest
from mtls_deploy.errors import UserError
from mtls_deploy.facts import MANIFEST, HostFacts, PathState, ResourceFacts, UnitState
from mtls_deploy.operations import INSTANCES_GONE, plan, plan_removed
from mtls_deploy.provision import HostRun, RunOptions
from mtls_deploy.resources import (
    Absent,
    Directory,
    File,
    Packages,
    Removed,
    Service,
    User,
    Validator,
)

OLD_APP = [
    Packages(("old-server",)),
    User("old"),
    Directory("/srv/old"),
    File("/srv/old/run.conf", b"x\n"),
    Directory("/etc/systemd/system/old-server.service.d"),
    File("/etc/systemd/system/old-server.service.d/hardening.conf", b"[Service]\n"),
    File("/etc/shared.conf", b"both\n"),
    Absent("/etc/old-server/default.conf"),
    Service("old-server"),
]
NEW_APP = [
    Packages(("new-server",)),
    User("new"),
    Directory("/srv/new"),
    File("/srv/new/app.py", b"app\n"),
    File("/etc/shared.conf", b"both\n"),
    Service("new.socket"),
    Service("new.service"),
    Service("stopped-thing", running=False, enabled=False),
]
OLD_ENTRY = {
    "directories": ["/etc/systemd/system/old-server.service.d", "/srv/old"],
    "files": [
        "/etc/shared.conf",
        "/etc/systemd/system/old-server.service.d/hardening.conf",
        "/srv/old/run.conf",
    ],
    "packages": ["old-server"],
    "trees": [],
    "units": ["old-server"],
    "units_before": [],
    "users": ["old"],
}


def facts_with(roles: dict, **extra) -> HostFacts:
    return HostFacts(manifest=manifest.render(roles).decode(), **extra)


# --- entries --------------------------------------------------------------------------------


def test_an_entry_lists_paths_running_units_and_users_sorted_not_removals():
    found = manifest.entry(OLD_APP, ["old-server"])
    assert found == OLD_ENTRY  # the Absent path is not ours; the package was installed by us


def test_a_unit_kept_stopped_is_not_recorded_as_run_by_the_role():
    assert manifest.entry(NEW_APP)["units"] == ["new.service", "new.socket"]


def test_packages_are_those_missing_before_apt_get():
    wanted = {"old": [Packages(("old-server", "libc6"))], "tls": []}
    facts = HostFacts(packages={"libc6": "2.36"})
    assert manifest.missing_packages(wanted, facts) == {"old": ["old-server"], "tls": []}


def test_recorded_packages_stay_recorded_and_new_ones_join():
    old = {"old": {**OLD_ENTRY, "packages": ["old-server", "libold1"]}}
    new = manifest.updated(old, {"old": OLD_APP}, {"old": ["old-extra"]})
    assert new["old"]["packages"] == ["libold1", "old-extra", "old-server"]


def test_a_package_the_host_already_had_is_never_recorded():
    new = manifest.updated({}, {"old": OLD_APP}, {})
    assert new["old"]["packages"] == []  # Packages(old-server) wanted, but none installed by us


def test_the_manifest_is_sorted_json_without_timestamps_whatever_the_order():
    one = manifest.render({"b": manifest.entry(NEW_APP), "a": manifest.entry(OLD_APP)})
    two = manifest.render({"a": manifest.entry(OLD_APP[::-1]), "b": manifest.entry(NEW_APP[::-1])})
    assert one == two and one.endswith(b"}\n")
    assert json.loads(one)["format"] == 1 and set(json.loads(one)) == {"format", "roles"}


# --- reading it back ------------------------------------------------------------------------


def test_a_host_without_a_manifest_has_no_roles_recorded():
    assert manifest.read(HostFacts()) == {}


def test_reading_back_what_was_written_gives_the_same_entries():
    assert manifest.read(facts_with({"old": OLD_ENTRY})) == {"old": OLD_ENTRY}


@pytest.mark.parametrize(
    "text",
    ["{not json", '{"roles": []}', "?", '{"roles": {"x": {"files": ["etc/x"]}}}'],
    ids=["not-json", "roles-not-a-map", "unreadable", "relative-path"],
)
def test_a_manifest_that_cannot_be_read_is_one_line_not_a_guess(text):
    with pytest.raises(UserError, match=rf"^{MANIFEST} on the host cannot be read .*delete it"):
        manifest.read(HostFacts(manifest=text))


@pytest.mark.parametrize("path", ["/", "/srv/../etc", "/srv//x"])
def test_a_path_that_is_not_absolute_and_normal_is_refused(path):
    text = json.dumps({"roles": {"x": {"directories": [path]}}})
    with pytest.raises(UserError, match="not an absolute, normal path"):
        manifest.read(HostFacts(manifest=text))


# --- the diff old -> new and the removal plan --------------------------------------------------


def test_a_converged_host_has_one_manifest_write_planned_and_no_removal():
    current = manifest.updated({}, {"old": OLD_APP}, {})
    books = manifest.bookkeeping({"old": OLD_APP}, facts_with(current), {})
    assert books.removals == [] and books.last is None and books.left == ()
    folder, first = books.first
    assert (folder.path, folder.mode) == ("/var/lib/mtls-deploy", 0o755)
    assert (first.path, first.mode, first.owner, first.content) == (
        MANIFEST,
        0o644,
        "root",
        manifest.render(current),
    )


def test_a_role_that_left_is_removed_except_what_a_remaining_role_manages():
    books = manifest.bookkeeping({"new": NEW_APP}, facts_with({"old": OLD_ENTRY}), {})
    assert books.left == ("old",)
    assert [(r.kind, r.name) for r in books.removals] == [
        ("unit", "old-server"),
        ("file", "/etc/systemd/system/old-server.service.d/hardening.conf"),
        ("file", "/srv/old/run.conf"),  # /etc/shared.conf stays: the new role manages it
        ("directory", "/etc/systemd/system/old-server.service.d"),
        ("directory", "/srv/old"),
        ("user", "old"),
    ]
    assert all(r.role == "old" for r in books.removals)


def test_the_first_write_keeps_the_leaving_role_and_the_last_drops_it():
    books = manifest.bookkeeping({"new": NEW_APP}, facts_with({"old": OLD_ENTRY}), {})
    first = json.loads(books.first[1].content)["roles"]
    last = json.loads(books.last.content)["roles"]
    assert set(first) == {"old", "new"}
    assert first["old"] == {
        k: v for k, v in OLD_ENTRY.items() if k not in manifest.OPTIONAL
    }  # empty: left out
    assert set(last) == {"new", "old"}
    assert last["old"] == {"directories": [], "files": [], "packages": ["old-server"], "units": [], "users": []}  # fmt: skip
    assert books.left == ("old",) and books.packages == ("old-server",)


def test_a_role_that_left_keeps_only_its_packages_recorded_and_is_not_removed_again():
    kept = {"old": {**dict.fromkeys(manifest.KEYS, []), "packages": ["old-server"]}}
    books = manifest.bookkeeping({"new": NEW_APP}, facts_with(kept), {})
    assert books.removals == [] and books.last is None and books.left == ()
    assert json.loads(books.first[1].content)["roles"]["old"] == {
        k: v for k, v in kept["old"].items() if k not in manifest.OPTIONAL
    }


def test_the_packages_only_the_leaving_role_recorded_are_those_no_remaining_role_wants():
    old = {"old": {**OLD_ENTRY, "packages": ["old-server", "shared-lib", "new-server"]}}
    books = manifest.bookkeeping({"new": NEW_APP}, facts_with(old), {})
    assert books.packages == ("old-server", "shared-lib")  # new-server: the new role wants it


def test_removal_order_sockets_before_services_and_deepest_directories_first():
    left = {
        "a": {**dict.fromkeys(manifest.KEYS, []), "units": ["x.service", "x.socket"]},
        "b": {**dict.fromkeys(manifest.KEYS, []), "directories": ["/a", "/a/b/c", "/a/b"]},
    }
    names = [r.name for r in manifest.removals(left, {})]
    assert names == ["x.socket", "x.service", "/a/b/c", "/a/b", "/a"]


def test_a_directory_a_remaining_role_holds_as_a_file_path_is_kept():
    left = {"a": {**dict.fromkeys(manifest.KEYS, []), "directories": ["/srv/x"], "users": ["u"]}}
    kept = {"b": {**dict.fromkeys(manifest.KEYS, []), "files": ["/srv/x"], "users": ["u"]}}
    assert manifest.removals(left, kept) == []


def test_packages_of_a_role_that_left_stay():
    left = {"a": {**dict.fromkeys(manifest.KEYS, []), "packages": ["old-server"]}}
    assert manifest.removals(left, {}) == []


# --- planning one removal -------------------------------------------------------------------

PRESENT = ResourceFacts(
    paths={
        "/srv/old/run.conf": PathState("file", 0o644, "root", "root", "ab"),
        "/srv/old": PathState("directory", 0o755, "root", "root"),
        "/etc/systemd/system/old-server.service.d/hardening.conf": PathState("file"),
        "/srv/dir-now": PathState("directory"),
        "/srv/file-now": PathState("file"),
    },
    users=frozenset({"old"}),
    units={"old-server.service": UnitState("enabled", "active")},
)
GONE = ResourceFacts(paths={}, users=frozenset(), units={})


@pytest.mark.parametrize(
    "kind, name, command",
    [
        ("unit", "old-server", "systemctl disable --now old-server"),
        ("file", "/srv/old/run.conf", "rm -f -- /srv/old/run.conf"),
        ("directory", "/srv/old", "rmdir --ignore-fail-on-non-empty -- /srv/old"),
        ("user", "old", "userdel -- old"),
    ],
)
def test_a_present_leftover_is_removed_after_the_checks_and_gone_is_ok(kind, name, command):
    step = plan_removed(Removed(kind, name, "old"), PRESENT)
    assert (step.kind, step.status, step.commands, step.after_checks) == (
        kind,
        "changed",
        [command],
        True,
    )
    assert step.reason.startswith("role old left: ")
    again = plan_removed(Removed(kind, name, "old"), GONE)
    assert (again.status, again.reason) == ("ok", "role old left: already gone")


def test_a_removed_unit_file_reloads_systemd_and_a_plain_file_does_not():
    path = "/etc/systemd/system/old-server.service.d/hardening.conf"
    assert plan_removed(Removed("file", path, "old"), PRESENT).notify == ("daemon-reload",)
    assert plan_removed(Removed("file", "/srv/old/run.conf", "old"), PRESENT).notify == ()


def test_a_stopped_disabled_unit_is_already_gone():
    facts = ResourceFacts({}, frozenset(), {"old-server.service": UnitState("disabled", "failed")})
    assert plan_removed(Removed("unit", "old-server", "old"), facts).status == "ok"


@pytest.mark.parametrize("kind, path", [("file", "/srv/dir-now"), ("directory", "/srv/file-now")])
def test_something_else_at_a_recorded_path_fails_and_is_left_alone(kind, path):
    step = plan_removed(Removed(kind, path, "old"), PRESENT)
    assert step.status == "failed" and "role old left, but a" in step.reason
    assert step.commands == []


def test_the_last_write_is_planned_only_when_every_step_could_be_planned():
    books = manifest.bookkeeping({"new": NEW_APP}, facts_with({"old": OLD_ENTRY}), {})
    steps = plan(books.removals, PRESENT)
    last = manifest.last_step(books, PRESENT, steps)
    assert [(s.kind, s.name, s.status, s.after_checks) for s in last] == [
        ("manifest", MANIFEST, "changed", True)
    ]
    assert last[0].reason == "old left: no longer listed"
    steps[0].status = "failed"
    assert manifest.last_step(books, PRESENT, steps) == []


# --- the apply script's order -----------------------------------------------------------------


def test_removals_run_after_the_validators_and_before_daemon_reload_and_services():
    books = manifest.bookkeeping({"new": NEW_APP}, facts_with({"old": OLD_ENTRY}), {})
    new_file = File("/etc/new.conf", b"new\n", validate="new")
    steps = plan([new_file, Service("new.service"), *books.removals], PRESENT)
    steps += manifest.last_step(books, PRESENT, steps)
    script = applying.build_script(steps, [], {"new": Validator("new", (("new-check",),))})
    at = script.index
    assert at("new-check") < at("systemctl disable --now old-server") < at("rm -f -- /srv/old")
    assert at("rmdir --ignore-fail-on-non-empty -- /srv/old") < at("userdel -- old")
    assert at("userdel -- old") < at(f'mv -f "$t" {MANIFEST}') < at("systemctl daemon-reload")
    assert at("systemctl daemon-reload") < at("systemctl enable --now new.service")


# --- a whole run through a fake transport ----------------------------------------------------


class FakeRole:
    """A role as the engine sees it: a name and what it wants."""

    def __init__(self, name: str, resources: list):
        self.name, self.wanted, self.meta = name, resources, {"dependencies": []}

    def call(self, function, v, facts, default=None):
        return self.wanted if function == "resources" else default

    def validators(self, v, facts):
        return {}

    def fact_packages(self):
        return ()


class Host:
    """Answers the engine's scripts as a host with ``packages`` installed, every wanted path,
    user and unit in place, and ``manifest`` on disk."""

    def __init__(self, resources: list, manifest_text: bytes, units: dict):
        self.files = {r.path: r.content for r in resources if isinstance(r, File)}
        self.files[MANIFEST] = manifest_text
        self.dirs = {r.path for r in resources if isinstance(r, Directory)}
        self.dirs.add("/var/lib/mtls-deploy")
        self.users = {r.name for r in resources if isinstance(r, User)}
        self.units, self.scripts = units, []
        self.packages = ["new-server", "old-server"]
        self.survey = ""

    def run_script(self, script, sudo=False, check=False, timeout=None):
        self.scripts.append(script)
        if "apt-get install" in script:
            self.packages.append("fresh-lib")
        if "dpkg --verify" in script:  # the survey of packages only a role that left installed
            return SimpleNamespace(stdout=self.survey, stderr="", exit_status=0, ok=True)
        if "@@resources" not in script and "stat -c" not in script:  # an apply script
            return SimpleNamespace(stdout="", stderr="", exit_status=0, ok=True)
        return SimpleNamespace(stdout=self.answer(), stderr="", exit_status=0, ok=True)

    def answer(self) -> str:
        encoded = base64.b64encode(self.files[MANIFEST]).decode()
        lines = ["os\tdebian\t12", "init\tsystemd", f"manifest\t{encoded}"]
        lines += [f"pkg\t{name}\tii \t1.0" for name in self.packages] + ["@@resources"]
        for path, content in self.files.items():
            lines += [f"stat\t{path}\tregular file\t644\troot\troot"]
            lines += [f"sha\t{hashlib.sha256(content).hexdigest()}  {path}"]
        lines += [f"stat\t{path}\tdirectory\t755\troot\troot" for path in self.dirs]
        lines += [f"user\t{name}:x:999:999::/nonexistent:/usr/sbin/nologin" for name in self.users]
        for unit, (enabled, active) in self.units.items():
            lines += [f"unit\tId={unit}", f"unit\tUnitFileState={enabled}"]
            lines += [f"unit\tActiveState={active}", "unit\t"]
        return "\n".join(lines) + "\n"


RUNNING = {"new.service": ("enabled", "active"), "new.socket": ("enabled", "active")}


def converged(roles: dict[str, list]) -> bytes:
    return manifest.render(manifest.updated({}, roles, {}))


def test_a_no_op_run_with_its_manifest_is_one_round_trip_and_all_ok():
    host = Host(NEW_APP, converged({"new": NEW_APP}), RUNNING)
    run = HostRun(host, [FakeRole("new", NEW_APP)], {}, RunOptions())
    steps = run.converge(HostFacts(manifest=converged({"new": NEW_APP}).decode()))
    assert len(host.scripts) == 1
    assert [s for s in steps if s.status != "ok"] == []
    assert (MANIFEST, "ok") in [(s.name, s.status) for s in steps]


def test_a_role_that_left_is_taken_away_and_its_entry_dropped_last():
    old = manifest.render({"old": OLD_ENTRY})
    units = {**RUNNING, "old-server.service": ("enabled", "active")}
    host = Host([*NEW_APP, *OLD_APP], old, units)
    run = HostRun(host, [FakeRole("new", NEW_APP)], {}, RunOptions())
    steps = run.converge(HostFacts(manifest=old.decode()))
    changed = [(s.kind, s.name) for s in steps if s.changed]
    assert changed[0] == ("file", MANIFEST) and changed[-1] == ("manifest", MANIFEST)
    assert ("unit", "old-server") in changed and ("user", "old") in changed
    assert len(host.scripts) == 3  # the old paths were in the guess: facts, survey, apply
    assert "dpkg --verify" in host.scripts[1]  # old-server: only the old role installed it
    assert "systemctl daemon-reload" in host.scripts[-1]  # a drop-in went


def test_check_mode_shows_the_removals_as_changes_and_applies_nothing():
    old = manifest.render({"old": OLD_ENTRY})
    host = Host([*NEW_APP, *OLD_APP], old, {**RUNNING, "old-server.service": ("enabled", "active")})
    run = HostRun(host, [FakeRole("new", NEW_APP)], {}, RunOptions(check=True))
    steps = run.converge(HostFacts(manifest=old.decode()))
    assert len([s for s in steps if s.changed]) == 8  # 2 manifest writes, 6 removals
    assert len(host.scripts) == 2  # facts, and the survey of old-server (reads only)


def test_a_tagged_run_neither_reads_into_nor_writes_the_manifest_nor_removes():
    tagged = File("/etc/list.pem", b"new list\n", tags=("crl",), notify=("reload",))
    old = manifest.render({"old": OLD_ENTRY})
    host = Host(OLD_APP, old, {"old-server.service": ("enabled", "active")})
    role = FakeRole("new", [*NEW_APP, tagged])
    run = HostRun(host, [role], {}, RunOptions(tags=("crl",)))
    steps = run.converge(None)
    assert [(s.name, s.status) for s in steps] == [("/etc/list.pem", "changed")]
    assert MANIFEST not in host.scripts[-1] and "userdel" not in host.scripts[-1]


def test_packages_this_run_installed_are_recorded_for_the_role_that_wanted_them():
    wants = [*NEW_APP, Packages(("fresh-lib", "new-server"))]
    host = Host(NEW_APP, converged({"new": NEW_APP}), RUNNING)
    run = HostRun(host, [FakeRole("new", wants)], {}, RunOptions())
    steps = run.converge(HostFacts(manifest=converged({"new": NEW_APP}).decode()))
    written = next(s for s in steps if s.name == MANIFEST).resource.content
    assert json.loads(written)["roles"]["new"]["packages"] == ["fresh-lib"]  # not new-server
    assert "apt-get install" in host.scripts[1] and MANIFEST in host.scripts[-1]
    assert host.scripts[1].index("flock") < host.scripts[1].index("apt-get install")  # one run
    assert host.scripts[-1].index("flock") < host.scripts[-1].index(MANIFEST)  # at a time


# --- trees: directories whose whole content is ours --------------------------------------------

APP_TREE = [
    Directory("/srv/app", tree=True),
    Directory("/srv/app/releases"),
    Directory("/etc/mtls-deploy"),
    Directory("/etc/mtls-deploy/app", mode=0o700, tree=True),
    File("/etc/mtls-deploy/app/app.env", b"A=1\n", mode=0o600),
    File("/etc/systemd/system/app-server@.service", b"[Service]\n"),
]


def tree_entry(trees=("/etc/mtls-deploy/app", "/srv/app")) -> dict:
    return manifest.entry(APP_TREE, (), set(trees))


def test_a_tree_is_recorded_only_when_we_created_it_and_then_stays_recorded():
    assert tree_entry()["trees"] == ["/etc/mtls-deploy/app", "/srv/app"]
    assert tree_entry(())["trees"] == []  # there before us: only ever removed when empty
    assert manifest.entry(APP_TREE, (), {"/srv/app/releases", "/elsewhere"})["trees"] == []
    old = {"app": tree_entry(("/srv/app",))}
    again = manifest.updated(old, {"app": APP_TREE}, {}, frozenset({"/etc/mtls-deploy/app"}))
    assert again["app"]["trees"] == ["/etc/mtls-deploy/app", "/srv/app"]
    assert manifest.updated(old, {"app": APP_TREE[1:]}, {})["app"]["trees"] == []  # undeclared


def test_the_trees_a_run_creates_are_those_not_there_yet():
    facts = ResourceFacts(
        paths={"/srv/app/releases": PathState("absent"), "/srv/app": PathState("absent"),
               "/etc/mtls-deploy/app": PathState("directory", 0o700, "root", "root")},
        users=frozenset(), units={},
    )  # fmt: skip
    assert manifest.created_trees(APP_TREE, facts) == {"/srv/app"}


def test_a_manifest_without_trees_reads_and_renders_as_before():
    text = manifest.render({"old": OLD_ENTRY}).decode()
    assert "trees" not in text  # a host's manifest from before trees is unchanged
    assert manifest.read(HostFacts(manifest=text))["old"]["trees"] == []
    assert '"trees": [\n' in manifest.render({"app": tree_entry()}).decode()


@pytest.mark.parametrize(
    "path", ["/", "/srv", "/etc", "/var/lib", "/usr/local", "/srv/../etc/x", "//srv/x", "srv/x"]
)
def test_a_tree_that_is_a_system_directory_or_not_deep_enough_is_refused(path):
    assert manifest.tree_refusal(path)
    with pytest.raises(UserError, match="cannot be read .*tree"):
        manifest.read(HostFacts(manifest=json.dumps({"roles": {"x": {"trees": [path]}}})))
    with pytest.raises(UserError, match=r"tree=True\): "):
        manifest.entry([Directory(path, tree=True)], (), {path})
    assert manifest.tree_refusal("/srv/api") is None


def test_a_tree_goes_whole_after_files_and_before_its_parent_directory():
    gone = manifest.removals({"app": tree_entry()}, {})
    assert [(r.kind, r.name) for r in gone] == [
        ("file", "/etc/systemd/system/app-server@.service"),  # outside every tree
        ("tree", "/etc/mtls-deploy/app"),
        ("tree", "/srv/app"),
        ("directory", "/etc/mtls-deploy"),  # emptied by the tree's removal
    ]  # what the trees hold (releases/, app.env) goes with them, not listed again


def test_a_tree_with_a_path_a_remaining_role_manages_inside_is_not_removed_whole():
    kept = {"backend": manifest.entry([Directory("/srv/app/venvs")])}
    gone = [(r.kind, r.name) for r in manifest.removals({"app": tree_entry()}, kept)]
    assert ("tree", "/srv/app") not in gone and ("directory", "/srv/app/releases") in gone
    assert ("directory", "/srv/app") in gone and ("tree", "/etc/mtls-deploy/app") in gone
    also_a_tree = {"other": tree_entry(("/srv/app",))}
    gone = [(r.kind, r.name) for r in manifest.removals({"app": tree_entry()}, also_a_tree)]
    assert ("tree", "/srv/app") not in gone and ("directory", "/srv/app/releases") not in gone


def test_a_tree_is_removed_recursively_on_its_own_file_system_and_a_link_is_refused():
    present = ResourceFacts(
        {"/srv/app": PathState("directory", 0o755, "root", "root")}, frozenset(), {}
    )
    step = plan_removed(Removed("tree", "/srv/app", "app"), present)
    assert step.commands == ["rm -rf --one-file-system -- /srv/app"] and step.after_checks
    assert "with everything in it" in step.reason
    linked = ResourceFacts({"/srv/app": PathState("link")}, frozenset(), {})
    assert plan_removed(Removed("tree", "/srv/app", "app"), linked).status == "failed"
    assert plan_removed(Removed("tree", "/srv/app", "app"), GONE).status == "ok"


def test_a_template_unit_s_instances_go_with_it_stopped_disabled_and_their_drop_ins():
    path = "/etc/systemd/system/app-server@.service"
    present = ResourceFacts({path: PathState("file", 0o644, "root", "root")}, frozenset(), {})
    step = plan_removed(Removed("file", path, "app"), present)
    assert step.commands[0].startswith("sh -c ") and step.commands[0].endswith(
        f" sh {path}\nrm -f -- {path}"
    )
    assert step.notify == ("daemon-reload",)
    assert subprocess.run(["sh", "-n"], input=INSTANCES_GONE, text=True).returncode == 0
    plain = "/srv/old/run.conf"
    assert plan_removed(Removed("file", plain, "app"), PRESENT).commands == [f"rm -f -- {plain}"]


def test_what_only_a_leaving_role_installed_gets_its_conffiles_back_and_its_units_disabled():
    """php -> python: php-fpm stays installed, Debian's www pool comes back, its timer stops."""
    old = manifest.render({"old": OLD_ENTRY})
    units = {**RUNNING, "old-server.service": ("enabled", "active")}
    host = Host([*NEW_APP, *OLD_APP], old, units)
    host.survey = (
        "package old-server\nunit old-server.service old-server\nconffiles old-server\n"
        "package old-common\nunit old-clean.timer old-common\nunit new.service old-common\n"
    )
    run = HostRun(host, [FakeRole("new", NEW_APP)], {}, RunOptions())
    steps = run.converge(HostFacts(manifest=old.decode()))
    changed = [(s.kind, s.name) for s in steps if s.changed]
    removal = changed.index(("user", "old"))
    assert changed[removal + 1 :] == [
        ("conffiles", "old-server"),  # after the removals, before the manifest's last write
        ("unit", "old-clean.timer"),  # not new.service: the new role runs it
        ("unit", "old-server.service"),  # again after the reinstall, which may enable it
        ("manifest", MANIFEST),
    ]
    script = host.scripts[-1]
    assert script.index("userdel") < script.index("--force-confmiss old-server")
    assert script.index("systemctl disable --now old-clean.timer") < script.rindex(MANIFEST)
    written = json.loads(next(s for s in steps if s.kind == "manifest").resource.content)
    assert written["roles"]["old"] == {
        "directories": [], "files": [], "packages": ["old-server"], "units": [], "users": []
    }  # fmt: skip


# --- units that ran before us: never stopped, reloaded once our files are gone ---------------

SITE = [File("/etc/web/sites/app.conf", b"site\n"), Service("web"), Service("app-server")]
SITE_ENTRY = {
    **dict.fromkeys(manifest.KEYS, []),
    "files": ["/etc/web/sites/app.conf"],
    "units": ["app-server", "web"],
    "units_before": ["web"],
}


def unit_facts(units: dict[str, tuple[str, str]]) -> ResourceFacts:
    states = {name: UnitState(*state) for name, state in units.items()}
    return ResourceFacts(paths={}, users=frozenset(), units=states)


@pytest.mark.parametrize(
    "state, found",
    [
        (("enabled", "active"), True),
        (("enabled", "inactive"), True),  # enabled by someone, stopped for now
        (("disabled", "active"), True),  # started by hand
        (("static", "active"), True),
        (("static", "inactive"), False),  # enabled by nobody
        (("disabled", "inactive"), False),
        (("not-found", "inactive"), False),
    ],
)
def test_a_unit_enabled_or_running_is_found(state, found):
    facts = unit_facts({"web.service": state, "stopped-thing.service": ("enabled", "active")})
    wanted = [Service("web"), Service("stopped-thing", running=False, enabled=False)]
    assert manifest.found_units(wanted, facts) == ({"web"} if found else set())


def test_a_unit_found_before_our_first_run_is_recorded_and_then_stays_recorded():
    first = manifest.updated({}, {"site": SITE}, {}, found=frozenset({"web"}))
    assert first["site"]["units_before"] == ["web"] and first["site"]["units"] == [
        "app-server",
        "web",
    ]
    again = manifest.updated(first, {"site": SITE}, {})  # sticky: not found again, still recorded
    assert again["site"]["units_before"] == ["web"]
    moved = manifest.updated(first, {"web-role": SITE[1:2]}, {})  # another role runs it now
    assert moved["web-role"]["units_before"] == ["web"]
    assert manifest.updated(first, {"site": SITE[2:]}, {})["site"]["units_before"] == []


def test_a_unit_a_run_of_ours_ran_before_is_never_recorded_as_there_before_us():
    """Running now because of us (the old manifest lists it): that is not "before us"."""
    ours = manifest.updated({}, {"site": SITE}, {})
    found = frozenset({"web", "app-server"})
    assert manifest.updated(ours, {"site": SITE}, {}, found=found)["site"]["units_before"] == []


def test_a_manifest_without_units_before_reads_as_none_recorded_and_renders_as_before():
    text = manifest.render({"old": OLD_ENTRY}).decode()
    assert "units_before" not in text
    assert manifest.read(HostFacts(manifest=text))["old"]["units_before"] == []
    written = manifest.render({"site": SITE_ENTRY}).decode()
    assert '"units_before": [\n        "web"\n      ]' in written
    assert manifest.read(HostFacts(manifest=written))["site"] == SITE_ENTRY


def test_a_leaving_role_s_unit_that_ran_before_us_is_reloaded_after_its_files_not_stopped():
    books = manifest.bookkeeping({"new": NEW_APP}, facts_with({"site": SITE_ENTRY}), {})
    assert [(r.kind, r.name) for r in books.removals] == [
        ("unit", "app-server"),  # ours: stopped and disabled
        ("file", "/etc/web/sites/app.conf"),
    ]
    assert books.reloads == ("web",)
    facts = ResourceFacts(
        paths={"/etc/web/sites/app.conf": PathState("file")},
        users=frozenset(),
        units={f"{u}.service": UnitState("enabled", "active") for u in ("web", "app-server")},
    )
    steps = plan([File("/etc/new.conf", b"new\n"), *books.removals], facts)
    steps += books.reload_steps()
    steps += manifest.last_step(books, facts, steps)
    reload = steps[-2]
    assert (reload.kind, reload.name, reload.status) == ("unit", "web", "changed")
    assert reload.reason == "site left: reloaded without our files (ran before us: stays)"
    script = applying.build_script(steps, [])
    at = script.index
    assert "disable --now web" not in script and "systemctl disable --now app-server" in script
    assert at("rm -f -- /etc/web/sites/app.conf") < at("systemctl try-reload-or-restart -- web")
    assert at("systemctl try-reload-or-restart -- web") < at(f'mv -f "$t" {MANIFEST}')
    last = json.loads(books.last.content)["roles"]
    assert "site" not in last  # nothing left to record: no packages


def test_a_unit_that_ran_before_us_and_a_remaining_role_runs_is_neither_stopped_nor_reloaded():
    books = manifest.bookkeeping({"web-role": SITE[1:2]}, facts_with({"site": SITE_ENTRY}), {})
    assert ("unit", "web") not in [(r.kind, r.name) for r in books.removals]
    assert books.reloads == () and books.reload_steps() == []


def test_a_removed_unit_file_is_read_by_systemd_before_the_reload():
    entry = {**SITE_ENTRY, "files": ["/etc/systemd/system/web.service.d/hardening.conf"]}
    books = manifest.bookkeeping({}, facts_with({"site": entry}), {})
    assert books.reload_steps()[0].commands == [
        "systemctl daemon-reload\nsystemctl try-reload-or-restart -- web"
    ]


class Installing(Host):
    """apt-get install of fresh-server enables and starts it (Debian's postinst); the
    install script reads the units' states before apt-get runs."""

    def run_script(self, script, sudo=False, check=False, timeout=None):
        if "apt-get install" not in script:
            return super().run_script(script, sudo, check, timeout)
        self.scripts.append(script)
        before = self.answer().partition("@@resources\n")[2]
        self.packages.append("fresh-server")
        self.units["fresh-server.service"] = ("enabled", "active")
        return SimpleNamespace(stdout=before, stderr="", exit_status=0, ok=True)


FRESH = [Packages(("fresh-server",)), *SITE, Service("fresh-server")]


def test_a_first_run_records_what_ran_before_it_not_what_its_packages_enabled():
    host = Installing(SITE, b"", {"web.service": ("enabled", "active")})  # no manifest yet
    steps = HostRun(host, [FakeRole("site", FRESH)], {}, RunOptions()).converge(None)
    written = json.loads(next(s for s in steps if s.name == MANIFEST).resource.content)
    assert written["roles"]["site"]["units_before"] == ["web"]  # not fresh-server, nor app-server
    assert written["roles"]["site"]["packages"] == ["fresh-server"]
    install = next(s for s in host.scripts if "apt-get install" in s)
    assert install.index("systemctl show") < install.index("apt-get install")
    assert install.index("flock") < install.index("systemctl show")


def test_a_run_that_installs_nothing_records_what_runs_before_its_apply():
    host = Host(SITE, manifest.render({}), {"web.service": ("enabled", "active")})
    steps = HostRun(host, [FakeRole("site", SITE)], {}, RunOptions()).converge(None)
    written = json.loads(next(s for s in steps if s.name == MANIFEST).resource.content)
    assert written["roles"]["site"]["units_before"] == ["web"]


class Counting(FakeRole):
    """Counts how often the engine asks for its resources: once per plan."""

    def call(self, function, v, facts, default=None):
        self.plans = getattr(self, "plans", 0) + (function == "resources")
        return super().call(function, v, facts, default)


@pytest.mark.parametrize("key", ["units", "units_before"])
def test_a_converged_host_whose_units_are_recorded_is_not_planned_again(key):
    """Its running units are found every run, but the manifest knows them already: nothing
    new to record, so no second plan (each costs the roles' resources again)."""
    recorded = manifest.updated({}, {"site": SITE}, {}, found=frozenset({"web"}))
    if key == "units":
        recorded = manifest.updated({}, {"site": SITE}, {})
    host = Host(SITE, manifest.render(recorded), {**RUNNING, "web.service": ("enabled", "active")})
    role = Counting("site", SITE)
    HostRun(host, [role], {}, RunOptions()).converge(None)
    assert role.plans == 2  # once for the facts to read, once for the plan: never again
    assert manifest.units_recorded(facts_with(recorded)) == {"web", "app-server"}


def test_check_mode_shows_the_reload_of_a_leaving_unit_that_ran_before_us_and_does_nothing():
    old = manifest.render({"site": SITE_ENTRY})
    units = {
        **RUNNING,
        "web.service": ("enabled", "active"),
        "app-server.service": ("enabled", "active"),
    }
    host = Host([*NEW_APP, *SITE], old, units)
    steps = HostRun(host, [FakeRole("new", NEW_APP)], {}, RunOptions(check=True)).converge(None)
    changed = [(s.kind, s.name, s.commands) for s in steps if s.changed]
    assert ("unit", "web", ["systemctl try-reload-or-restart -- web"]) in changed
    assert ("unit", "app-server", ["systemctl disable --now app-server"]) in changed
    assert not any("disable --now web" in c for *_, cs in changed for c in cs)
    assert not any("try-reload" in s for s in host.scripts)  # shown, not done
