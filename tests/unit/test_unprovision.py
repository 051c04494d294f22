"""``inv unprovision``'s pure parts: what the survey of the packages we installed says, the steps
that follow from it (purge, or conffiles put back and units disabled), the roles' own restores,
and the one apply script. On a real host: tests/integration/test_unprovision.py."""

import base64
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from mtls_deploy import apply as applying
from mtls_deploy import manifest, unprovision
from mtls_deploy.connection import CommandResult
from mtls_deploy.facts import MANIFEST
from mtls_deploy.unprovision import Survey, package_steps, parse_survey

SURVEYED = """package nginx
package nginx-common
unit nginx.service nginx-common
package php8.2-fpm
unit php8.2-fpm.service php8.2-fpm
conffiles php8.2-fpm
package php-common
unit phpsessionclean.timer php-common
"""


def test_the_survey_is_read_line_by_line():
    found = parse_survey(SURVEYED)
    assert found.packages == ["nginx", "nginx-common", "php8.2-fpm", "php-common"]
    assert found.units == {
        "nginx.service": "nginx-common",
        "php8.2-fpm.service": "php8.2-fpm",
        "phpsessionclean.timer": "php-common",
    }
    assert found.conffiles == ["php8.2-fpm"]
    assert parse_survey("") == Survey()


@pytest.mark.parametrize("script", [unprovision.SURVEY])
def test_the_survey_is_valid_sh(script):
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0


def test_with_packages_everything_that_came_with_ours_is_purged_at_once():
    steps = package_steps(parse_survey(SURVEYED), purge=True)
    assert [(s.kind, s.reason) for s in steps] == [("packages", "purged (--packages)")]
    assert steps[0].commands == [
        "DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq nginx nginx-common php8.2-fpm "
        "php-common >/dev/null"
    ]
    assert package_steps(Survey(), purge=True) == []


def test_without_packages_conffiles_come_back_before_the_units_are_disabled():
    """A reinstall may enable a unit again (deb-systemd-helper's was-enabled): disable after."""
    steps = package_steps(parse_survey(SURVEYED), purge=False)
    assert [(s.kind, s.name) for s in steps] == [
        ("conffiles", "php8.2-fpm"),
        ("unit", "nginx.service"),
        ("unit", "php8.2-fpm.service"),
        ("unit", "phpsessionclean.timer"),
    ]
    reinstall = steps[0].commands[0]
    assert "apt-get install -y -qq --no-install-recommends" in reinstall
    assert "--reinstall -o Dpkg::Options::=--force-confmiss php8.2-fpm" in reinstall
    assert "policy-rc.d" in reinstall  # services held back while it runs
    assert steps[1].commands == ["systemctl disable --now nginx.service"]


def test_names_from_the_host_are_quoted():
    steps = package_steps(Survey(["a;b"], {"x y.service": "a;b"}, ["a;b"]), purge=False)
    assert "'a;b'" in steps[0].commands[0]
    assert steps[1].commands == ["systemctl disable --now 'x y.service'"]


def test_recorded_packages_are_every_role_s_once():
    roles = {"nginx": {"packages": ["nginx"]}, "backend_php": {"packages": ["php-fpm", "nginx"]}}
    assert unprovision.recorded_packages(roles) == ["nginx", "php-fpm"]


def test_the_nginx_role_puts_debian_s_default_site_back():
    steps = unprovision.restore_steps({"nginx": {}, "gone-role": {}}, {})
    assert [(s.kind, s.name) for s in steps] == [("link", "/etc/nginx/sites-enabled/default")]
    script = steps[0].commands[0]
    assert "ln -s /etc/nginx/sites-available/default /etc/nginx/sites-enabled/default" in script
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0


@dataclass
class Done:
    stdout: str
    stderr: str


class FakeRemote:
    """Runs the apply script with sh here, as the host would."""

    def __init__(self):
        self.scripts = []

    def run_script(self, script, sudo=False, timeout=None):
        self.scripts.append(script)
        done = subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True)
        return Done(done.stdout, done.stderr)


