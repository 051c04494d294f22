"""resources.py: plain frozen data, and ``tagged``, which picks a tagged run's resources."""

import dataclasses

import pytest

from mtls_deploy.resources import Absent, Directory, File, Packages, tagged


def test_tagged_picks_resources_carrying_one_of_the_tags():
    crl = File("/etc/x/crl.pem", b"", tags=("crl", "pki"))
    assert tagged(crl, ("crl",)) and tagged(crl, ("other", "pki"))
    assert not tagged(crl, ("other",)) and not tagged(crl, ())
    assert tagged(Absent("/etc/x/old", tags=("crl",)), ("crl",))


def test_resources_without_tags_are_never_picked():
    assert not tagged(Directory("/etc/x"), ("crl",))
    assert not tagged(Packages(("nginx",)), ("crl",))


def test_resources_are_frozen_with_safe_defaults():
    file = File("/etc/x/site.conf", b"x")
    assert (file.mode, file.owner, file.group, file.secret) == (0o644, "root", "root", False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        file.mode = 0o777
