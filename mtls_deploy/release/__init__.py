"""Releases of the user's own application (``app_src``): the tree on the control machine, the
plan (nothing changed, rollback target, pruning), and the remote steps that upload, build,
switch ``current`` atomically and activate. A backend role takes part through its ``release``
hook, which returns ``ReleaseSteps`` (``steps.py``)."""
