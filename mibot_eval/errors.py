"""The one exception type that reaches the user as a single clear line (no traceback)."""


class UserError(Exception):
    """Bad input or a missing prerequisite; the message says what is wrong and how to fix it."""


class StoreError(UserError):
    """The results store cannot be written (disk full, read-only, permissions) or read (a malformed
    record or manifest). Never taken for a simulator crash: the run stops at once."""


class Interrupted(BaseException):
    """Ctrl-C (SIGINT) or SIGTERM reached the run; finished episodes are on disk. A BaseException,
    like KeyboardInterrupt, so that no episode-level handler takes it for a failed episode."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
