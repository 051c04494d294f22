"""Tests of mtls_deploy.pki, one module per module of the package."""
