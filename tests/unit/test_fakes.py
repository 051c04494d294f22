"""The fake transport answers as the recorded host did: what it prints for the recorded paths,
users and units parses to exactly what the recording parses to."""

from mtls_deploy.facts import Watched, gather_script, parse_gathered
from tests.unit.fakes import FIXTURES, FakeHost, asked


def test_the_fake_answers_a_gather_as_the_recorded_host_did():
    recording = (FIXTURES / "api1-gathered.txt").read_text()
    system, resources = parse_gathered(recording)
    covered = Watched.of(resources.paths, resources.users, resources.units)
    answer = FakeHost.recorded("api1").answer(gather_script(("nginx",), covered))
    assert parse_gathered(answer.stdout) == (system, resources)


def test_the_fake_reads_what_a_script_asks_for_quoted_names_included():
    covered = Watched.of(["/a b/c'd", "/e"], ["api-php"], ["php8.2-fpm"], ["test -e /x"])
    paths, users, units, checks = asked(covered.script())
    assert (sorted(paths), users, units) == (
        ["/a b/c'd", "/e"],
        ["api-php"],
        ["php8.2-fpm.service"],
    )
    assert len(checks) == 1


def test_a_path_the_host_lacks_is_absent_in_the_answer():
    host = FakeHost.recorded("api1").without("/etc/nginx/mtls")
    _, resources = parse_gathered(
        host.answer(gather_script((), Watched.of(["/etc/nginx/mtls"], [], []))).stdout
    )
    assert resources.path("/etc/nginx/mtls").kind == "absent"
