"""The lab scales to 32 hosts: lf1..lf32 (SSH 2430 each, on 127.0.4.1-127.0.4.32) boot side by
side, each root an overlay of the one cached base (a few MB of its own instead of a 430 MB
copy), with the kernel's inotify limits raised to what they need; ``down`` unmounts an overlay
and keeps its upper directory, so the host comes back as it was; ``reset`` deletes it."""

import subprocess
from pathlib import Path

import pytest

from mtls_deploy import lab
from mtls_deploy.lab.base import base_name
from mtls_deploy.lab.limits import PROC_SYS, needed
from mtls_deploy.lab.root import is_mount_point
from mtls_deploy.lab.spec import cache_dir

from .conftest import ROOT, needs_lab

pytestmark = [*needs_lab, pytest.mark.slow]

HOSTS = [lab.LabHost(f"lf{i}", f"127.0.4.{i}", 2430, "deploy", sudo=False) for i in range(1, 33)]


@pytest.fixture(scope="module")
def fleet():
    """32 fresh hosts, running; stopped afterwards."""
    said = []
    outcome = lab.reset(HOSTS, ROOT / ".lab", said.append)
    try:
        yield outcome, said
    finally:
        lab.down(HOSTS)


def mount_options(root: Path) -> tuple[str, str]:
    done = subprocess.run(["findmnt", "-n", "-o", "FSTYPE,OPTIONS", str(root)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    fstype, options = done.stdout.split()
    return fstype, options


def disk_kb(path: Path) -> int:
    done = subprocess.run(
        ["du", "-sk", "-x", str(path)], capture_output=True, text=True, check=True
    )
    return int(done.stdout.split()[0])


def test_thirty_two_hosts_run_and_answer_ssh(fleet):
    outcome, _ = fleet
    assert all(text.startswith("started") for text in outcome.values()), outcome
    assert {s.state for s in lab.status(HOSTS)} == {"running"}
    assert all(lab.ssh_banner(h.address, h.ssh_port) for h in HOSTS)


def test_the_inotify_limits_fit_them(fleet):
    for name, need in needed(len(HOSTS)).items():
        assert int((PROC_SYS / name).read_text()) >= need, name


def test_each_root_is_an_overlay_of_the_one_base_with_a_few_mb_of_its_own(fleet):
    base = cache_dir() / base_name()
    for host in HOSTS:
        paths = lab.paths_for(host.name)
        fstype, options = mount_options(paths.root)
        assert fstype == "overlay" and f"lowerdir={base}" in options.split(","), options
        assert f"upperdir={paths.upper}" in options.split(",")
        assert disk_kb(paths.upper) < 30_000, host.name  # the base is 270 MB and more
    ids = {(lab.paths_for(h.name).root / "etc/machine-id").read_text() for h in HOSTS}
    assert len(ids) == len(HOSTS)  # an identity each, written above the base, never into it
    assert (base / "etc/hostname").read_text().strip() not in {h.name for h in HOSTS}


def test_down_unmounts_and_up_brings_the_same_host_back(fleet):
    host, paths = HOSTS[0], lab.paths_for(HOSTS[0].name)
    machine_id = (paths.root / "etc/machine-id").read_text()
    assert lab.down([host]) == {host.name: "stopped"}
    assert not is_mount_point(paths.root) and paths.upper.is_dir()
    assert lab.up([host], ROOT / ".lab")[host.name].startswith("started")
    assert is_mount_point(paths.root) and (paths.root / "etc/machine-id").read_text() == machine_id
