"""Fact parsers: absent, wrong type and a value are three different answers."""

import subprocess

from mtls_deploy import facts

SYSTEM_OUTPUT = """os\tdebian\t12
init\tsystemd
now\t1700003600
lists\t1700000000
pkg\tnginx\tii \t1.22.1-9+deb12u1
pkg\tlibssl3\tii \t3.0.17-1~deb12u2
pkg\tphp8.2-fpm\tii \t8.2.29-1~deb12u1
pkg\tapache2\trc \t2.4.62-1
"""


def test_system_facts_parse_versions_and_skip_removed_packages():
    parsed = facts.parse_system_facts(SYSTEM_OUTPUT)
    assert (parsed.os_id, parsed.os_version, parsed.init) == ("debian", "12", "systemd")
    assert parsed.version("nginx", "nginx-core") == (1, 22, 1)
    assert parsed.version("openssl", "libssl3") == (3, 0, 17)  # the first name installed
    assert parsed.installed("php*-fpm") == ["php8.2-fpm"]
    assert parsed.apt_lists_age == 3600
    assert "apache2" not in parsed.packages  # 'rc': removed, config files left


def test_system_facts_of_a_bare_host():
    parsed = facts.parse_system_facts("os\tdebian\t12\ninit\tsystemd\nnow\t5\n")
    assert parsed.packages == {} and parsed.version("nginx") is None
    assert parsed.apt_lists_age is None and parsed.installed("php*-fpm") == []


def test_version_tuple():
    assert facts.version_tuple("1.25.3-1~bookworm") == (1, 25, 3)
    assert facts.version_tuple("2:8.2+93") == (8, 2)  # epoch and Debian suffix dropped
    assert facts.version_tuple(None) is None


def test_resource_facts_script_runs_for_real(tmp_path):
    """The script is plain sh: run it here on real paths and parse what it prints."""
    present = tmp_path / "present.conf"
    present.write_bytes(b"hello\n")
    present.chmod(0o640)
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to(present)
    paths = [str(present), str(tmp_path / "dir"), str(tmp_path / "link"), str(tmp_path / "gone")]
    script = facts.resource_facts_script(paths, ["root", "no-such-user-xyz"], [])
    out = subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True, check=True)
    parsed = facts.parse_resource_facts(out.stdout)
    assert parsed.path(str(present)) == facts.PathState(
        "file",
        0o640,
        "root",
        "root",
        "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
    )
    assert parsed.path(str(tmp_path / "dir")).kind == "directory"
    assert parsed.path(str(tmp_path / "link")).kind == "link"
    assert parsed.path(str(tmp_path / "link")).sha256 is None  # links are not followed
    assert parsed.path(str(tmp_path / "gone")).kind == "absent"
    assert parsed.users == frozenset({"root"})


def test_units_parse_blocks_in_any_property_order():
    lines = [
        "ActiveState=active",
        "UnitFileState=enabled",
        "Id=nginx.service",
        "",
        "Id=mtls-api.service",
        "ActiveState=inactive",
        "UnitFileState=",
        "",
    ]
    units = facts.parse_units(lines)
    assert units["nginx.service"] == facts.UnitState("enabled", "active")
    assert units["mtls-api.service"] == facts.UnitState("not-found", "inactive")


def test_unit_names_with_dots_get_the_service_suffix():
    parsed = facts.ResourceFacts(
        {}, frozenset(), {"php8.2-fpm.service": facts.UnitState("enabled", "active")}
    )
    assert parsed.unit("php8.2-fpm") == facts.UnitState("enabled", "active")
    assert "php8.2-fpm.service" in facts.resource_facts_script([], [], ["php8.2-fpm"])
    assert "api.socket " in facts.resource_facts_script([], [], ["api.socket"]) + " "


def test_gather_script_runs_both_halves_in_one_script(tmp_path):
    present = tmp_path / "a.conf"
    present.write_text("x\n")
    watched = facts.Watched.of([str(present), str(tmp_path / "gone")], ["root"], [])
    script = facts.gather_script(("coreutils",), watched)
    out = subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True, check=True)
    system, resources = facts.parse_gathered(out.stdout)
    assert system.os_id and "coreutils" in system.packages
    assert resources.path(str(present)).kind == "file"
    assert resources.path(str(tmp_path / "gone")).kind == "absent"
    assert resources.users == frozenset({"root"})


def test_watched_sets_know_what_a_query_did_not_cover():
    guessed = facts.Watched.of(["/a", "/b"], ["www-data"], ["nginx"])
    wanted = facts.Watched.of(["/a", "/c"], ["www-data", "api-php"], ["nginx"])
    assert wanted - guessed == facts.Watched.of(["/c"], ["api-php"], [])
    assert not (guessed - (guessed | wanted))


