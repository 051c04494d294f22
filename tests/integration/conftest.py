"""Integration fixtures: the default lab (api1, bob) from inventory/, booted once per session."""

import os
import shutil

import pytest

from mtls_deploy import inventory, lab

needs_lab = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
    pytest.mark.skipif(not shutil.which("systemd-nspawn"), reason="systemd-nspawn is missing"),
]


@pytest.fixture(scope="session")
def lab_inventory():
    """The default inventory with its lab hosts up (`inv lab.up`; a no-op when already up)."""
    loaded = inventory.load("inventory")
    lab.up(lab.hosts_from_inventory(loaded.select()))
    return loaded
