"""nginx role: the mTLS site. See README.md."""
