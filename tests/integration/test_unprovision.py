"""``inv unprovision`` on the lab: un-api (SSH 2365, HTTPS 8565, the PHP backend) provisioned,
then unprovisioned, and compared with un-ref (SSH 2366), a fresh host of the same base that was
never provisioned: "back as it was".

- Every path, unit and user of un-api's manifest is gone, and the manifest too.
- Without --packages: the enabled units are un-ref's; ``dpkg --verify`` is clean; /etc differs
  only by what belongs to the packages un-api has and un-ref has not (their files, what their
  maintainer scripts made in their own directories, their rc.d links and alternatives).
- With --packages: the package list is un-ref's too, and /etc differs by nothing.
- A web server that served a site of its own before our first run (a real server's other
  sites) is still enabled and serving after unprovision; our site is gone from it.

Never compared: what makes each host itself (host name, machine id, SSH host keys, the lab's
sshd drop-in with the host's port), the backups the shadow tools keep of the previous
passwd/group (``/etc/passwd-``, ...: the api-php user's line stays in them) and ldconfig's
cache (rebuilt from whatever libraries are installed).
"""

import json
import shlex

import pytest

from mtls_deploy import inventory, lab
from mtls_deploy.facts import MANIFEST
from mtls_deploy.operations import install_without_starting

from .conftest import ROOT, ApiHost, inv, make_pki_with_client, needs_lab, pki_environment, remote

pytestmark = needs_lab

# Their own names and ports (no other module uses 2365, 2366 or 8565).
API = ApiHost("un-api", 2365, 8565, "php")
REF, REF_PORT = "un-ref", 2366
OWN_IDENTITY = (
    "./hostname", "./hosts", "./machine-id", "./passwd-", "./group-", "./shadow-", "./gshadow-",
    "./subuid-", "./subgid-", "./ld.so.cache",
    "./ssh/sshd_config.d/10-mtls-deploy-lab.conf",  # the lab's, with the host's own SSH port
)  # fmt: skip
# What a package's maintainer scripts make where no package's files are (dpkg -S knows nothing
# of it): sgml-base's postinst writes the SGML super catalog (php's composer pulls it in).
MADE_BY = {"/etc/sgml": "sgml-base", "/etc/sgml/catalog": "sgml-base"}
# Every entry of /etc: path, type, and content hash or link target, with mode and owner.
ETC_LISTING = r"""cd /etc && find . -xdev | LC_ALL=C sort | while IFS= read -r p; do
  if [ -L "$p" ]; then echo "$p L $(readlink "$p")"
  elif [ -d "$p" ]; then echo "$p D $(stat -c %a:%U:%G "$p")"
  else echo "$p F $(sha256sum < "$p" | cut -c1-16) $(stat -c %a:%U:%G "$p")"; fi
done"""
ENABLED = "systemctl list-unit-files --state=enabled --no-legend | awk '{print $1}' | LC_ALL=C sort"
PACKAGES = "dpkg-query -W -f='${db:Status-Abbrev} ${Package}\\n' | awk '$1 == \"ii\" {print $2}' | LC_ALL=C sort"
# The package a path of /etc belongs to: its own (dpkg -S), an rc.d link's init script's, an
# alternative's target's, else the nearest directory above it that a package owns.
OWNER = r"""owner() { dpkg-query -S "$1" 2>/dev/null | sed -n '1s/: .*//p' | sed 's/:[a-z0-9]*$//; s/,.*//' ; }
for p in "$@"; do
  found=$(owner "$p")
  case "$p" in /etc/rc?.d/[SK][0-9][0-9]*) found=${found:-$(owner "/etc/init.d/${p#/etc/rc?.d/[SK][0-9][0-9]}")} ;; esac
  [ -z "$found" ] && [ -L "$p" ] && found=$(owner "$(readlink -f "$p")")
  dir=$p
  while [ -z "$found" ] && [ "$dir" != /etc ]; do dir=${dir%/*}; found=$(owner "$dir"); done
  printf '%s\t%s\n' "$p" "$found"
done"""


