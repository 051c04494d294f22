"""The lab gives its hosts this machine's package-index settings (mtls_deploy/lab/package_index.py):
pip's config files and PIP_* environment merged into one pip.conf, the files and folders they
name bound read-only, never over a path of the container's own system."""

import configparser
import os
import pwd
import stat
from pathlib import Path

import pytest

from mtls_deploy.lab import LabHost, nspawn_command, paths_for
from mtls_deploy.lab.package_index import (
    LAB_MOUNT,
    bind_option,
    bind_source,
    container_index,
    container_path,
    environment_settings,
    merge,
    nspawn_options,
    outermost,
    parse_pip_conf,
    pip_config_files,
    read_pip_settings,
    sets_apt_proxy,
    user_home,
)

HOME = Path("/home/u")
# This machine's shape: a constraints file and a CA bundle under /etc, two local mirrors
# (PEP 503 pages under simple/, files beside them), a find-links folder.
HERE = {
    "global": {
        "constraint": "/etc/xdg/pip/constraints.txt",
        "cert": "/etc/ssl/certs/ca-certificates.crt",
        "extra-index-url": "file:///opt/pypi/simple file:///opt/pypi-more/simple",
        "find-links": "/opt/wheels",
        "default-timeout": "180",
    }
}
EXISTING = {
    "/etc/xdg/pip/constraints.txt",
    "/etc/ssl/certs/ca-certificates.crt",
    "/opt/pypi/simple",
    "/opt/pypi-more/simple",
    "/opt/wheels",
}


def exists(path: str) -> bool:
    return path in EXISTING


def parsed(pip_conf: str) -> dict:
    return parse_pip_conf(pip_conf)


# --- where pip reads its settings -------------------------------------------------------------


def test_config_files_are_read_in_pips_order():
    assert pip_config_files({}, HOME) == [
        Path("/etc/xdg/pip/pip.conf"),
        Path("/etc/pip.conf"),
        HOME / ".pip/pip.conf",
        HOME / ".config/pip/pip.conf",
    ]


def test_xdg_directories_are_honoured():
    environ = {"XDG_CONFIG_DIRS": "/a:/b", "XDG_CONFIG_HOME": "/cfg"}
    assert pip_config_files(environ, HOME) == [
        Path("/a/pip/pip.conf"),
        Path("/b/pip/pip.conf"),
        Path("/etc/pip.conf"),
        HOME / ".pip/pip.conf",
        Path("/cfg/pip/pip.conf"),
    ]


def test_an_existing_pip_config_file_comes_last_and_replaces_the_users(tmp_path):
    chosen = tmp_path / "mine.conf"
    chosen.write_text("[global]\n")
    files = pip_config_files({"PIP_CONFIG_FILE": str(chosen)}, HOME)
    assert files == [Path("/etc/xdg/pip/pip.conf"), Path("/etc/pip.conf"), chosen]


def test_option_names_are_spelt_as_pip_spells_them():
    conf = parse_pip_conf("[global]\nFind_Links = /w\n--index-url = file:///i\n[install]\nx=1\n")
    assert conf == {"global": {"find-links": "/w", "index-url": "file:///i"}, "install": {"x": "1"}}


def test_pip_environment_variables_become_options_but_not_pip_config_file():
    environ = {"PIP_FIND_LINKS": "/w", "PIP_CONFIG_FILE": "/x", "PIP_": "?", "HOME": "/"}
    assert environment_settings(environ) == {"find-links": "/w"}


def test_a_later_file_wins_and_the_environment_beats_every_section():
    files = [
        {"global": {"cert": "/a", "timeout": "1"}},
        {"global": {"cert": "/b"}, "install": {"find-links": "/f"}},
    ]
    merged = merge(files, {"find-links": "/env"})
    assert merged == {"global": {"cert": "/b", "timeout": "1", "find-links": "/env"}}


def test_settings_are_read_from_files_and_environment(tmp_path):
    (tmp_path / ".config/pip").mkdir(parents=True)
    (tmp_path / ".config/pip/pip.conf").write_text("[global]\nextra-index-url = file:///m\n")
    (tmp_path / "broken.conf").write_text("no section header\n")
    environ = {"XDG_CONFIG_DIRS": str(tmp_path / "none"), "PIP_CERT": "/c.pem"}
    settings = read_pip_settings(environ, tmp_path)
    assert settings["global"]["extra-index-url"] == "file:///m"
    assert settings["global"]["cert"] == "/c.pem"


# --- what a container gets --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, inside",
    [
        ("/opt/pypi", "/opt/pypi"),
        ("/data/wheels", "/data/wheels"),
        ("/etc/ssl/certs/ca-certificates.crt", f"{LAB_MOUNT}/etc/ssl/certs/ca-certificates.crt"),
        ("/srv/mirror", f"{LAB_MOUNT}/srv/mirror"),  # /srv/<api_name> holds the releases
        ("/root/.cache/wheels", f"{LAB_MOUNT}/root/.cache/wheels"),
        ("/usr/share/wheels", f"{LAB_MOUNT}/usr/share/wheels"),
    ],
)
def test_a_path_keeps_its_place_unless_it_would_cover_the_containers_system(path, inside):
    assert container_path(path) == inside


def test_a_local_index_binds_the_mirror_root_its_pages_link_into():
    assert bind_source("extra-index-url", "/opt/pypi/simple") == "/opt/pypi"
    assert bind_source("index-url", "/mirror/simple") == "/mirror/simple"  # never a top dir
    assert bind_source("find-links", "/opt/wheels") == "/opt/wheels"


