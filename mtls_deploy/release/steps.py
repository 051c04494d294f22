"""The contract between the release pipeline and a backend role.

A backend role that can run the user's application exposes, in its ``role.py``::

    from mtls_deploy.release.steps import ReleaseContext, ReleaseSteps

    def release(v: dict, facts: HostFacts, ctx: ReleaseContext) -> ReleaseSteps: ...

The pipeline builds the ``ReleaseContext`` (where the release lives, what the tree holds) and
runs the returned steps at fixed points: ``build`` and ``check`` as ``user`` in ``build_dir``
before the switch, ``start`` as root before the switch, ``activate`` as root after ``current``
is switched, ``retire`` as root once ``activate`` succeeded. Every command is a
``ShellCommand`` (``mtls_deploy.shell``): argv, quoted by the engine, or a fixed script that
carries no variable.
"""

from dataclasses import dataclass, field

from ..shell import ShellCommand


@dataclass(frozen=True)
class ReleaseContext:
    """Where one release is built or switched to, and what its tree holds.

    ``api_name``: the nginx role's ``api_name``; ``root``: ``/srv/<api_name>``.
    ``release``: absolute path of the release being built or switched to, its final name (no
    ``.partial``); ``build_dir``: where it is being built (``<release>.partial``), equal to
    ``release`` on a rollback. ``release_id``: ``<YYYYmmddTHHMMSSZ>-<sha12>``.
    ``current``: the absolute path of the ``current`` symlink; ``previous``: the absolute path
    of the release ``current`` points at now, or None on the first release.
    ``shared_root``: ``/srv/<api_name>/shared``; ``shared``: the ``app_shared`` dirs, relative.
    ``env_file``: ``/etc/mtls-deploy/<api_name>/app.env`` (root-only, the app's secrets).
    ``files``: the relative paths of the tree's files; ``digests``: sha256 hex of the files a
    backend builds from (``requirements.txt``, ``composer.json``, ``composer.lock``,
    ``package.json``), those present only. ``rollback``: True when switching back to a release
    that already exists (nothing is built or checked).
    """

    api_name: str
    root: str
    release: str
    build_dir: str
    release_id: str
    current: str
    previous: str | None
    shared_root: str
    shared: tuple[str, ...]
    env_file: str
    files: frozenset[str] = frozenset()
    digests: dict[str, str] = field(default_factory=dict)
    rollback: bool = False


@dataclass(frozen=True)
class ReleaseSteps:
    """What a backend does to run a release, each a tuple of ``ShellCommand``.

    ``user``: the app's unprivileged user; ``build`` and ``check`` run as it
    (``runuser -u <user> --``) with cwd ``build_dir`` and without the app's environment file
    (secrets are for the app, not for pip or composer). Both are skipped on a rollback.
    ``build``: composer install, a virtualenv and pip install, ... A failure of ``build`` or
    ``check`` refuses the release: ``<id>.partial`` is removed and the last line of the failing
    command's stderr is the one-line reason.
    ``check``: proves the release can start (imports the WSGI callable, ...).
    ``start``: as root, before the switch (a proxy starts the new instance and waits until it
    answers); on failure it stops what it started and exits non-zero: nothing was switched.
    ``activate``: as root, after ``current`` is switched (a graceful reload, or a start when
    nothing runs yet). On failure the pipeline switches ``current`` back to ``previous`` and
    runs the previous release's ``activate``.
    ``retire``: as root, after ``activate`` succeeded (stop the old instance, remove unused
    virtualenvs). May be empty.
    """

    user: str
    build: tuple[ShellCommand, ...] = ()
    check: tuple[ShellCommand, ...] = ()
    start: tuple[ShellCommand, ...] = ()
    activate: tuple[ShellCommand, ...] = ()
    retire: tuple[ShellCommand, ...] = ()
