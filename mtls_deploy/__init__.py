"""mtls-deploy: provision client-certificate (mTLS) authenticated APIs over SSH."""

__version__ = "0.1.0"
