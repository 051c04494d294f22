"""The release run (mtls_deploy/release/run.py, hosts.py, release_tasks.py) against a fake
host that answers the probe and records every script and upload: round trips, report lines,
failures; and the tasks through the real command line (``inv``)."""

import io
import re

import pytest

from mtls_deploy.connection import CommandResult
from mtls_deploy.release import plan
from mtls_deploy.release import remote as scripts
from mtls_deploy.release.tree import read_tree

OLD = "20261130T080000Z-0a2b3c4d5e6f"
PHP = "pkg\tphp8.2-fpm\tii \t8.2.32-1\n"


class FakeSftp:
    def __init__(self, host):
        self.host = host

    def normalize(self, path):
        return "/home/deploy"

    def open(self, path, mode):
        self.host.uploads.append(path)
        stream = io.BytesIO()
        stream.chmod = lambda mode: self.host.modes.append(mode)
        stream.set_pipelined = lambda flag: None
        return stream

    def close(self):
        pass


class FakeReleaseHost:
    """Answers the probe with ``current``/``releases``; install and switch scripts with
    ``install``/``switch`` (exit status, stdout, stderr)."""

    def __init__(self, current=OLD, releases=(OLD,), provisioned=True):
        self.current, self.releases, self.provisioned = current, list(releases), provisioned
        self.install, self.switch = (0, "", ""), (0, "", "")
        self.scripts, self.uploads, self.modes, self.channels = [], [], [], 0

    def __call__(self, target):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def sftp(self):
        self.channels += 1
        return FakeSftp(self)

    def run_script(self, script, *, sudo=False, check=False, timeout=None):
        self.channels += 1
        self.scripts.append(script)
        if scripts.RELEASES_MARK in script:
            return CommandResult(f"{scripts.RELEASES_MARK}\n" + self.probe(), "", 0)
        if "@@phase" not in script:  # the system facts, before a switch
            return CommandResult(PHP, "", 0)
        status, out, err = self.install if "@@phase extract" in script else self.switch
        return CommandResult(out, err, status)

    def probe(self) -> str:
        if not self.provisioned:
            return ""
        lines = [f"current releases/{self.current}" if self.current else "current "]
        return "provisioned\n" + "\n".join(lines + [f"release {r}" for r in self.releases]) + "\n"


@pytest.fixture
def project(pki_env, monkeypatch):
    """An inventory of api1 (backend php, app_src app/ in the project) and its app."""
    folder = pki_env.root / "inventory"
    (folder / "host_vars").mkdir(parents=True)
    (folder / "hosts.yml").write_text(
        "all:\n  children:\n    api:\n      hosts:\n"
        "        api1: {ansible_host: 127.0.0.1, ansible_port: 2201, ansible_user: deploy,\n"
        "               ansible_become: true, server_name: api1.lab.test, https_port: 8441,\n"
        "               https_listen: 127.0.0.1, backend: php}\n"
    )
    (folder / "host_vars" / "api1.yml").write_text("app_src: app\napp_keep_releases: 2\n")
    app = pki_env.root / "app"
    app.mkdir()
    (app / "index.php").write_text("<?php echo 1;")
    monkeypatch.setenv("MTLS_DEPLOY_INVENTORY", str(folder))
    monkeypatch.setenv("MTLS_DEPLOY_PROJECT", str(pki_env.root))
    return pki_env.root


@pytest.fixture
def fake(monkeypatch):
    host = FakeReleaseHost()
    monkeypatch.setattr("mtls_deploy.release.run.Remote", host)
    return host


def sha12(project) -> str:
    return plan.release_sha12(read_tree(project / "app").digest, "backend_php")


def test_an_unchanged_tree_is_one_round_trip(project, fake, inv):
    fake.current = fake.releases[0] = f"20261130T080000Z-{sha12(project)}"
    code, out, _ = inv("deploy", "--host", "api1")
    assert code == 0 and fake.channels == 1 and fake.uploads == []
    assert re.search(rf"ok +api1  app release {fake.current}  \(the tree is unchanged\)", out)