def write_world_inventory(folder, api: ApiHost = API, ref: tuple[str, int] = (REF, REF_PORT)):
    (folder / "group_vars").mkdir(parents=True)
    (folder / "hosts.yml").write_text(
        "all:\n"
        "  vars: {ansible_host: 127.0.0.1, ansible_user: deploy, ansible_become: true, lab: true}\n"
        "  children:\n"
        "    api:\n      hosts:\n"
        f"        {api.name}: {{ansible_port: {api.ssh_port}, https_port: {api.https_port}, "
        f"https_listen: 127.0.0.1, backend: php, server_name: {api.server_name}}}\n"
        f"    reference:\n      hosts:\n        {ref[0]}: {{ansible_port: {ref[1]}}}\n"
    )
    (folder / "group_vars" / "all.yml").write_text(
        f"ansible_ssh_private_key_file: {ROOT}/.lab/id_ed25519\n"
        f"ssh_known_hosts_file: {ROOT}/.lab/known_hosts\n"
    )
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Both hosts fresh; un-api provisioned; its manifest as it was kept for the tests."""
    base = tmp_path_factory.mktemp("unprovision-world")
    folder = write_world_inventory(base / "inventory")
    with pki_environment(base, "unprovision-test"), pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTLS_DEPLOY_INVENTORY", str(folder))
        make_pki_with_client("Unprovision Test")
        hosts = lab.hosts_from_inventory(inventory.load(folder).select())
        lab.reset(hosts)
        try:
            inv("provision", "--host", API.name)
            manifest = json.loads(on(folder, API.name, f"cat {MANIFEST}"))["roles"]
            yield {"inventory": folder, "manifest": manifest}
        finally:
            lab.down(hosts)


def on(folder, name: str, command: str, *args: str) -> str:
    script = f"set -- {' '.join(map(shlex.quote, args))}\n{command}\n" if args else command
    with remote(folder, name) as connection:
        return connection.run_script(script + "\n", sudo=True, check=True).stdout


def etc(folder, name: str) -> dict[str, str]:
    lines = on(folder, name, ETC_LISTING).splitlines()
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in lines}


def differences(folder, api: str = API.name, ref: str = REF) -> list[str]:
    """/etc paths that differ between un-api and un-ref, but for each host's own identity."""
    mine, fresh = etc(folder, api), etc(folder, ref)
    found = {p for p in mine.keys() | fresh.keys() if mine.get(p) != fresh.get(p)}
    return sorted(p for p in found if p not in OWN_IDENTITY and not p.startswith("./ssh/ssh_host_"))


def not_of_extra_packages(folder, paths: list[str], api=API.name, ref=REF) -> list[str]:
    """The paths (under /etc) that no package un-api has and un-ref lacks accounts for."""
    extra = set(on(folder, api, PACKAGES).split()) - set(on(folder, ref, PACKAGES).split())
    if not paths:
        return []
    owners = on(folder, api, OWNER, *[f"/etc/{p[2:]}" for p in paths])
    rows = [line.split("\t") for line in owners.splitlines()]
    rows = [
        (path, MADE_BY.get(path) if MADE_BY.get(path) in extra else owner) for path, owner in rows
    ]
    return [f"{path} ({owner or 'no owner'})" for path, owner in rows if owner not in extra]


def test_unprovision_takes_away_what_the_manifest_lists(world):
    folder, roles = world["inventory"], world["manifest"]
    done = inv("unprovision", "--host", API.name)
    assert "failed=0" in done.stdout, done.stdout
    paths = sorted({p for e in roles.values() for key in ("files", "directories") for p in e[key]})
    assert (
        paths
        and on(folder, API.name, 'for p in "$@"; do [ -e "$p" ] && echo "$p"; done; true', *paths)
        == ""
    )
    users = sorted({u for e in roles.values() for u in e["users"]})
    assert on(folder, API.name, 'for u in "$@"; do getent passwd "$u"; done; true', *users) == ""
    units = sorted({u for e in roles.values() for u in e["units"]})
    states = on(
        folder,
        API.name,
        'for u in "$@"; do systemctl is-enabled "$u"; systemctl is-active "$u"; done; true',
        *units,
    )
    assert set(states.split()) <= {"disabled", "inactive"}, states
    # The packages stay, and so does the record that we installed them (for --packages later).
    kept = json.loads(on(folder, API.name, f"cat {MANIFEST}"))["roles"]
    installed = {name: e["packages"] for name, e in roles.items() if e["packages"]}
    assert {name: e["packages"] for name, e in kept.items()} == installed != {}
    assert all(not x for e in kept.values() for key, x in e.items() if key != "packages")


