"""TEMPORARY shim during the move to mtls_deploy/pki/: removed in the same series."""

from .pki.bundle import *  # noqa: F403
