"""backend_python with the user's application (app_src, issue 12): what the role wants with and
without it, the uWSGI settings that make a switch graceful, and the release hook's steps."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from mtls_deploy import schema
from mtls_deploy.facts import HostFacts
from mtls_deploy.release import venv as release_venv
from mtls_deploy.release.instances import INSTANCES
from mtls_deploy.release.steps import ReleaseContext
from mtls_deploy.resources import Absent, Directory, Packages, Service
from mtls_deploy.role_loader import load
from mtls_deploy.templating import TEMPLATES_DIR
from tests.unit.locks import holding

backend_python = load("backend_python").module
FACTS = HostFacts(os_id="debian", os_version="12")
INI = "/etc/api-python/uwsgi.ini"
SERVICE = "/etc/systemd/system/api-python.service"
TEMPLATE_UNIT = "/etc/systemd/system/api-python@.service"
STAGED = "/etc/mtls-deploy/api/api-python.conf"
REQUIREMENTS_SHA = "1a2b3c4d5e6f" + "0" * 52


def as_the_engine_gives(v: dict, role: str) -> dict:
    """``v`` over every role's defaults, plus what the roles ``role`` depends on export to it."""
    from mtls_deploy import role_loader
    from mtls_deploy.inventory import role_defaults

    merged = {k: x for layer in role_defaults() for k, x in layer.values.items()} | v
    roles = role_loader.host_roles({**merged, "roles": [role]})
    return role_loader.with_exports(roles, merged, HostFacts())[role]


def python_vars(**overrides) -> dict:
    v = {
        "inventory_hostname": "api1",
        "server_name": "api1.lab.test",
        "https_listen": "127.0.0.1",
        "https_port": 8441,
        "backend": "python",
    }
    return as_the_engine_gives({**v, **overrides}, role="backend_python")


def app_vars(**overrides) -> dict:
    app = {"app_src": "examples/flask-orders", "python_wsgi": "orders:app",
           "app_shared": ["var", "storage/"]}  # fmt: skip
    return python_vars(**{**app, **overrides})


def ini_lines(v: dict) -> list[tuple[str, str]]:
    """uwsgi.ini as (key, value) pairs in order: uWSGI takes a key several times."""
    text = backend_python.render_units(v)[INI].decode()
    pairs = [line.partition("=") for line in text.splitlines() if "=" in line]
    return [(k.strip(), value.strip()) for k, _, value in pairs if not k.startswith("#")]


def ini_settings(v: dict) -> dict:
    """The keys uWSGI reads once, each with its value."""
    return {k: value for k, value in ini_lines(v) if k != "route-run"}


def unit_lines(v: dict) -> list[str]:
    return backend_python.render_units(v)[SERVICE].decode().splitlines()


def instance_unit_lines(v: dict) -> list[str]:
    return backend_python.render_units(v)[TEMPLATE_UNIT].decode().splitlines()


def staged_lines(v: dict) -> list[str]:
    return backend_python.render_units(v)[STAGED].decode().splitlines()


def context(**overrides) -> ReleaseContext:
    fields = dict(
        api_name="api",
        root="/srv/api",
        release="/srv/api/releases/20261130T081500Z-abcdefabcdef",
        build_dir="/srv/api/releases/20261130T081500Z-abcdefabcdef.partial",
        release_id="20261130T081500Z-abcdefabcdef",
        current="/srv/api/current",
        previous=None,
        shared_root="/srv/api/shared",
        shared=("var",),
        env_file="/etc/mtls-deploy/api/app.env",
        files=frozenset({"orders.py", "requirements.txt"}),
        digests={"requirements.txt": REQUIREMENTS_SHA},
    )
    return ReleaseContext(**{**fields, **overrides})


# --- resources: today's without app_src, the app's with it -------------------------------------


def test_without_app_src_the_role_is_as_before():
    v = python_vars()
    resources = backend_python.resources(v, FACTS)
    assert [r for r in resources if isinstance(r, Packages)] == [
        Packages(("uwsgi-core", "uwsgi-plugin-python3"))
    ]
    assert not any(isinstance(r, Directory) and r.path.startswith("/srv/api/") for r in resources)
    settings = ini_settings(v)
    assert settings["wsgi-file"] == "/srv/api-python/app.py"
    assert settings["worker-reload-mercy"] == "3"
    assert not {"module", "lazy-apps", "virtualenv", "master-fifo", "route-run"} & {
        k for k, _ in ini_lines(v)
    }
    lines = unit_lines(v)
    assert not [x for x in lines if x.startswith(("ConditionPath", "EnvironmentFile", "Runtime"))]
    assert backend_python.exports(v, FACTS)["front_controller"] == "/srv/api-python/app.py"


