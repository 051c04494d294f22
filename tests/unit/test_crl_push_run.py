"""The CRL push is a provision run that takes only the resources tagged ``crl``: a fake
transport replays a host's answers, so the round trips can be counted without a lab."""

import hashlib
from types import SimpleNamespace

import pytest

from mtls_deploy import role_loader
from mtls_deploy.provision import HostRun, RunOptions

V = {
    "inventory_hostname": "api1",
    "group_names": ["api"],
    "server_name": "api1.example.com",
    "https_listen": "127.0.0.1",
    "https_port": 8441,
}


class ReplayRemote:
    """Answers each script with the state of one file: the CRL as ``content`` (or absent)."""

    def __init__(self, path: str, content: bytes | None):
        self.path, self.content, self.scripts = path, content, []

    def run_script(self, script, sudo=False, check=False, timeout=None):
        self.scripts.append(script)
        lines = ["os\tdebian\t12", "init\tsystemd", "@@resources"]
        if self.content is not None and self.path in script:
            digest = hashlib.sha256(self.content).hexdigest()
            lines += [
                f"stat\t{self.path}\tregular file\t644\troot\troot",
                f"sha\t{digest}  {self.path}",
            ]
        return SimpleNamespace(stdout="\n".join(lines) + "\n", stderr="", exit_status=0, ok=True)


def host_vars() -> dict:
    from mtls_deploy.inventory import role_defaults

    defaults = {k: x for layer in role_defaults() for k, x in layer.values.items()}
    return {**defaults, **V}


def crl_run(remote, v):
    roles = role_loader.host_roles(v)
    return HostRun(remote, roles, v, RunOptions(tags=("crl",))).converge(None)


def test_a_current_crl_is_one_round_trip_and_one_step(pki_store):
    v = host_vars()
    path = role_loader.exports_for(v, "tls")["tls_crl"]
    remote = ReplayRemote(path, pki_store.crl_pem())
    steps = crl_run(remote, v)
    assert [(s.kind, s.name, s.status) for s in steps] == [("file", path, "ok")]
    assert len(remote.scripts) == 1  # no fact cache needed: the tagged resource is known
    assert "apt-get" not in remote.scripts[0]  # no package step in a CRL push


def test_a_changed_crl_is_written_checked_and_reloaded(pki_store):
    v = host_vars()
    path = role_loader.exports_for(v, "tls")["tls_crl"]
    remote = ReplayRemote(path, b"an old CRL\n")
    crl_run(remote, v)
    apply_script = remote.scripts[-1]
    assert len(remote.scripts) == 2
    assert path in apply_script and "nginx -t" in apply_script  # the nginx role's validator
    assert "mtls_accepting" in apply_script  # the nginx role's reload-and-wait, by name
    assert "server.key" not in apply_script  # nothing but the tagged file


class FakeRemote(ReplayRemote):
    """``Remote`` as ``provision_host`` uses it: a context manager that counts channels."""

    channels = 0

    def __init__(self, target):
        super().__init__("/nowhere", None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def counted_issues(monkeypatch, pki_store, tmp_path):
    """Every ``server_cert`` call the run makes, through a fake transport and a fresh cache."""
    from mtls_deploy import provision

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(provision, "Remote", FakeRemote)
    calls = []
    original = type(pki_store).server_cert

    def counting(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(pki_store), "server_cert", counting)
    return calls


@pytest.mark.parametrize("check", [True, False])
def test_prepare_runs_once_per_host_before_planning(counted_issues, pki_env, check):
    from mtls_deploy.provision import RunOptions, provision_host

    (pki_env.root / "inventory").mkdir()  # the project directory (nothing is read from it)
    host = SimpleNamespace(name="api1", vars={**host_vars(), "ansible_host": "127.0.0.1"})
    before = {p: p.read_bytes() for p in pki_env.pki_dir.rglob("*") if p.is_file()}
    result = provision_host(host, RunOptions(check=check))
    first = result.steps[0]
    assert (first.kind, first.name, first.status) == ("pki", "server certificate", "changed")
    assert first.reason == ("would issue" if check else "issued") + ": no certificate yet"
    assert len(counted_issues) == (0 if check else 1)  # the plan itself never issues
    if check:
        after = {p: p.read_bytes() for p in pki_env.pki_dir.rglob("*") if p.is_file()}
        assert after == before
