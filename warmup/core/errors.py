"""Errors meant for the person at the terminal: the CLI prints them without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad input, missing service); printed as is, exit code 1."""

    exit_code = 1