def test_with_app_src_python3_venv_is_installed_and_venvs_and_shared_dirs_are_the_users():
    resources = backend_python.resources(app_vars(), FACTS)
    assert Packages(("uwsgi-core", "uwsgi-plugin-python3", "python3-venv")) in resources
    files = [r.path for r in resources if hasattr(r, "content")]
    assert "/srv/api-python/app.py" in files  # the built-in app stays where it was
    assert not [f for f in files if f.startswith("/srv/api/")]  # releases are the pipeline's
    directories = {r.path: r for r in resources if isinstance(r, Directory)}
    assert directories["/srv/api/venvs"] == Directory(
        "/srv/api/venvs", mode=0o755, owner="api-python", group="api-python"
    )
    for shared in ("/srv/api/shared/var", "/srv/api/shared/storage"):
        assert directories[shared] == Directory(
            shared, mode=0o750, owner="api-python", group="api-python"
        )


def test_with_app_src_the_master_imports_the_callable_once_and_instances_name_their_release():
    settings = ini_settings(app_vars())
    assert settings["module"] == "orders:app"
    assert settings["need-app"] == "true"  # an app that does not load: the instance never ready
    assert settings["chmod-socket"] == "666"  # in a directory only nginx's group may enter
    assert settings["worker-reload-mercy"] == "30"  # = harakiri: a request ends before its worker
    assert not {"lazy-apps", "hook-post-fork", "pythonpath", "chdir", "virtualenv", "master-fifo",
                "protocol", "wsgi-file"} & {k for k, _ in ini_lines(app_vars())}  # fmt: skip
    # Flask routes on PATH_INFO: the whole path ($uri), mounted at /
    assert [x for k, x in ini_lines(app_vars()) if k == "route-run"] == [
        "setpathinfo:${DOCUMENT_URI}",
        "setscriptname:",
    ]
    staged = staged_lines(app_vars())
    exec_start = next(x for x in staged if x.startswith("ExecStart="))
    mark = backend_python.MARK
    assert exec_start.split()[1:] == [
        "--ini", INI,
        "--fastcgi-socket", "/run/api-python/%i/app.sock",
        "--master-fifo", "/run/api-python/%i/master.fifo",
        "--chdir", f'"{mark}"', "--pythonpath", f'"{mark}"', "--virtualenv", f'"{mark}/.venv"',
    ]  # fmt: skip
    assert f"ConditionPathExists={mark}" in staged and f"WorkingDirectory={mark}" in staged


def test_a_changed_uwsgi_ini_changes_the_staged_settings_so_a_new_instance_starts():
    """A running instance keeps the settings it started with: a new uwsgi.ini reaches the app
    through a new instance, which the staged settings' change brings (the handler)."""
    one, two = app_vars(), app_vars(python_processes=3)
    assert staged_lines(one) != staged_lines(two)
    changed = {r.path for r in backend_python.resources(two, FACTS) if hasattr(r, "content")}
    assert STAGED in changed


def test_with_app_src_the_instances_read_the_environment_file_and_stop_gracefully():
    lines = instance_unit_lines(app_vars())
    assert "EnvironmentFile=/etc/mtls-deploy/api/app.env" in lines
    assert "ReadWritePaths=-/srv/api/shared -/run/api-python/%i" in lines
    assert "ProtectSystem=strict" in lines and "Type=notify" in lines
    assert (
        "ExecStartPre=+/usr/bin/install -d -o api-python -g www-data -m 0750 /run/api-python/%i"
        in lines
    )
    # die-on-term cuts requests short: a stop asks the master for a graceful shutdown first
    stop = next(x for x in lines if x.startswith("ExecStop="))
    assert "printf q > /run/api-python/%i/master.fifo" in stop
    assert "TimeoutStopSec=45s" in lines  # > worker-reload-mercy (30)


def test_with_app_src_the_built_in_socket_and_service_go():
    """A host that served the built-in app before its first release: its socket-activated
    service stops and its unit files go (nginx now connects through the release's link)."""
    resources = backend_python.resources(app_vars(), FACTS)
    assert Service("api-python.service", running=False, enabled=False) in resources
    assert Service("api-python.socket", running=False, enabled=False) in resources
    gone = {r.path for r in resources if isinstance(r, Absent)}
    assert gone == {SERVICE, "/etc/systemd/system/api-python.socket"}
    files = {r.path for r in resources if hasattr(r, "content")}
    assert {TEMPLATE_UNIT, STAGED} <= files and SERVICE not in files
    assert Directory("/run/api-python", tree=True) in resources


