"""The bundle README's recipes, run as a consumer would: the text of README.txt, cut into its
recipes, against a provisioned lab API, from a copy of the bundle folder on this machine.

- curl runs its line with ``--resolve`` (the API's name pinned to 127.0.0.1);
- Python (requests, httpx: installed in a virtualenv of the test's own), Node 20 and Java 17
  cannot pin a name from their command line: each runs in a mount namespace of its own whose
  ``/etc/hosts`` names the API (``unshare -m`` + a bind mount: the same effect as the issue's
  /etc/hosts line on a lab host, without touching this machine's file).

Lab hosts of its own: cr-api (SSH 2385, HTTPS 8585) and the consumer cr-bob (SSH 2386).
"""

import json
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mtls_deploy import inventory, lab
from mtls_deploy.pki.store import PkiStore

from .conftest import (
    ApiHost,
    inv,
    needs_lab,
    pki_environment,
    provision_cleanly,
    run_on,
    write_api_consumer_inventory,
)

pytestmark = [*needs_lab, pytest.mark.skipif(not shutil.which("unshare"), reason="no unshare")]

API = ApiHost("cr-api", 2385, 8585)
CONSUMER, CONSUMER_PORT = "cr-bob", 2386
URL = f"https://{API.server_name}:{API.https_port}/whoami"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """cr-api provisioned, cr-bob's bundle issued and delivered; yields its dist/ folder."""
    base = tmp_path_factory.mktemp("recipes-world")
    folder = write_api_consumer_inventory(base / "inventory", API, CONSUMER, CONSUMER_PORT)
    with pki_environment(base, "recipes-test"), pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTLS_DEPLOY_INVENTORY", str(folder))
        PkiStore().init(name="Recipes API", key_type="ec")
        hosts = lab.hosts_from_inventory(inventory.load(folder).select())
        lab.reset(hosts)
        try:
            provision_cleanly(folder, API.name)
            inv("issue-client", "--name", CONSUMER)
            yield base / "dist" / CONSUMER
        finally:
            lab.down(hosts)


@pytest.fixture
def bundle(world, tmp_path) -> Path:
    """A copy of the bundle to run a recipe in (Java's keytool writes its truststore there)."""
    return Path(shutil.copytree(world, tmp_path / "bundle"))


@pytest.fixture(scope="module")
def python(tmp_path_factory) -> Path:
    """A virtualenv's python with requests and httpx."""
    venv = tmp_path_factory.mktemp("recipes-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "requests", "httpx"], check=True, capture_output=True, timeout=300)
    return venv / "bin" / "python"


@pytest.fixture(scope="module")
def hosts_file(tmp_path_factory) -> Path:
    """This machine's /etc/hosts plus the API's name on 127.0.0.1."""
    path = tmp_path_factory.mktemp("resolver") / "hosts"
    path.write_text(Path("/etc/hosts").read_text() + f"\n127.0.0.1 {API.server_name}\n")
    return path


def recipe(readme: str, title: str) -> str:
    """The lines indented under the line starting with ``title``, dedented."""
    lines = readme.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(title)) + 1
    block = []
    for line in lines[start:]:
        if line and not line.startswith("    "):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block)).strip("\n") + "\n"


def pinned(argv: list, cwd: Path, hosts: Path) -> subprocess.CompletedProcess:
    """``argv`` in ``cwd``, in a mount namespace whose /etc/hosts is ``hosts``."""
    script = 'mount --bind "$0" /etc/hosts && exec "$@"'
    return subprocess.run(["unshare", "-m", "sh", "-c", script, str(hosts), *map(str, argv)],
                          cwd=cwd, capture_output=True, text=True, timeout=120)  # fmt: skip


def whoami(done: subprocess.CompletedProcess) -> dict:
    """The API's answer, asserting that the recipe succeeded."""
    assert done.returncode == 0, done.stdout + done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["verified"] == "SUCCESS", answer
    return answer["subject"]


def readme_of(bundle: Path) -> str:
    return (bundle / "README.txt").read_text()


def test_the_readme_names_the_api_with_its_port_and_is_delivered(world):
    readme = readme_of(world)
    assert (
        f"The API you may call with it:\n    https://{API.server_name}:{API.https_port}/\n"
        in readme
    )
    delivered = run_on(world.parents[1] / "inventory", CONSUMER, "cat .mtls/api/README.txt")
    assert delivered == readme
    assert not (world / f"{CONSUMER}.p12.pass").read_bytes().endswith(b"\n")


def test_curl(bundle):
    argv = shlex.split(recipe(readme_of(bundle), "curl:"))
    assert argv[-1] == URL
    resolve = ["--resolve", f"{API.server_name}:{API.https_port}:127.0.0.1", "-sS"]
    done = subprocess.run([*argv[:-1], *resolve, URL], cwd=bundle, capture_output=True, text=True)
    assert whoami(done)["CN"] == CONSUMER


@pytest.mark.parametrize("title", ["Python (requests):", "Python (httpx):"])
def test_python(bundle, python, hosts_file, title):
    (bundle / "recipe.py").write_text(recipe(readme_of(bundle), title))
    assert whoami(pinned([python, "recipe.py"], bundle, hosts_file))["CN"] == CONSUMER


def test_node_reads_the_p12_and_its_password_file_as_they_are(bundle, hosts_file):
    code = recipe(readme_of(bundle), "Node (")
    assert f'readFileSync("{CONSUMER}.p12.pass", "utf8")' in code
    (bundle / "recipe.js").write_text(code)
    assert whoami(pinned(["node", "recipe.js"], bundle, hosts_file))["CN"] == CONSUMER


def test_java_truststore_from_api_ca_and_the_p12(bundle, hosts_file):
    readme = readme_of(bundle)
    (bundle / "Whoami.java").write_text(recipe(readme, "with Whoami.java:"))
    shell = recipe(readme, "Java (")
    assert shell.startswith("keytool -importcert") and shell.endswith("java Whoami.java\n")
    done = pinned(["sh", "-ec", shell], bundle, hosts_file)
    assert whoami(done)["CN"] == CONSUMER
