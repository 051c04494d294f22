"""The manifest comes back with the system facts, in the same round trip, as base64 on one line."""

import base64
import subprocess
from pathlib import Path

from mtls_deploy import facts

TEXT = '{\n  "format": 1,\n  "roles": {}\n}\n'


def test_the_manifest_line_gives_its_text_back():
    line = f"manifest\t{base64.b64encode(TEXT.encode()).decode()}\n"
    parsed = facts.parse_system_facts("os\tdebian\t12\n" + line)
    assert parsed.manifest == TEXT and parsed.os_id == "debian"


def test_no_manifest_line_means_no_manifest():
    assert facts.parse_system_facts("os\tdebian\t12\n").manifest == ""


def test_damaged_base64_is_not_taken_for_an_empty_manifest():
    assert facts.parse_system_facts("manifest\tnot*base64\n").manifest == "?"


def test_the_system_facts_script_reads_the_manifest_and_survives_its_absence():
    script = facts.system_facts_script(("coreutils",))
    assert f"base64 -w0 {facts.MANIFEST}" in script
    if Path(facts.MANIFEST).exists():  # a control machine that is also a host: nothing to prove
        return
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    assert "manifest\t" not in out and facts.parse_system_facts(out).manifest == ""


def test_a_gathered_manifest_is_kept_in_the_host_facts_for_the_next_guess():
    gathered = facts.gather_script((), facts.Watched())
    assert gathered.index(facts.MANIFEST) < gathered.index(facts.RESOURCES_MARK)