def test_with_app_src_nginx_connects_through_the_current_releases_link():
    exported = backend_python.exports(app_vars(), FACTS)
    assert exported["fastcgi_socket"] == "/srv/api/current/.python.sock"
    assert exported["fastcgi_retry"] is True


def test_the_front_controller_names_the_module_under_current():
    exported = backend_python.exports(app_vars(python_wsgi="myapi.wsgi:application"), FACTS)
    assert exported["front_controller"] == "/srv/api/current/myapi/wsgi.py"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_with_app_src_the_instances_still_rate_at_most_2(tmp_path):
    """An instance as instances.sh starts it: the template unit and its release's settings."""
    files = backend_python.render_units(app_vars())
    release = b"/srv/api/releases/20261130T081500Z-abcdefabcdef"
    unit = tmp_path / "api-python@r1.service"
    staged = files[STAGED].replace(backend_python.MARK.encode(), release)
    unit.write_bytes(files[TEMPLATE_UNIT] + b"\n" + staged)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
    )
    match = re.search(
        r"Overall exposure level for api-python@r1\.service: (\d+\.\d+)", result.stdout
    )
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0


def test_a_changed_environment_file_restarts_the_service():
    handlers = {h.name: h for h in backend_python.handlers(app_vars(), FACTS)}
    assert handlers["restart backend"].listen == ("app environment changed",)


# --- python_wsgi ------------------------------------------------------------------------------

WSGI_SPEC = schema.role_schema("backend_python")["python_wsgi"]


@pytest.mark.parametrize("value", ["orders:app", "myapi.wsgi:application", "_a.b_2.c:make_app"])
def test_python_wsgi_accepts_module_colon_callable(value):
    assert schema.check_value(value, WSGI_SPEC) == value


@pytest.mark.parametrize(
    "value",
    ["orders", "orders:app()", "orders:app; rm -rf /", "../orders:app", "orders.:app",
     "2fa:app", "orders:app\nmodule = os:system", ":app", "orders:"],
)  # fmt: skip
def test_python_wsgi_refuses_anything_else_saying_what_it_takes(value):
    with pytest.raises(ValueError, match="package.module:callable"):
        schema.check_value(value, WSGI_SPEC)


# --- the release hook -------------------------------------------------------------------------


def test_release_steps_build_check_activate_retire():
    steps = backend_python.release(app_vars(), FACTS, context())
    assert steps.user == "api-python"
    assert steps.build == (
        (("sh", "-c", release_venv.BUILD_VENV, "build-venv", "/srv/api/venvs/1a2b3c4d5e6f",
          "../../venvs/1a2b3c4d5e6f"),),
    )  # fmt: skip
    assert steps.check == (
        ((".venv/bin/python", "-B", "-c", backend_python.CHECK_WSGI, "orders", "app"),),
    )
    release = "/srv/api/releases/20261130T081500Z-abcdefabcdef"
    link = ".python.sock"
    assert steps.start == (
        (("sh", "-c", INSTANCES, "instances", "start", link, "api-python", STAGED, release, "",
          "60"),),
    )  # fmt: skip
    assert steps.activate == (
        (("sh", "-c", INSTANCES, "instances", "activate", link, "api-python", release),),
    )
    assert steps.retire == (
        (("sh", "-c", release_venv.RETIRE_VENVS, "retire-venvs", "/srv/api"),),
    )  # fmt: skip  (a first release retires no instance)
    previous = "/srv/api/releases/20261129T120000Z-ffffffffffff"
    retire = backend_python.release(app_vars(), FACTS, context(previous=previous)).retire
    assert retire[0] == (("sh", "-c", INSTANCES, "instances", "retire", link, "api-python",
                          previous),)  # fmt: skip


def test_with_app_src_the_handler_restarts_the_current_release_blue_green():
    (handler,) = backend_python.handlers(app_vars(), FACTS)
    assert (handler.name, handler.order, handler.listen) == (
        "restart backend", 40, ("app environment changed",))  # fmt: skip
    assert handler.command == (
        ("sh", "-c", INSTANCES, "instances", "restart", ".python.sock", "api-python", STAGED,
         "/srv/api", "", "60"),
    )  # fmt: skip


