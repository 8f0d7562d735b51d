"""The one exception type the CLI turns into a one-line message (no traceback)."""


class DBNetError(Exception):
    """A user-facing error: bad input file, bad option, missing weights. The message names the file
    (and line) at fault."""
