"""The one exception type that reaches the user as a clear line and exit code 2.

Anything a user can fix (a missing file, a bad flag, a malformed record) is raised as
`UserError("what is wrong, where, and how to fix it")`. The CLI prints it on one line and exits
with code 2; every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or options, reported as one line (exit code 2)."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # One line, always: the CLI contract is "one clear line", so fold any newline a caller
        # passed (for example a list of config problems) into "; ".
        super().__init__(" ".join(part.strip() for part in message.splitlines() if part.strip()))
