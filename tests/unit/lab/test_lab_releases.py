"""A lab host's Debian release (``lab_release``): one cached base per release, checked names,
and a host whose release changes is made anew, never booted on the wrong root."""

from types import SimpleNamespace

import pytest

from mtls_deploy.errors import BadInput, UserError
from mtls_deploy.lab import LabHost, hosts_from_inventory
from mtls_deploy.lab.base import base_name, debootstrap_command, failure_reason
from mtls_deploy.lab.spec import check_host, paths_for
from mtls_deploy.lab.verbs import refuse_release_change

API1 = LabHost("api1", "127.0.0.1", 2201, "deploy", sudo=True)
T13 = LabHost("t13-api", "127.0.0.1", 2390, "deploy", sudo=True, release="trixie")


def test_each_release_has_a_base_of_its_own():
    assert base_name().startswith("base-bookworm-") and base_name("trixie").startswith(
        "base-trixie-"
    )
    assert base_name("bookworm") == base_name()


def test_debootstrap_builds_the_hosts_release(tmp_path):
    command = debootstrap_command(tmp_path, "trixie")
    assert command[:2] == ["debootstrap", "--variant=minbase"]
    assert "openssh-server" in command[2]
    assert command[-2:] == ["trixie", str(tmp_path)]


def host(**variables) -> SimpleNamespace:
    """An inventory host as ``hosts_from_inventory`` reads one: a name and its variables."""
    v = {"lab": True, "ansible_port": 2390, "ansible_user": "deploy", **variables}
    return SimpleNamespace(name="t13-api", vars=v)


def test_lab_release_comes_from_the_inventory_and_defaults_to_bookworm():
    assert hosts_from_inventory([host(lab_release="trixie")])[0].release == "trixie"
    assert hosts_from_inventory([host()])[0].release == "bookworm"


@pytest.mark.parametrize("release", ["bullseye", "sid", "13", "Trixie", ""])
def test_an_unknown_release_is_one_line(release):
    with pytest.raises(BadInput) as error:
        check_host(LabHost("t13-api", "127.0.0.1", 2390, "deploy", True, release))
    assert str(error.value) == (
        f"t13-api: lab_release {release!r}: use one of bookworm (Debian 12), trixie (Debian 13)"
    )


def test_settings_written_before_releases_read_as_bookworm():
    old = {"name": "api1", "address": "127.0.0.1", "ssh_port": 2201, "user": "deploy", "sudo": True}
    assert LabHost(**old) == API1 and API1.release == "bookworm"


@pytest.fixture
def lab_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLS_DEPLOY_LAB_ROOT", str(tmp_path / "lab"))
    return tmp_path / "lab"


def test_a_release_change_asks_for_a_reset(lab_root):
    (paths_for("t13-api").root / "etc").mkdir(parents=True)  # a full copy: a root exists
    with pytest.raises(UserError) as error:
        refuse_release_change(T13, LabHost(**{**T13.__dict__, "release": "bookworm"}),
                              paths_for("t13-api"))  # fmt: skip
    assert str(error.value) == (
        "t13-api runs bookworm and the inventory now says lab_release: trixie:"
        " run `inv lab.reset --host t13-api` to make it anew"
    )


def test_no_root_yet_or_same_release_is_fine(lab_root):
    refuse_release_change(T13, API1, paths_for("t13-api"))  # nothing on disk yet
    (paths_for("t13-api").root / "etc").mkdir(parents=True)
    refuse_release_change(T13, T13, paths_for("t13-api"))
    refuse_release_change(T13, None, paths_for("t13-api"))


@pytest.mark.parametrize(
    ("log", "reason"),
    [
        ("E: Release signed by unknown key (key id 762F67A0B2C39DE4)\n", "update the keyring"),
        ("W: GPG error: NO_PUBKEY 762F67A0B2C39DE4\n", "update the keyring"),
        (
            "E: Failed getting release file http://deb.debian.org/...\n",
            "deb.debian.org is reachable",
        ),
    ],
)
def test_a_failed_build_says_what_to_fix(tmp_path, log, reason):
    path = tmp_path / "base-trixie-1.log"
    path.write_text(log)
    assert reason in failure_reason(path, "trixie") and str(path) in failure_reason(path, "trixie")