def test_this_machines_settings_give_binds_and_a_pip_conf_naming_the_paths_inside():
    index = container_index(HERE, exists)
    assert index.binds == (
        ("/etc/ssl/certs/ca-certificates.crt", f"{LAB_MOUNT}/etc/ssl/certs/ca-certificates.crt"),
        ("/etc/xdg/pip/constraints.txt", f"{LAB_MOUNT}/etc/xdg/pip/constraints.txt"),
        ("/opt/pypi", "/opt/pypi"),
        ("/opt/pypi-more", "/opt/pypi-more"),
        ("/opt/wheels", "/opt/wheels"),
    )
    assert parsed(index.pip_conf) == {
        "global": {
            "constraint": f"{LAB_MOUNT}/etc/xdg/pip/constraints.txt",
            "cert": f"{LAB_MOUNT}/etc/ssl/certs/ca-certificates.crt",
            "extra-index-url": "file:///opt/pypi/simple file:///opt/pypi-more/simple",
            "find-links": "/opt/wheels",
            "default-timeout": "180",
        }
    }


def test_remote_indexes_and_missing_paths_are_passed_on_unbound():
    settings = {"global": {"index-url": "https://mirror.example/simple", "cert": "/etc/no.pem"}}
    index = container_index(settings, exists)
    assert index.binds == ()
    assert parsed(index.pip_conf) == settings


def test_a_mapped_file_url_is_quoted_and_multiline_lists_are_split():
    settings = {"install": {"find-links": "\nfile:///srv/w%20x\n/opt/wheels"}}
    index = container_index(settings, lambda p: p in {"/srv/w x", "/opt/wheels"})
    assert parsed(index.pip_conf)["install"]["find-links"] == (
        f"file://{LAB_MOUNT}/srv/w%20x /opt/wheels"
    )
    assert index.binds == (("/opt/wheels", "/opt/wheels"), ("/srv/w x", f"{LAB_MOUNT}/srv/w x"))


def test_nothing_configured_gives_nothing():
    assert container_index({}, exists).pip_conf == ""
    assert container_index({}, exists).binds == ()


def test_a_folder_inside_a_bound_folder_is_not_bound_again():
    assert outermost({"/opt/pypi", "/opt/pypi/simple", "/opt/pypi-more"}) == [
        "/opt/pypi",
        "/opt/pypi-more",
    ]


def test_a_colon_in_a_path_is_escaped_for_nspawn():
    assert bind_option("/a:b", "/c") == "--bind-ro=/a\\:b:/c"


@pytest.mark.parametrize(
    "text, proxy",
    [
        ('Acquire::http::Proxy "http://10.0.0.1:3142";\n', True),
        ('Acquire {\n  https {\n    Proxy "http://p:3128";\n  };\n};\n', True),
        ('// Acquire::http::Proxy "http://old";\nAcquire::Check-Valid-Until "false";\n', False),
        ('APT::Periodic::Update-Package-Lists "1";\n', False),
    ],
)
def test_apt_fragments_that_set_a_proxy_are_recognised(text, proxy):
    assert sets_apt_proxy(text) is proxy


# --- the nspawn side --------------------------------------------------------------------------


@pytest.fixture
def pip_here(tmp_path, monkeypatch):
    """A machine whose only pip setting is a find-links folder and a constraints file."""
    for name in [n for n in os.environ if n.startswith("PIP_")]:
        monkeypatch.delenv(name)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    constraints = tmp_path / "c.txt"
    constraints.write_text("flask<4\n")
    monkeypatch.setattr("mtls_deploy.lab.package_index.user_home", lambda: tmp_path / "home")
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "xdg"))
    monkeypatch.setattr("mtls_deploy.lab.package_index.ETC_PIP_CONF", tmp_path / "etc-pip.conf")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(tmp_path / "pip.conf"))
    (tmp_path / "pip.conf").write_text(f"[global]\nconstraint = {constraints}\n")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    return tmp_path


def test_nspawn_options_write_the_hosts_pip_conf_and_bind_it_read_only(pip_here, monkeypatch):
    monkeypatch.setattr("mtls_deploy.lab.package_index.apt_proxy_files", lambda: [])
    options = nspawn_options(pip_here / "host")
    conf = pip_here / "host" / "pip.conf"
    inside = container_path(str(pip_here))
    assert options == [
        f"--bind-ro={pip_here}/c.txt:{inside}/c.txt",
        f"--bind-ro={pip_here}/wheels:{inside}/wheels",
        f"--bind-ro={conf}:/etc/pip.conf",
    ]
    assert stat.S_IMODE(conf.stat().st_mode) == 0o644  # read by the app's user inside
    parser = configparser.RawConfigParser()
    parser.read_string(conf.read_text())
    assert parser["global"]["find-links"] == f"{inside}/wheels"


def test_the_users_settings_come_from_the_password_database_not_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert user_home() == Path(pwd.getpwuid(os.geteuid()).pw_dir)


def test_the_boot_command_carries_the_binds(pip_here, monkeypatch):
    monkeypatch.setenv("MTLS_DEPLOY_LAB_ROOT", str(pip_here / "lab"))
    monkeypatch.setattr("mtls_deploy.lab.package_index.apt_proxy_files", lambda: [])
    command = nspawn_command(LabHost("api1", "127.0.0.1", 2201, "deploy", True), paths_for("api1"))
    assert f"--bind-ro={pip_here / 'lab/api1/pip.conf'}:/etc/pip.conf" in command
    assert any(arg.startswith(f"--bind-ro={pip_here}/wheels:") for arg in command)
