"""backend_python role: the API on uWSGI (FastCGI), socket-activated. See README.md."""