def test_without_packages_only_the_packages_differ(world):
    folder = world["inventory"]
    assert on(folder, API.name, ENABLED) == on(folder, REF, ENABLED)
    assert on(folder, API.name, "dpkg --verify; true") == ""
    unexplained = not_of_extra_packages(folder, differences(folder))
    assert unexplained == [], "\n".join(unexplained)
    assert on(folder, API.name, "readlink /etc/nginx/sites-enabled/default") == (
        "/etc/nginx/sites-available/default\n"
    )  # Debian's default site is back (nginx-common's first install made it)
    assert on(folder, API.name, "test -f /etc/php/8.2/fpm/pool.d/www.conf && echo yes") == "yes\n"


def test_a_second_run_has_nothing_to_take_away(world):
    done = inv("unprovision", "--host", API.name, "--check")
    assert "lists only the packages we installed" in done.stdout, done.stdout
    assert "changed=0" in done.stdout, done.stdout


def test_with_packages_the_host_is_the_fresh_one(world):
    folder = world["inventory"]
    inv("provision", "--host", API.name)  # again, then all of it away
    done = inv("unprovision", "--host", API.name, "--packages")
    assert "failed=0" in done.stdout, done.stdout
    assert on(folder, API.name, PACKAGES) == on(folder, REF, PACKAGES)
    assert on(folder, API.name, ENABLED) == on(folder, REF, ENABLED)
    assert on(folder, API.name, "dpkg --verify; true") == ""
    assert differences(folder) == []
    assert on(folder, API.name, f"test -e {MANIFEST} || echo gone") == "gone\n"
    done = inv("unprovision", "--host", API.name)
    assert "nothing of ours to take away" in done.stdout and "changed=0" in done.stdout


# nginx as a real server has it before we come: installed, enabled, serving a site of its own
# (Debian's default site, moved off port 80, which the machine the lab shares its network with
# may use; no other module uses 8566). Installed held back, so it never binds port 80.
OTHER_PORT = 8566
BEFORE_US = f"""set -e
apt-get update -qq
{install_without_starting(["nginx"])}
sed -i -e 's/^[[:space:]]*listen 80 default_server;/\\tlisten 127.0.0.1:{OTHER_PORT} default_server;/' \\
  -e '/listen \\[::\\]:80/d' /etc/nginx/sites-available/default
systemctl enable --now nginx"""
STATE = 'systemctl is-enabled "$1"; systemctl is-active "$1"; true'
LISTENING = f"ss -Hltn 'sport = :{API.https_port}'"
PRESENT = 'for p in "$@"; do [ -e "$p" ] && echo "$p"; done; true'


def test_a_web_server_that_served_before_us_keeps_serving_what_was_not_ours(world):
    """unprovision takes our site away and reloads nginx once Debian's default site is back:
    nginx stays enabled and running and its own site answers (it was stopped and disabled)."""
    folder = world["inventory"]
    inv("unprovision", "--host", API.name, "--packages")  # fresh, whichever test ran before
    on(folder, API.name, BEFORE_US)
    assert on(folder, API.name, STATE, "nginx") == "enabled\nactive\n"
    inv("provision", "--host", API.name)
    roles = json.loads(on(folder, API.name, f"cat {MANIFEST}"))["roles"]
    assert roles["nginx"]["units_before"] == ["nginx"] and roles["nginx"]["packages"] == []
    assert [name for name, e in roles.items() if e.get("units_before")] == ["nginx"]
    assert on(folder, API.name, LISTENING) != ""
    done = inv("unprovision", "--host", API.name)
    assert "failed=0" in done.stdout and "reloaded without our files" in done.stdout, done.stdout
    assert on(folder, API.name, STATE, "nginx") == "enabled\nactive\n"
    assert on(folder, API.name, STATE, "php8.2-fpm") == "disabled\ninactive\n"  # ours
    assert on(folder, API.name, PRESENT, *roles["nginx"]["files"]) == ""
    assert on(folder, API.name, LISTENING) == ""  # our https port: nginx serves it no more
    page = on(folder, API.name, f"curl -sS http://127.0.0.1:{OTHER_PORT}/")
    assert "Welcome to nginx" in page
