"""The control machine's package-index settings, given to every lab host so that pip inside
works as it does here, the way a VPS's pip would be set up by its provider.

pip's configuration files (in pip's own order) and the ``PIP_*`` environment are merged into
one ``pip.conf`` that is bound read-only at the host's ``/etc/pip.conf`` (read by every user,
whatever the environment of a ``sudo``/``runuser``). The files and directories they name (the
constraints file, the CA bundle, ``file://`` index mirrors, find-links folders) are bound
read-only into the container too. apt's proxy settings (an ``apt.conf.d`` file that sets an
``Acquire`` proxy) are bound as they are.

A named path keeps its own path inside the container, unless that would cover a path of the
container's own system (anything under /etc, /usr, /var, /srv, /home, ...): such a path is bound
under ``LAB_MOUNT`` and the container's pip.conf names it there. Example: this machine's
``cert = /etc/ssl/certs/ca-certificates.crt`` is ``/opt/mtls-deploy-lab/host/etc/ssl/certs/
ca-certificates.crt`` inside, so the host's own bundle stays its own (``update-ca-certificates``
must still write it), while ``file:///opt/pypi/simple`` stays ``file:///opt/pypi/simple``.

apt's sources are not copied: a lab host has those of its own Debian release, which need not
be this machine's.
"""

from __future__ import annotations

import configparser
import io
import os
import pwd
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote, unquote, urlsplit

from ..files import atomic_write

LAB_MOUNT = "/opt/mtls-deploy-lab/host"  # where a path that would cover a system path goes
CONTAINER_PIP_CONF = "/etc/pip.conf"
ETC_PIP_CONF = Path("/etc/pip.conf")  # read after XDG_CONFIG_DIRS, as pip does
SYSTEM_TOPS = frozenset(
    ["bin", "boot", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32", "media", "mnt",
     "proc", "root", "run", "sbin", "srv", "sys", "tmp", "usr", "var"]
)  # fmt: skip
PATH_OPTIONS = frozenset(
    {"cert", "client-cert", "constraint", "requirement", "find-links", "index-url",
     "extra-index-url"}
)  # fmt: skip
LIST_OPTIONS = frozenset({"constraint", "requirement", "find-links", "extra-index-url"})
INDEX_OPTIONS = frozenset({"index-url", "extra-index-url"})
NOT_SETTINGS = frozenset({"PIP_CONFIG_FILE"})  # names a file, read as one
APT_CONF_DIR = Path("/etc/apt/apt.conf.d")
APT_ACQUIRE = re.compile(r"\bAcquire\b", re.IGNORECASE)
APT_PROXY = re.compile(r"\bProxy\b", re.IGNORECASE)
HEADER = (
    "# Written by mtls-deploy's lab from the control machine's pip settings (its pip.conf files\n"
    "# and PIP_* environment), bound read-only: change them there and reboot the lab host.\n"
)

Settings = dict[str, dict[str, str]]  # section -> option -> value


@dataclass(frozen=True)
class ContainerIndex:
    """What a lab host gets: its pip.conf text ("" when nothing is configured here) and the
    read-only binds, ``(path here, path in the container)``."""

    pip_conf: str
    binds: tuple[tuple[str, str], ...]


# --- reading this machine's settings ----------------------------------------------------------


def pip_config_files(environ: Mapping[str, str], home: Path) -> list[Path]:
    """pip's configuration files in the order pip reads them (a later one wins): the global
    ones (XDG_CONFIG_DIRS, then /etc), the user's (skipped when PIP_CONFIG_FILE exists, as pip
    does), PIP_CONFIG_FILE. A virtualenv's own pip.conf is not this machine's setting."""
    xdg_dirs = environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    files = [Path(d) / "pip" / "pip.conf" for d in xdg_dirs.split(":") if d]
    files.append(ETC_PIP_CONF)
    chosen = environ.get("PIP_CONFIG_FILE", "")
    if not (chosen and Path(chosen).exists()):
        config_home = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
        files += [home / ".pip" / "pip.conf", config_home / "pip" / "pip.conf"]
    if chosen and chosen != os.devnull:
        files.append(Path(chosen))
    return files


def option_name(name: str) -> str:
    """pip's spelling of an option: ``--Find_Links`` -> ``find-links``."""
    return name.lower().replace("_", "-").removeprefix("--")


def parse_pip_conf(text: str) -> Settings:
    """One pip.conf as ``{section: {option: value}}`` (values as written, not interpolated)."""
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    return {
        section: {option_name(k): v for k, v in parser.items(section)}
        for section in parser.sections()
    }


def environment_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``PIP_*`` variables as options: ``PIP_FIND_LINKS=/w`` -> ``{"find-links": "/w"}``."""
    return {
        option_name(name[4:]): value
        for name, value in environ.items()
        if name.startswith("PIP_") and len(name) > 4 and name not in NOT_SETTINGS
    }


def merge(files: list[Settings], environment: dict[str, str]) -> Settings:
    """Files in order (a later one wins), then the environment, which beats every file in every
    section, as in pip: it goes to [global] and the same option leaves the other sections."""
    result: Settings = {}
    for settings in files:
        for section, options in settings.items():
            result.setdefault(section, {}).update(options)
    for options in result.values():
        for name in environment:
            options.pop(name, None)
    if environment:
        result.setdefault("global", {}).update(environment)
    return {section: options for section, options in result.items() if options}


def read_pip_settings(environ: Mapping[str, str], home: Path) -> Settings:
    """This machine's pip settings, merged as pip merges them; an unreadable file is skipped."""
    files = []
    for path in pip_config_files(environ, home):
        try:
            files.append(parse_pip_conf(path.read_text()))
        except (OSError, UnicodeDecodeError, configparser.Error):
            continue
    return merge(files, environment_settings(environ))