@pytest.fixture(autouse=True)
def scratch_lock(tmp_path, monkeypatch):
    """The host's lock in a scratch directory, given up after a second."""
    monkeypatch.setattr(applying, "HOST_LOCK", str(tmp_path / "lock" / "mtls-deploy.lock"))
    monkeypatch.setattr(applying, "LOCK_WAIT", 1)


def test_the_steps_run_under_the_host_s_lock_and_its_file_goes_last(tmp_path):
    seen = tmp_path / "seen"
    probe = f"flock -n -E 7 {applying.HOST_LOCK} true || echo $? > {seen}"
    done = unprovision._apply(FakeRemote(), [unprovision.changed("a", "one", "", [probe])])
    assert done[0].status == "changed" and seen.read_text() == "7\n"  # held meanwhile
    assert not Path(applying.HOST_LOCK).exists()  # nothing of ours left in /run/lock


def test_while_another_run_holds_the_lock_nothing_is_done_and_one_line_says_why(tmp_path):
    Path(applying.HOST_LOCK).parent.mkdir()
    holder = subprocess.Popen(["flock", "-o", applying.HOST_LOCK, "sleep", "5"])
    try:
        while subprocess.run(["flock", "-n", applying.HOST_LOCK, "true"]).returncode == 0:
            time.sleep(0.05)
        done = unprovision._apply(FakeRemote(), [unprovision.changed("a", "one", "", ["touch x"])])
    finally:
        holder.kill()
        holder.wait()
    assert (done[0].status, done[0].reason) == (
        "failed",
        f"another mtls-deploy run holds {applying.HOST_LOCK} on this host (waited 1 s): "
        "run again once it is done",
    )


def test_the_first_failing_step_stops_the_rest():
    steps = [
        unprovision.changed("a", "one", "", ["true"]),
        unprovision.changed("b", "two", "", ["echo broken >&2; false"]),
        unprovision.changed("c", "three", "", ["true"]),
    ]
    done = unprovision._apply(FakeRemote(), steps)
    assert [(s.status, s.reason) for s in done] == [
        ("changed", ""),
        ("failed", "broken"),
        ("skipped", "not reached"),
    ]


ROLES = {
    "nginx": {"directories": [], "files": ["/etc/nginx/conf.d/api.conf"], "packages": ["nginx"],
              "units": ["nginx"], "users": []},
    "tls": {"directories": ["/etc/nginx/mtls"], "files": [], "packages": [], "units": [],
            "users": []},
}  # fmt: skip
GONE = "rm -f /var/lib/mtls-deploy/manifest.json; rmdir --ignore-fail-on-non-empty /var/lib/mtls-deploy"


def test_with_packages_the_manifest_goes_last():
    step = unprovision.bookkeeping_step(ROLES, "{}", purge=True)
    assert (step.status, step.commands) == ("changed", [GONE])


