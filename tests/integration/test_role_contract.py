"""A role added as one folder, in a project of its own, runs with no engine change: the
``stamp`` role (defaults, schema, meta with a validator, role.py with one file and a handler)
lives in a temporary project directory, not in the repository's roles/. Provisioned on a fresh
lab host through the real command line: the file appears, a second run changes nothing, a file
its validator refuses is rolled back."""

import textwrap

import pytest

from mtls_deploy import inventory
from mtls_deploy.errors import BadInput

from .conftest import ApiHost, inv, lab_world, needs_lab, run_on

pytestmark = [*needs_lab, pytest.mark.slow]

# Its own name and ports (other modules use 2201-2261 and 2291-2299); no nginx listens.
STAMP_HOST = ApiHost("stamp1", 2271, 8471)
STAMP = "/etc/stamp/stamp.conf"
HANDLED = "/etc/stamp/handled"

ROLE = {
    "defaults.yml": """\
        # stamp: one line in /etc/stamp/stamp.conf.
        stamp_text: "stamp: hello"
        """,
    "schema.yml": """\
        stamp_text:
          type: str
          pattern: "[a-z: ]{1,40}"
          format: lower-case letters, spaces and ':' (at most 40)
          description: the line written to /etc/stamp/stamp.conf
        """,
    "meta.yml": """\
        # The check of the file this role owns: a line that starts with "stamp: ".
        validators:
          stamp:
            command: [sh, -c, 'grep -qx "stamp: [a-z ]*" /etc/stamp/stamp.conf || { echo "error: not a stamp line" >&2; exit 1; }']
            error_lines: "error:"
        """,
    "role.py": """\
        from mtls_deploy.resources import Directory, File, Handler

        def resources(v, facts):
            return [
                Directory("/etc/stamp"),
                File("/etc/stamp/stamp.conf", (v["stamp_text"] + "\\n").encode(),
                     validate="stamp", notify=("stamp changed",)),
            ]

        def handlers(v, facts):
            return [Handler("stamp changed", (("sh", "-c", "echo run >> /etc/stamp/handled"),))]
        """,
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A lab world whose host gets only ``roles: [stamp]``, and the project folder holding
    its inventory and ``roles/stamp/``."""
    with lab_world(tmp_path_factory, [STAMP_HOST], name="Stamp Test") as world:
        folder = world.inventory.parent
        (world.inventory / "host_vars").mkdir(exist_ok=True)
        (world.inventory / "host_vars" / "stamp1.yml").write_text("roles: [stamp]\n")
        role = folder / "roles" / "stamp"
        role.mkdir(parents=True)
        for name, text in ROLE.items():
            (role / name).write_text(textwrap.dedent(text))
        with pytest.MonkeyPatch.context() as patch:  # the project for in-process loads too
            patch.setenv("MTLS_DEPLOY_PROJECT", str(folder))
            yield world


def provision(project, *args, check=True):
    env = {"MTLS_DEPLOY_PROJECT": str(project.inventory.parent)}
    return inv("provision", "--host", STAMP_HOST.name, *args, check=check, env=env)


def on_host(project, command: str) -> str:
    return run_on(project.inventory, STAMP_HOST.name, command, sudo=True)


def test_the_project_role_installs_its_file_and_runs_its_handler(project):
    out = provision(project).stdout
    assert f"changed  {STAMP_HOST.name}  file {STAMP}" in out, out
    assert f"changed  {STAMP_HOST.name}  handler stamp changed" in out, out
    assert on_host(project, f"cat {STAMP}") == "stamp: hello\n"
    assert on_host(project, f"cat {HANDLED}") == "run\n"


def test_a_second_run_is_all_ok(project):
    out = provision(project).stdout
    assert "changed=0 failed=0" in out and "changed " not in out.split("RECAP")[0], out
    assert on_host(project, f"cat {HANDLED}") == "run\n"


def test_a_file_the_validator_refuses_is_rolled_back(project):
    (project.inventory / "host_vars" / "stamp1.yml").write_text(
        'roles: [stamp]\nstamp_text: "broken words"\n'
    )
    try:
        done = provision(project, check=False)
    finally:
        (project.inventory / "host_vars" / "stamp1.yml").write_text("roles: [stamp]\n")
    assert done.returncode != 0
    assert "reverted: sh -c" in done.stdout and "error: not a stamp line" in done.stdout
    assert on_host(project, f"cat {STAMP}") == "stamp: hello\n"  # the old file, back
    assert on_host(project, f"cat {HANDLED}") == "run\n"  # a refused file notifies nothing


def test_the_project_role_s_schema_checks_the_inventory(project):
    with pytest.raises(BadInput, match=r"stamp1: stamp_text .* is not lower-case letters"):
        inventory.load(project.inventory, {"stamp_text": "Stamp; rm -rf /"})
