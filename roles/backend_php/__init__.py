"""backend_php role: the API on PHP-FPM. See README.md."""