def test_packages_that_stay_stay_recorded_and_a_second_run_changes_nothing():
    """Else a later `unprovision --packages` (or provision) would not know we installed them."""
    step = unprovision.bookkeeping_step(ROLES, "{}", purge=False)
    kept = {"nginx": {"directories": [], "files": [], "packages": ["nginx"], "units": [],
                      "users": []}}  # fmt: skip
    written = subprocess.run(
        ["sh", "-c", step.commands[0].replace("> /var/lib/mtls-deploy/manifest.json.new", "; :")],
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert step.status == "changed" and json.loads(written) == {"format": 1, "roles": kept}
    again = unprovision.bookkeeping_step(kept, written, purge=False)
    assert again.status == "ok" and again.commands == []


def test_nothing_recorded_but_roles_without_packages_removes_the_manifest():
    step = unprovision.bookkeeping_step({"tls": ROLES["tls"]}, "{}", purge=False)
    assert step.commands == [GONE]


def test_a_reinstall_marks_a_dependency_as_one_again():
    command = package_steps(Survey(["php8.2-fpm"], {}, ["php8.2-fpm"]), purge=False)[0].commands[0]
    lines = command.splitlines()
    assert lines[0] == "was_auto=$(apt-mark showauto php8.2-fpm)"
    assert lines[-1] == 'if [ -n "$was_auto" ]; then apt-mark auto php8.2-fpm >/dev/null; fi'
    assert subprocess.run(["sh", "-n", "-c", command]).returncode == 0


def test_the_task_needs_a_host(inv):
    code, _, err = inv("unprovision")
    assert code == 2 and "--host" in err


def test_the_task_is_listed(inv):
    code, out, _ = inv("--list")
    assert code == 0 and "unprovision" in out


# --- a unit that ran before us: reloaded, never stopped -----------------------------------------

SITE = "/etc/nginx/conf.d/api.conf"
BEFORE = {
    "nginx": {**ROLES["nginx"], "packages": [], "units_before": ["nginx"], "trees": []},
    "backend": {"directories": [], "files": ["/etc/app/pool.conf"], "packages": ["app-server"],
                "trees": [], "units": ["app-server"], "units_before": [], "users": []},
}  # fmt: skip


class Host:
    """The host as the engine's removal run and unprovision ask it: the manifest, the state of
    what it lists (everything present, every unit enabled and running), no survey finding."""

    def __init__(self, roles: dict):
        self.text = manifest.render(roles).decode()
        self.scripts = []

    def run(self, command, sudo=False):
        return CommandResult(self.text, "", 0)

    def run_script(self, script, sudo=False, check=False, timeout=None):
        self.scripts.append(script)
        if "@@resources" in script:  # the system facts
            encoded = base64.b64encode(self.text.encode()).decode()
            return CommandResult(f"os\tdebian\t12\nmanifest\t{encoded}\n@@resources\n", "", 0)
        if "stat -c" in script or "systemctl show" in script:  # what the manifest lists
            stats = [
                f"stat\t{p}\tregular file\t644\troot\troot" for p in (SITE, "/etc/app/pool.conf")
            ]
            units = [f"unit\tId={u}.service\nunit\tUnitFileState=enabled\nunit\tActiveState=active\nunit\t"
                     for u in ("nginx", "app-server")]  # fmt: skip
            return CommandResult("\n".join(stats + units) + "\n", "", 0)
        return CommandResult("", "", 0)  # the survey of app-server: nothing to do


def test_a_unit_that_ran_before_us_is_reloaded_after_our_files_and_the_restores_not_stopped():
    host = Host(BEFORE)
    steps = unprovision._unprovision(host, {}, packages=False, check=True)
    shown = [(s.kind, s.name, s.status) for s in steps]
    commands = [c for s in steps for c in s.commands]
    assert "systemctl disable --now nginx" not in commands
    assert "systemctl disable --now app-server" in commands  # ours: stopped and disabled
    reload = shown.index(("unit", "nginx", "changed"))
    assert shown.index(("file", SITE, "changed")) < reload  # our site goes first
    assert shown.index(("link", "/etc/nginx/sites-enabled/default", "changed")) < reload
    assert shown[reload + 1 :] == [("manifest", MANIFEST, "changed")]
    assert steps[reload].commands == ["systemctl try-reload-or-restart -- nginx"]
    assert (
        steps[reload].reason
        == "backend, nginx left: reloaded without our files (ran before us: stays)"
    )
    assert not any("try-reload" in s or "rm -f" in s for s in host.scripts)  # check: shown only


def test_with_packages_a_unit_that_ran_before_us_is_reloaded_too():
    steps = unprovision._unprovision(Host(BEFORE), {}, packages=True, check=True)
    assert [s.name for s in steps[-2:]] == ["nginx", MANIFEST]
    assert steps[-2].commands == ["systemctl try-reload-or-restart -- nginx"]


def test_a_unit_that_ran_before_us_is_not_disabled_as_a_unit_of_our_packages():
    survey = unprovision.leaving(parse_survey(SURVEYED), manifest.reloaded(BEFORE, {}))
    assert "nginx.service" not in survey.units and "php8.2-fpm.service" in survey.units
