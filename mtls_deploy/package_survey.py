"""The packages we installed, surveyed on the host: what apt would take away with them, their
enabled units, and those missing a configuration file; and the steps that follow (purge, or
configuration files put back as the packages ship them and units disabled). Used by
``inv unprovision`` for every package the manifest records, and by a provision for those only a
role that left the host had installed (``manifest.Bookkeeping.packages``)."""

import shlex
from dataclasses import dataclass, field

from .operations import Step, changed, install_without_starting

UNIT_FILES = r"^/(usr/)?lib/systemd/system/[^/@]+\.(service|socket|timer|path)$"
# One read, after the roles' removals (the recorded packages are its arguments): which of them
# are still there, what apt would take away with them, their enabled units, and those missing
# a configuration file (dpkg --verify: "missing   c /etc/..."). What came with ours and is kept
# only because a package that was there before recommends it (procps recommends psmisc, which
# one of ours needs) goes too: apt's autoremove would keep it, a fresh host does not have it.
SURVEY = rf"""
installed=$(dpkg-query -W -f='${{db:Status-Abbrev}} ${{Package}}\n' "$@" 2>/dev/null | awk '$1 == "ii" {{print $2}}')
[ -n "$installed" ] || exit 0
keep_no_recommends="-o APT::AutoRemove::RecommendsImportant=false -o APT::AutoRemove::SuggestsImportant=false"
before=$(apt-get -s -qq $keep_no_recommends autoremove 2>/dev/null | sed -n 's/^Remv \([^ ]*\).*/\1/p' | sort -u)
apt-get -s -qq $keep_no_recommends purge --autoremove $installed 2>/dev/null | sed -n 's/^Purg \([^ ]*\).*/\1/p' | sort -u |
while read -r package; do
  printf '%s\n' "$before" | grep -qxF "$package" && continue
  echo "package $package"
  dpkg -L "$package" 2>/dev/null | grep -E '{UNIT_FILES}' | while read -r unit; do
    unit=${{unit##*/}}
    [ "$(systemctl is-enabled "$unit" 2>/dev/null)" = enabled ] && echo "unit $unit $package"
  done
  dpkg --verify "$package" 2>/dev/null | grep -q '^missing  *c /' && echo "conffiles $package"
done
true
"""


@dataclass
class Survey:
    """What ``SURVEY`` found: the packages that go with ours, their enabled units (unit ->
    package) and those missing a configuration file."""

    packages: list[str] = field(default_factory=list)
    units: dict[str, str] = field(default_factory=dict)
    conffiles: list[str] = field(default_factory=list)


def parse_survey(output: str) -> Survey:
    """``SURVEY``'s lines (``package P``, ``unit U P``, ``conffiles P``) as a ``Survey``.

    Example: ``parse_survey("package nginx\\nunit nginx.service nginx\\n").units``
    -> ``{"nginx.service": "nginx"}``
    """
    found = Survey()
    for line in output.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "package":
            found.packages.append(rest)
        elif kind == "unit":
            unit, _, package = rest.partition(" ")
            found.units[unit] = package
        elif kind == "conffiles":
            found.conffiles.append(rest)
    return found


def package_steps(survey: Survey, purge: bool) -> list[Step]:
    """With ``purge``: the packages purged. Otherwise: missing configuration files put back
    from their packages (services held back), then the packages' enabled units disabled (after:
    a reinstall may enable them again)."""
    if purge and survey.packages:
        command = (
            "DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "
            + " ".join(map(shlex.quote, survey.packages))
            + " >/dev/null"
        )
        return [changed("packages", " ".join(survey.packages), "purged (--packages)", [command])]
    if purge:
        return []
    steps = [_reinstall(package) for package in survey.conffiles]
    for unit, package in sorted(survey.units.items()):
        command = f"systemctl disable --now {shlex.quote(unit)}"
        reason = f"of {package}, which we installed: disabled"
        steps.append(changed("unit", unit, reason, [command]))
    return steps


def _reinstall(package: str) -> Step:
    """``package``'s missing configuration files back as it ships them (``--force-confmiss``;
    a file the package's user changed is kept: ``--force-confold``). apt marks what it
    installs by name as installed by hand: a package that came as a dependency is marked so
    again, or a later purge would leave it behind."""
    options = ["--reinstall", "-o", "Dpkg::Options::=--force-confmiss", package]
    name = shlex.quote(package)
    command = "\n".join(
        [
            f"was_auto=$(apt-mark showauto {name})",
            install_without_starting(options),
            f'if [ -n "$was_auto" ]; then apt-mark auto {name} >/dev/null; fi',
        ]
    )
    return changed("conffiles", package, "put back as the package ships them", [command])


def survey_script(packages) -> str:
    """``SURVEY`` with ``packages`` (names from the manifest) as its arguments, quoted."""
    return f"set -- {' '.join(map(shlex.quote, packages))}\n{SURVEY}"


def leaving(survey: Survey, kept_units) -> Survey:
    """What a role that left leaves behind: ``survey`` without the units a remaining role
    runs (``kept_units``, with or without ``.service``)."""
    kept = {u for unit in kept_units for u in (unit, f"{unit}.service")}
    units = {u: p for u, p in survey.units.items() if u not in kept}
    return Survey(survey.packages, units, survey.conffiles)