def test_a_change_uploads_installs_switches_and_prunes(project, fake, inv):
    fake.releases = ["20261130T070000Z-aaaaaaaaaaaa", OLD]
    code, out, _ = inv("deploy", "--host", "api1")
    assert code == 0, out
    assert (
        fake.uploads
        and fake.uploads[0].startswith("/home/deploy/.mtls-deploy-")
        and fake.modes == [0o600]
    )
    new = re.search(
        rf"changed +api1  app release (\d{{8}}T\d{{6}}Z-{sha12(project)})  \(was {OLD}\)", out
    )
    assert new, out
    assert (
        "changed  api1  app release 20261130T070000Z-aaaaaaaaaaaa  (pruned (app_keep_releases))"
        in out
    )
    facts, install, switch = fake.scripts[1:]
    assert "dpkg-query" in facts and "dpkg-query" not in fake.scripts[0]
    assert (
        "runuser -u api-php" in install and "php -d display_errors" in install
    )  # php -l, as the pool's user
    assert f"releases/{new.group(1)}.partial" in install and "ln -sfn" in switch
    assert fake.channels == 5  # probe, facts, sftp, install, switch


def test_check_sends_and_changes_nothing(project, fake, inv):
    code, out, _ = inv("deploy", "--host", "api1", "--check")
    assert code == 0 and "would deploy (was " in out
    assert fake.uploads == [] and len(fake.scripts) == 1


def test_a_refused_release_is_one_line_and_exit_1(project, fake, inv):
    fake.install = (
        1,
        "@@phase extract\n@@phase check\n",
        "PHP Parse error: syntax error in index.php on line 1\n",
    )
    code, out, err = inv("deploy", "--host", "api1")
    assert code == 1 and err == "failed on: api1\n"
    assert re.search(
        r"failed +api1  app release \S+  \(refused at check: PHP Parse error: syntax error", out
    )
    assert len(fake.scripts) == 3  # probe, facts, install: nothing switched


def test_a_failed_activation_says_so(project, fake, inv):
    fake.switch = (1, "@@phase start\n@@phase switch\n@@phase activate\n", "reload failed\n")
    code, out, _ = inv("deploy", "--host", "api1")
    assert code == 1 and "(not switched at activate: reload failed)" in out
    fake.switch = (1, "@@phase activate\n@@restore-failed\n", "reload failed\n")
    _, out, _ = inv("deploy", "--host", "api1")
    assert (
        "(not switched at activate: reload failed; the previous release could not be re-activated)"
        in out
    )
    fake.switch = (1, "@@phase activate\n@@phase prune\n@@phase retire\n", "stop failed\n")
    _, out, _ = inv("deploy", "--host", "api1")
    assert "(switched, but retire failed: stop failed)" in out


def test_an_unprovisioned_host_says_to_provision(project, fake, inv):
    fake.provisioned = False
    code, out, _ = inv("deploy", "--host", "api1")
    assert code == 1 and "api1  /srv/api/releases is missing: run inv provision first" in out


def test_a_tree_already_on_the_host_is_switched_to_without_upload(project, fake, inv):
    earlier = f"20261130T070000Z-{sha12(project)}"
    fake.releases = [earlier, OLD]
    code, out, _ = inv("deploy", "--host", "api1")
    assert code == 0 and fake.uploads == [] and len(fake.scripts) == 3  # probe, facts, switch
    assert f"app release {earlier}  (the same tree, already on the host; was {OLD})" in out


def test_rollback_switches_to_the_release_before_current(project, fake, inv):
    fake.releases, fake.current = ["20261130T070000Z-aaaaaaaaaaaa", OLD], OLD
    code, out, _ = inv("rollback", "--host", "api1")
    assert code == 0 and "app release 20261130T070000Z-aaaaaaaaaaaa  (rollback; was " in out
    switch = fake.scripts[-1]
    assert "@@phase extract" not in switch and "rm -rf -- " not in switch.split("@@phase prune")[0]


