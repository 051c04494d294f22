"""``inv maintain``: the one command for cron or a systemd timer on the control machine.

Idempotent: each run does only what is due (``due.py``: CRL at a third of its life left, our
server certificates at two thirds of their life, client certificates within
``client_renew_before``, a warning for a CA within a year or a third of ``ca_lifetime``), in an
order that locks nobody out (``run.py``), prints a recap (``recap.py``) and exits as ``inv
status`` does: 0 fine, 1 warning, 2 critical or a host failed, 3 unknown (bad input, no PKI).
``timer.py`` installs the systemd timer or cron entry that runs it.
"""

import sys

from ..errors import UserError

UNKNOWN = 3


def maintain_main(stream=None) -> int:
    """Run one maintenance pass, print the recap; returns the exit code (0-3)."""
    stream = stream or sys.stdout
    try:
        actions = _run()
    except UserError as error:
        print(f"maintain: UNKNOWN - {error}", file=stream)
        return UNKNOWN
    from .recap import exit_code, recap_text

    stream.write(recap_text(actions))
    stream.flush()
    return exit_code(actions)


def _run() -> list:
    from .. import inventory
    from ..clients import open_store
    from ..pki import passphrase
    from .run import maintain

    passphrase.from_file(passphrase.CA)  # a bad passphrase file: one line before anything runs
    loaded = inventory.load()
    store = open_store(keep_superseded=True)  # an old certificate stays valid until delivered
    return maintain(loaded, store)
