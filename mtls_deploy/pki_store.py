"""TEMPORARY shim during the move to mtls_deploy/pki/: removed in the same series."""

from .pki.index import *  # noqa: F403
from .pki.issuance import *  # noqa: F403
from .pki.passphrase import *  # noqa: F403
from .pki.store import *  # noqa: F403
