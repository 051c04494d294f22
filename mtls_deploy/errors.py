"""Errors the user sees as one clear line: what is wrong, and how to fix it."""


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit status 1."""

    exit_code = 1


class BadInput(UserError):
    """Invalid input on the command line or in the inventory; exit status 2."""

    exit_code = 2