# --- what a container gets (pure) -------------------------------------------------------------


def container_path(path: str) -> str:
    """Where ``path`` of this machine is inside a lab host: the same, unless it lies under one
    of the system's own directories. ``/opt/pypi`` -> ``/opt/pypi``;
    ``/etc/ssl/x.crt`` -> ``/opt/mtls-deploy-lab/host/etc/ssl/x.crt``."""
    parts = PurePosixPath(path).parts
    return f"{LAB_MOUNT}{path}" if len(parts) > 1 and parts[1] in SYSTEM_TOPS else path


def bind_source(option: str, path: str) -> str:
    """What to bind for ``path``: for a local index (``/opt/pypi/simple``), the mirror's root
    (``/opt/pypi``), since PEP 503 pages link to files beside them (``../../files/...``);
    never a top-level directory."""
    parent = PurePosixPath(path).parent
    if option in INDEX_OPTIONS and len(parent.parts) > 2:
        return str(parent)
    return path


def local_path(token: str) -> str | None:
    """The local path a setting names (a ``file://`` URL or an absolute path), else None."""
    if token.startswith("file:"):
        return unquote(urlsplit(token).path)
    return token if token.startswith("/") else None


def translate(option: str, token: str, binds: set[str], exists: Callable[[str], bool]) -> str:
    """``token`` as the container must read it; records what to bind for it in ``binds``.
    A path that does not exist here is left as it is (pip will say so inside, as here)."""
    path = local_path(token)
    if path is None or not exists(path):
        return token
    binds.add(bind_source(option, path))
    inside = container_path(path)
    if inside == path:
        return token
    return f"file://{quote(inside)}" if token.startswith("file:") else inside


def translate_value(option: str, value: str, binds: set[str], exists) -> str:
    """One option's value for the container: list options are whitespace-separated tokens."""
    if option not in PATH_OPTIONS:
        return value
    if option not in LIST_OPTIONS:
        return translate(option, value.strip(), binds, exists)
    return " ".join(translate(option, token, binds, exists) for token in value.split())


def outermost(paths: set[str]) -> list[str]:
    """The paths not already inside another one of them, sorted."""
    kept: list[str] = []
    for path in sorted(paths):
        if not any(PurePosixPath(path).is_relative_to(k) for k in kept):
            kept.append(path)
    return kept


def container_index(settings: Settings, exists: Callable[[str], bool]) -> ContainerIndex:
    """The pip.conf and binds a lab host gets for ``settings`` (``exists``: a path test here).

    Example: ``container_index({"global": {"constraint": "/etc/c.txt"}}, os.path.exists)`` ->
    pip.conf with ``constraint = /opt/mtls-deploy-lab/host/etc/c.txt`` and the bind
    ``("/etc/c.txt", "/opt/mtls-deploy-lab/host/etc/c.txt")``.
    """
    binds: set[str] = set()
    translated = {
        section: {k: translate_value(k, v, binds, exists) for k, v in options.items()}
        for section, options in settings.items()
    }
    return ContainerIndex(
        pip_conf=render_pip_conf(translated) if translated else "",
        binds=tuple((source, container_path(source)) for source in outermost(binds)),
    )


def render_pip_conf(settings: Settings) -> str:
    """``settings`` as a pip.conf, with a header saying where it comes from."""
    parser = configparser.RawConfigParser()
    for section, options in settings.items():
        parser[section] = options
    out = io.StringIO()
    parser.write(out)
    return HEADER + out.getvalue()


def sets_apt_proxy(text: str) -> bool:
    """Whether an apt configuration fragment sets a proxy (``Acquire::http::Proxy "..."``, or
    the nested ``Acquire { http { Proxy "..."; }; };``); comment lines do not count."""
    lines = (line for line in text.splitlines() if not line.lstrip().startswith(("//", "#")))
    code = "\n".join(lines)
    return bool(APT_ACQUIRE.search(code) and APT_PROXY.search(code))


# --- the nspawn side --------------------------------------------------------------------------


def apt_proxy_files(directory: Path = APT_CONF_DIR) -> list[str]:
    """This machine's apt.conf.d files that set a proxy."""
    found = []
    for path in sorted(directory.glob("*")) if directory.is_dir() else []:
        try:
            if path.is_file() and sets_apt_proxy(path.read_text(errors="replace")):
                found.append(str(path))
        except OSError:
            continue
    return found


def bind_option(source: str, target: str) -> str:
    """``--bind-ro=SOURCE:TARGET`` with nspawn's escape for a colon inside a path."""
    return f"--bind-ro={source.replace(':', chr(92) + ':')}:{target.replace(':', chr(92) + ':')}"


def user_home() -> Path:
    """The home of the user running the lab, from the password database: the same whatever
    HOME says (a test run fakes HOME; the lab must still give its hosts this user's pip)."""
    return Path(pwd.getpwuid(os.geteuid()).pw_dir)


def nspawn_options(directory: Path) -> list[str]:
    """systemd-nspawn options that give a lab host this machine's package-index settings; the
    host's pip.conf is written into ``directory`` (the host's lab folder) and bound from there.
    Read at each boot: a host that is already running gets new settings when it boots again."""
    index = container_index(read_pip_settings(os.environ, user_home()), os.path.exists)
    binds = [*index.binds, *((path, path) for path in apt_proxy_files())]
    if index.pip_conf:
        directory.mkdir(parents=True, exist_ok=True)
        conf = directory / "pip.conf"
        atomic_write(conf, index.pip_conf.encode(), 0o644)
        binds.append((str(conf), CONTAINER_PIP_CONF))
    return [bind_option(source, target) for source, target in binds]
