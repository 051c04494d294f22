"""The PKI: certificate profile, key files, index, journal, passphrase, store and bundles.

Callers use ``store.PkiStore`` (and ``bundle`` for client bundles); nothing outside this package
reads a CA key file. The package imports nothing of SSH or of the provisioning engine.
"""
