"""``inv smoke-test``: curl on the remote machines (the consumers and each API host) says who
gets in, and the API hosts' CRLs are checked. Never ``-k``: every request verifies the server
against the server CA for server_name.

Cases (a table row each; ``--json`` prints the same rows):

1. each consumer's delivered bundle: 200 with its CN while the index says valid, rejected once
   revoked or expired (the servers agree with the index);
2. no client certificate: 400 (``client_verify: on``), or 200 on /health and 401 on /whoami
   (``optional``);
3. a revoked certificate, 4. one from a foreign CA, 5. an expired one: rejected. The revoked
   and the expired one are the PKI's own smoke test certificates (``PkiStore.smoke_certificates``:
   signed by the client CA once, recorded in the index, the revoked one in the CRL); the foreign
   one is made here, in memory, by a CA made for it. They travel inside the script to a 0700
   temporary directory on the API host and are deleted when the script exits;
6. identity headers (``Verified: SUCCESS``...) without a certificate: not authenticated;
7. TLS 1.1 and lower refused; 8. the server certificate verifies for server_name;
9. the CRL on the host is the PKI's, signed by the client CA, valid 7 more days at least.

One SSH round trip per consumer (all its requests in one script), two per API host (its
requests; reading the CRL as root), every host in parallel. A host that cannot be reached is one
failed row, not one per case it would have answered.

Modules: ``cases`` (the table, pure), ``verdicts`` (judging, pure), ``remote`` (the script each
host runs and its parsing), ``certificates`` (cases 3-5), ``report`` (table, JSON), ``run``
(inventory and PKI in, report out).
"""

from .cases import (
    CRL_CASE,
    CRL_MIN_DAYS,
    FOREIGN_WORDS,
    ApiTarget,
    Case,
    Client,
    ConsumerHost,
    CurlResult,
    Expect,
    Request,
    plan_cases,
)
from .report import SmokeReport, print_report
from .run import CRL_PUSH_NOTE, run_smoke

__all__ = [
    "CRL_CASE",
    "CRL_MIN_DAYS",
    "CRL_PUSH_NOTE",
    "FOREIGN_WORDS",
    "ApiTarget",
    "Case",
    "Client",
    "ConsumerHost",
    "CurlResult",
    "Expect",
    "Request",
    "SmokeReport",
    "plan_cases",
    "print_report",
    "run_smoke",
]
