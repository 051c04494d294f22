"""At fact time a system other than Debian 12/13 or Ubuntu 22.04/24.04 is refused in one line
naming what /etc/os-release says. The fact script's own os line runs here in sh against
recorded os-release files (the systems' own, shortened)."""

import subprocess

import pytest

from mtls_deploy import facts
from mtls_deploy.errors import UserError

OS_RELEASES = {
    "debian-12": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
    'VERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n',
    "debian-13": 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nNAME="Debian GNU/Linux"\n'
    'VERSION_ID="13"\nVERSION="13 (trixie)"\nVERSION_CODENAME=trixie\nID=debian\n',
    "ubuntu-22.04": 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\n'
    "ID=ubuntu\nID_LIKE=debian\n",
    "ubuntu-24.04": 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\n'
    "ID=ubuntu\nID_LIKE=debian\n",
    "debian-11": 'PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nVERSION_ID="11"\nID=debian\n',
    "debian-sid": 'PRETTY_NAME="Debian GNU/Linux trixie/sid"\nNAME="Debian GNU/Linux"\nID=debian\n',
    "ubuntu-20.04": 'NAME="Ubuntu"\nVERSION_ID="20.04"\nID=ubuntu\nID_LIKE=debian\n',
    "centos-9": 'NAME="CentOS Stream"\nVERSION="9"\nID="centos"\nID_LIKE="rhel fedora"\n'
    'VERSION_ID="9"\n',
    "alpine-3.20": 'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.20.3\n',
}


def gathered(tmp_path, os_release: str | None) -> str:
    """The fact script's output on a machine whose /etc/os-release is ``os_release`` (None: no
    such file)."""
    path = tmp_path / "os-release"
    if os_release is not None:
        path.write_text(os_release)
    script = facts.system_facts_script(()).replace(facts.OS_RELEASE, str(path))
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    return out + f"{facts.RESOURCES_MARK}\n"


@pytest.mark.parametrize("name", ["debian-12", "debian-13", "ubuntu-22.04", "ubuntu-24.04"])
def test_supported_systems_pass(tmp_path, name):
    system, _ = facts.parse_gathered(gathered(tmp_path, OS_RELEASES[name]))
    assert f"{system.os_id}-{system.os_version}" == name


@pytest.mark.parametrize(
    ("name", "found"),
    [
        ("debian-11", "ID=debian VERSION_ID=11"),
        ("debian-sid", "ID=debian VERSION_ID=(none)"),
        ("ubuntu-20.04", "ID=ubuntu VERSION_ID=20.04"),
        ("centos-9", "ID=centos VERSION_ID=9"),
        ("alpine-3.20", "ID=alpine VERSION_ID=3.20.3"),
    ],
)
def test_other_systems_are_refused_naming_what_was_found(tmp_path, name, found):
    with pytest.raises(UserError) as error:
        facts.parse_gathered(gathered(tmp_path, OS_RELEASES[name]))
    assert str(error.value) == (
        f"unsupported system ({found} in /etc/os-release): mtls-deploy provisions Debian 12"
        " or 13 (Ubuntu 22.04 or 24.04 accepted, not tested)"
    )


def test_no_os_release_at_all_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"^unsupported system \(no /etc/os-release\): "):
        facts.parse_gathered(gathered(tmp_path, None))
