"""Record what the engine's fact-gathering script prints on a provisioned lab host, for the
unit tests' fake transport (tests/unit/fakes.py) to replay.

Read-only on the host (and on the project: the PKI it plans with is a throwaway one): it runs ``gather_script`` twice (once for the system facts, then with
every path, user, unit and check the host's roles want given those facts) and saves the second
output verbatim to ``tests/unit/fixtures/<host>-gathered.txt``.

Example (lab up, api1 provisioned)::

    .venv/bin/python tests/record_facts.py api1
"""

import sys
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "unit" / "fixtures"
sys.path.insert(0, str(FIXTURES.parents[2]))  # run as a script from anywhere


def record(name: str) -> Path:
    """Gather ``name``'s facts as a full provision run would, and write them to a fixture."""
    from mtls_deploy import inventory, role_loader
    from mtls_deploy.connection import Remote, SshTarget
    from mtls_deploy.facts import Watched, gather_script
    from mtls_deploy.operations import watched
    from mtls_deploy.provision import HostRun, RunOptions

    _throwaway_pki()  # the watched paths do not depend on the PKI's contents
    host = inventory.load().host(name)
    roles = role_loader.host_roles(host.vars)
    with Remote(SshTarget.from_vars(name, host.vars)) as remote:
        run = HostRun(remote, roles, host.vars, RunOptions(check=True))
        run.gather(None)  # the system facts: the roles' wants depend on them
        covered = Watched.of(*watched(run.resources(run.facts)))
        script = gather_script(run.fact_packages(), covered)
        output = remote.run_script(script, sudo=True, check=True).stdout
    path = FIXTURES / f"{name}-gathered.txt"
    path.write_text(output)
    return path


def _throwaway_pki() -> None:
    """A PKI of our own in a temporary directory: the tls role reads one to plan, and this
    script must neither need nor touch the project's."""
    import os
    import tempfile

    from mtls_deploy.pki.store import PkiStore

    folder = Path(tempfile.mkdtemp(prefix="record-facts-")) / "pki"
    os.environ["MTLS_DEPLOY_PKI_DIR"] = str(folder)
    os.environ.setdefault("MTLS_DEPLOY_CA_PASSPHRASE", "throwaway")
    PkiStore(folder).init(name="Recording")


if __name__ == "__main__":
    for host_name in sys.argv[1:] or ["api1"]:
        print(record(host_name))
