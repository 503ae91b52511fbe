"""User-facing errors: the CLI prints them as one line, never as a traceback."""


class UserError(Exception):
    """Bad input a user can fix; the message names the file, row or key."""


class DataError(UserError):
    """A dataset problem (missing file, malformed row, unknown category)."""