def test_a_tree_without_requirements_gets_the_empty_files_virtualenv():
    steps = backend_python.release(app_vars(), FACTS, context(digests={}))
    assert steps.build[0][0][4] == "/srv/api/venvs/e3b0c44298fc"  # sha256 of no bytes


@pytest.mark.parametrize(
    "script", ["BUILD_VENV", "RETIRE_VENVS", "INSTANCES"]
)  # fmt: skip
def test_the_scripts_are_valid_sh(script):
    text = INSTANCES if script == "INSTANCES" else getattr(release_venv, script)
    done = subprocess.run(["sh", "-n", "-c", text], capture_output=True)
    assert done.returncode == 0, done.stderr


def run_build(tmp_path, venv: str) -> subprocess.CompletedProcess:
    build = tmp_path / "release.partial"
    build.mkdir(exist_ok=True)
    argv = ["sh", "-c", release_venv.BUILD_VENV, "build-venv", venv, "../../venvs/x"]
    return subprocess.run(argv, cwd=build, capture_output=True, text=True)


def test_an_existing_virtualenv_is_reused_not_rebuilt(tmp_path):
    venv = tmp_path / "venvs" / "x"
    (venv / "bin").mkdir(parents=True)
    (venv / ".complete").touch()
    (venv / "bin" / "marker").write_text("built before")
    done = run_build(tmp_path, str(venv))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "virtualenv x: reused, not rebuilt"
    assert (venv / "bin" / "marker").read_text() == "built before"
    assert os.readlink(tmp_path / "release.partial" / ".venv") == "../../venvs/x"


def test_retire_removes_only_virtualenvs_no_release_links(tmp_path):
    for name in ("kept", "building", "unused"):
        (tmp_path / "venvs" / name).mkdir(parents=True)
    for release, venv in (("r1", "kept"), ("r2", "kept"), ("r3.partial", "building")):
        (tmp_path / "releases" / release).mkdir(parents=True)
        (tmp_path / "releases" / release / ".venv").symlink_to(f"../../venvs/{venv}")
    argv = ["sh", "-c", release_venv.RETIRE_VENVS, "retire-venvs", str(tmp_path)]
    assert subprocess.run(argv, capture_output=True).returncode == 0
    assert sorted(p.name for p in (tmp_path / "venvs").iterdir()) == ["building", "kept"]


def holding_venvs(tmp_path, then: str) -> subprocess.Popen:
    """Another deploy's build: holds venvs/ as BUILD_VENV does, runs ``then`` (sh, in
    ``tmp_path``) after a while, and lets go."""
    venvs = tmp_path / "venvs"
    venvs.mkdir(exist_ok=True)
    return holding(venvs, ["sh", "-c", f"sleep 0.5; {then}"], cwd=tmp_path)


def test_a_second_build_of_the_same_virtualenv_waits_for_the_first_then_reuses_it(tmp_path):
    first = holding_venvs(tmp_path, "mkdir venvs/x && touch venvs/x/.complete")
    done = build_with(tmp_path, fake_python(tmp_path, pip_exit=0), "flask==3.1.3\n")
    assert first.wait() == 0
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "virtualenv x: reused, not rebuilt"  # not its rm -rf and pip


def test_retire_waits_for_a_build_in_progress_and_keeps_what_it_links(tmp_path):
    (tmp_path / "releases" / "r9.partial").mkdir(parents=True)
    (tmp_path / "venvs" / "new").mkdir(parents=True)  # being built: linked at the build's end
    build = holding_venvs(tmp_path, "ln -s ../../venvs/new releases/r9.partial/.venv")
    argv = ["sh", "-c", release_venv.RETIRE_VENVS, "retire-venvs", str(tmp_path)]
    assert subprocess.run(argv, capture_output=True).returncode == 0
    assert build.wait() == 0
    assert (tmp_path / "venvs" / "new").is_dir()


def check_import(tmp_path, module: str, attribute: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-B", "-c", backend_python.CHECK_WSGI, module, attribute]
    return subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True)


@pytest.mark.parametrize(
    "module, attribute, reason",
    [
        ("orders", "app", None),
        ("nope", "app", "ModuleNotFoundError: No module named 'nope'"),
        ("orders", "nothing", "AttributeError: module 'orders' has no attribute 'nothing'"),
        ("orders", "NAME", "orders:NAME is not callable"),
        ("broken", "app", "ZeroDivisionError: division by zero"),
    ],
)
def test_the_check_imports_the_callable_and_its_last_line_says_why_not(
    tmp_path, module, attribute, reason
):
    (tmp_path / "orders.py").write_text("NAME = 'x'\ndef app(environ, start_response):\n    pass\n")
    (tmp_path / "broken.py").write_text("app = 1 / 0\n")
    done = check_import(tmp_path, module, attribute)
    if reason is None:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode != 0
        assert done.stderr.strip().splitlines()[-1] == reason
    assert not (tmp_path / "__pycache__").exists()  # -B: the release stays as uploaded


