"""fact_cache: the last run's system facts, a guess only: a bad cache costs a round trip, never
an error, and never passes for fresh package lists."""

import json
import os

from mtls_deploy import fact_cache
from mtls_deploy.facts import HostFacts

FACTS = HostFacts("debian", "12", "systemd", {"nginx": "1.22.1-9"}, 60.0, False)


def test_the_file_is_per_host_address_and_port_under_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = fact_cache.cache_file("api1", "127.0.0.1", 2201)
    assert path == tmp_path / "mtls-deploy" / "facts" / "api1@127.0.0.1:2201.json"


def test_a_slash_in_a_host_name_stays_in_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = fact_cache.cache_file("../../etc/x", "::1", 22)
    assert path.parent == tmp_path / "mtls-deploy" / "facts" and "/" not in path.name


def test_saved_facts_come_back_without_the_package_lists_age(tmp_path):
    path = tmp_path / "facts" / "api1.json"
    fact_cache.save(path, FACTS)
    loaded = fact_cache.load(path)
    assert loaded.packages == {"nginx": "1.22.1-9"} and loaded.os_version == "12"
    assert FACTS.apt_lists_age == 60.0 and loaded.apt_lists_age is None  # a guess is never fresh
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_a_missing_or_broken_cache_is_no_guess(tmp_path):
    assert fact_cache.load(tmp_path / "none.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert fact_cache.load(tmp_path / "bad.json") is None
    (tmp_path / "old.json").write_text(json.dumps({"a_field_we_dropped": 1}))
    assert fact_cache.load(tmp_path / "old.json") is None


def test_a_cache_that_cannot_be_written_is_skipped(tmp_path):
    (tmp_path / "file").write_text("")
    fact_cache.save(tmp_path / "file" / "facts" / "api1.json", FACTS)  # no error
    assert (tmp_path / "file").read_text() == ""
