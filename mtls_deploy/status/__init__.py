"""``inv status``: what will expire where, and whether every host holds what the PKI says, read
live over SSH (every host in parallel, one script per host; ``provision --check`` on a
connection of its own for the drift). Modules: ``gather`` (the scripts, their parsing),
``judge`` and ``verdicts`` (rows, pure), ``run`` (PKI and inventory in, ``StatusReport`` out),
``table`` (terminal), ``html`` (the timeline page).

Exit codes, as monitoring plugins (Nagios, Icinga) use them: 0 every check ok; 1 a warning
(something ends within ``warn_before``, default 30d, or ``provision --check`` has changes);
2 critical (expired, a host's file differs from the PKI's, a unit down, a host unreachable);
3 unknown (bad input, no PKI).

``inv status --json`` prints one document; its shape is stable (new keys may be added, none
renamed or removed without raising ``format``)::

    {
      "format": 1,
      "generated_at": "2026-11-30T06:10:00+00:00",      # when the hosts were read (UTC)
      "status": "ok" | "warning" | "critical",          # the worst check
      "exit_code": 0 | 1 | 2,
      "warn_before_seconds": 2592000,
      "client_renew_before_seconds": 2592000,
      "checks": [                                       # hosts in inventory order, then clients, CAs
        {
          "host": "api1" | null,                        # null: PKI-wide (a client, a CA)
          "kind": "host" | "server-cert" | "client-ca" | "crl" | "services" | "drift"
                  | "api-ca" | "client" | "ca",
          "name": "ssh",                                # the file, client name, CA name, ...
          "status": "ok" | "warning" | "critical",
          "detail": "expires in 364 d",                 # for people; wording may change
          "not_before": ISO 8601 | null,                # dated checks: certificates, CRLs, CAs
          "not_after": ISO 8601 | null,
          "renew_at": ISO 8601 | null,                  # when maintain renews it
          "days_left": int | null,                      # whole days to not_after (< 0: past)
          "facts": {...}                                # per kind, e.g. server-cert: subject,
        }                                               # issuer, serial, sha256, match; crl:
      ]                                                 # number, this_update, next_update;
    }                                                   # client: serial, status, delivered
                                                        # {host: "current" | why not};
                                                        # services: units {unit: state};
                                                        # drift: changed [steps]
"""

from .run import StatusReport, Thresholds, run_status
from .table import print_table

__all__ = ["StatusReport", "Thresholds", "print_table", "run_status"]