def test_the_units_templates_read_only_declared_or_exported_app_variables():
    for name in ("uwsgi.ini.j2", "api.service.j2"):
        text = (TEMPLATES_DIR / "backend_python" / name).read_text()
        used = set(re.findall(r"\b(app_\w+)", " ".join(re.findall(r"\{[{%](.*?)[}%]\}", text))))
        assert used <= {"app_enabled", *backend_python.APP_VARIABLES}, name


@pytest.mark.parametrize(
    "requirements, hashed",
    [
        ("flask==3.1.3 --hash=sha256:f4bc\n", True),
        ("flask==3.1.3 \\\n    --hash=sha256:f4bc\n", True),
        ("# pin with --hash=sha256:... to check them\nflask==3.1.3\n", False),
        ("flask==3.1.3\n", False),
    ],
)
def test_hashes_are_required_when_a_requirement_has_one_not_a_comment(
    tmp_path, requirements, hashed
):
    """The hash test of BUILD_VENV, run alone: a comment naming --hash= must not turn it on."""
    line = next(x for x in release_venv.BUILD_VENV.splitlines() if "--require-hashes" in x)
    (tmp_path / "requirements.txt").write_text(requirements)
    script = f"set -- none\n{line.strip()}\necho $1"
    done = subprocess.run(["sh", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert done.stdout.strip() == ("--require-hashes" if hashed else "none")


def fake_python(tmp_path, pip_exit: int):
    """A stand-in for Debian's python3 whose ``-m venv DIR`` makes DIR/bin/pip print its
    arguments on stderr and exit ``pip_exit``."""
    fake = tmp_path / "python3"
    pip = f'#!/bin/sh\\necho "pip $*" >&2\\nexit {pip_exit}\\n'
    fake.write_text(
        f'#!/bin/sh\nmkdir -p "$3/bin"\nprintf \'{pip}\' > "$3/bin/pip"\nchmod +x "$3/bin/pip"\n'
    )
    fake.chmod(0o755)
    return fake


def build_with(tmp_path, fake, requirements: str) -> subprocess.CompletedProcess:
    script = release_venv.BUILD_VENV.replace("/usr/bin/python3", str(fake))
    build = tmp_path / "release.partial"
    build.mkdir()
    (tmp_path / "venvs").mkdir(exist_ok=True)  # the role's Directory on a host
    (build / "requirements.txt").write_text(requirements)
    argv = ["sh", "-c", script, "build-venv", str(tmp_path / "venvs" / "x"), "../../venvs/x"]
    return subprocess.run(argv, cwd=build, capture_output=True, text=True)


def test_a_failed_pip_install_leaves_no_virtualenv_and_its_last_line_is_the_reason(tmp_path):
    done = build_with(tmp_path, fake_python(tmp_path, 1), "nothing-such==1\n")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == "pip install --quiet -r requirements.txt"
    assert not (tmp_path / "venvs" / "x").exists()  # never reused half-built
    assert not (tmp_path / "release.partial" / ".venv").exists()


def test_a_new_virtualenv_is_built_and_linked(tmp_path):
    """The whole build with a stand-in for Debian's python3 (an absolute path in the script)."""
    done = build_with(tmp_path, fake_python(tmp_path, 0), "flask==3.1.3 --hash=sha256:ab\n")
    build, venv = tmp_path / "release.partial", tmp_path / "venvs" / "x"
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "virtualenv x: built"
    assert done.stderr.strip() == "pip install --quiet --require-hashes -r requirements.txt"
    assert (venv / ".complete").exists()
    assert os.readlink(build / ".venv") == "../../venvs/x"


FAKE_JOURNALCTL = """#!/bin/sh
# The lines of $LOG as a journal: the cursor is a line count.
case "$*" in
  *--show-cursor*) echo "-- cursor: $(wc -l < "$LOG")" ;;
  *--after-cursor=*) n=${*##*--after-cursor=}; tail -n +$((n + 1)) "$LOG" ;;
  *) cat "$LOG" ;;
esac
"""
FAKE_SYSTEMCTL = """#!/bin/sh
case "$1" in show) echo 4194303 ;; esac  # is-active: yes; MainPID: no such process
"""
