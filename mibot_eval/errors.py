"""The one exception type that reaches the user as a single clear line (no traceback)."""


class UserError(Exception):
    """Bad input or a missing prerequisite; the message says what is wrong and how to fix it."""