def test_fact_cache_round_trip_and_damage(tmp_path):
    from mtls_deploy import fact_cache

    path = tmp_path / "facts" / "api1.json"
    assert fact_cache.load(path) is None
    saved = facts.HostFacts("debian", "12", "systemd", {"nginx": "1.22.1-9"}, 42.0)
    fact_cache.save(path, saved)
    loaded = fact_cache.load(path)
    assert loaded.version("nginx") == (1, 22, 1) and loaded.packages == {"nginx": "1.22.1-9"}
    assert loaded.apt_lists_age is None  # never trust a cached age
    path.write_text("{not json")
    assert fact_cache.load(path) is None
    # A cache of an older release (versions as fields of their own): no guess, not an error.
    path.write_text('{"os_id": "debian", "nginx_version": [1, 22, 1]}')
    assert fact_cache.load(path) is None


def test_no_package_asked_lists_no_package(tmp_path):
    """dpkg-query -W with no name lists every package: a host whose roles read none asks none."""
    assert "dpkg-query" not in facts.system_facts_script(())


def test_unless_checks_run_in_the_facts_script_and_are_keyed_by_command(tmp_path):
    marker = tmp_path / "present"
    marker.write_text("")
    passing, failing = f"test -e {marker}", f"test -e {tmp_path / 'missing'}"
    script = facts.resource_facts_script([], [], [], [passing, failing])
    out = subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True, check=True)
    checks = facts.parse_resource_facts(out.stdout).checks
    assert checks == {facts.check_key(passing): True, facts.check_key(failing): False}


def test_a_command_is_planned_from_gathered_facts(tmp_path):
    from mtls_deploy.operations import plan, watched
    from mtls_deploy.resources import Command

    done = tmp_path / "done"
    resources = [Command("touch done", creates=str(done)), Command("x", unless="false")]
    paths, users, units, checks = watched(resources)
    script = facts.resource_facts_script(paths, users, units, checks)
    run = lambda: subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True).stdout  # noqa: E731
    assert [s.status for s in plan(resources, facts.parse_resource_facts(run()))] == [
        "changed",
        "changed",
    ]
    done.write_text("")
    assert [s.status for s in plan(resources, facts.parse_resource_facts(run()))] == [
        "ok",
        "changed",
    ]


# --- awkward names: quoted on the way in, parsed right on the way out ---------------------------

AWKWARD = "a b'c\"d$HOME;e\\f\tg`h`*$(touch pwned)"


def test_package_names_reach_dpkg_query_as_one_word_each_and_unglobbed(tmp_path):
    (tmp_path / "bin").mkdir()
    stand_in = tmp_path / "bin" / "dpkg-query"
    stand_in.write_text(f"#!/bin/sh\nprintf '%s\\0' \"$@\" > {tmp_path}/args\n")
    stand_in.chmod(0o755)
    (tmp_path / "php8.2-fpm").write_text("")  # a file the shell would glob php*-fpm into
    subprocess.run(
        ["sh", "-s"],
        input=facts.system_facts_script(("nginx", "php*-fpm", AWKWARD)),
        cwd=tmp_path,
        env={"PATH": f"{tmp_path}/bin:/usr/bin:/bin"},
        text=True,
        check=True,
    )
    args = (tmp_path / "args").read_text().split("\0")[:-1]
    assert args[-3:] == ["nginx", "php*-fpm", AWKWARD]
    assert not (tmp_path / "pwned").exists()


def test_paths_with_tabs_backslashes_and_quotes_are_stated_and_hashed(tmp_path):
    odd = tmp_path / AWKWARD.replace("/", "_")
    odd.write_bytes(b"hello\n")
    script = facts.resource_facts_script([str(odd)], [], [])
    out = subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True, cwd=tmp_path)
    state = facts.parse_resource_facts(out.stdout).path(str(odd))
    assert state.kind == "file"
    assert state.sha256 == "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
    assert not (tmp_path / "pwned").exists()


def test_a_path_with_a_newline_is_unknown_never_a_traceback(tmp_path):
    odd = tmp_path / "a\nstat"
    odd.write_bytes(b"hello\n")
    script = facts.resource_facts_script([str(odd)], [], [])
    out = subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True)
    assert facts.parse_resource_facts(out.stdout).path(str(odd)).kind == "absent"


def test_our_leftover_policy_rc_is_a_fact_and_anyone_elses_is_not():
    assert facts.parse_system_facts("policy_rc\tours\n").policy_rc_leftover
    assert not facts.parse_system_facts(SYSTEM_OUTPUT).policy_rc_leftover
    assert "grep -qxF -- '# mtls-deploy policy-rc.d' /usr/sbin/policy-rc.d" in (
        facts.system_facts_script(())
    )


def test_the_fact_cache_stays_in_its_folder_whatever_the_host_name(tmp_path, monkeypatch):
    from mtls_deploy import fact_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = tmp_path / "mtls-deploy" / "facts"
    assert fact_cache.cache_file("api1", "127.0.0.1", 2201) == folder / "api1@127.0.0.1:2201.json"
    assert fact_cache.cache_file("../../x", "10.0.0.1", 22).parent == folder
