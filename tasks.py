"""``inv`` in a checkout: the tasks are the package's own (``mtls_deploy/tasks.py``), the same
collection the installed ``mtls-deploy`` command runs."""

from mtls_deploy.tasks import ns  # noqa: F401