def test_rollback_without_an_older_release_is_one_line(project, fake, inv):
    code, out, _ = inv("rollback", "--host", "api1")
    assert code == 1 and f"no release before {OLD} to roll back to" in out


def test_a_missing_app_src_is_one_line_before_any_connection(project, fake, inv):
    (project / "inventory" / "host_vars" / "api1.yml").write_text("app_src: nowhere\n")
    for task in ("deploy", "provision"):
        code, out, err = inv(task, "--host", "api1")
        assert (code, out) == (2, "") and fake.channels == 0
        assert err.startswith("error: api1: app_src nowhere is not a directory (looked for ")
        assert err.count("\n") == 1


def test_a_refused_tree_is_one_line_before_any_connection(project, fake, inv):
    (project / "app" / "id_rsa").write_text("-----BEGIN RSA PRIVATE KEY-----\nx\n")
    code, out, err = inv("deploy", "--host", "api1")
    assert (code, out) == (2, "") and fake.channels == 0
    assert re.fullmatch(r"error: api1: app_src \S+: id_rsa holds a private key \(PEM\): .*\n", err)


def test_a_host_without_app_src_cannot_deploy(project, fake, inv):
    (project / "inventory" / "host_vars" / "api1.yml").write_text("backend: php\n")
    code, _, err = inv("deploy", "--host", "api1")
    assert code == 2 and err.startswith("error: api1: app_src is not set")


def test_a_backend_without_a_release_hook_is_one_line(project, fake, inv, monkeypatch):
    from mtls_deploy import role_loader

    monkeypatch.delattr(role_loader.load("backend_php").module, "release")
    code, _, err = inv("deploy", "--host", "api1")
    assert code == 1 and err.startswith("error: api1: backend php cannot deploy app_src")
    assert fake.channels == 0


def test_an_environment_value_missing_here_is_one_line_before_any_connection(project, fake, inv):
    (project / "inventory" / "host_vars" / "api1.yml").write_text(
        "app_src: app\napp_environment: {DB_URL: {env: API1_DB_URL_UNSET}, MODE: hunter2}\n"
    )
    code, out, err = inv("provision", "--host", "api1")
    assert (code, out) == (2, "") and fake.channels == 0
    assert err == (
        "error: api1: app_environment.DB_URL comes from $API1_DB_URL_UNSET, which is not set on "
        "this machine: export API1_DB_URL_UNSET before running, or give the value in the inventory\n"
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("app_keep_releases: 1", "api1: app_keep_releases 1 is out of range (2-100)"),
        ("app_shared: [../etc]", "api1: app_shared '../etc' is not a relative directory"),
        (
            "app_environment: {1X: a}",
            "api1: app_environment has a bad key: '1X' is not an environment variable name",
        ),
    ],
)
def test_bad_app_variables_are_one_line_exit_2(project, fake, inv, line, message):
    (project / "inventory" / "host_vars" / "api1.yml").write_text(f"app_src: app\n{line}\n")
    code, out, err = inv("deploy", "--host", "api1")
    assert (code, out) == (2, "") and fake.channels == 0
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err


def test_inv_inventory_masks_the_apps_environment(project, inv):
    (project / "inventory" / "host_vars" / "api1.yml").write_text(
        "app_src: app\napp_environment: {DATABASE_URL: 'postgres://u:hunter2@db/x'}\n"
    )
    code, out, _ = inv("inventory", "--host", "api1")
    assert code == 0 and "app_environment = '********'" in out and "hunter2" not in out


def test_json_is_one_document_with_the_steps(project, fake, inv):
    import json

    code, out, _ = inv("deploy", "--host", "api1", "--json")
    document = json.loads(out)
    assert code == 0 and document["failed"] == []
    [step] = document["hosts"]["api1"]["steps"]
    assert step["kind"] == "app" and step["status"] == "changed" and step["reason"] == f"was {OLD}"
