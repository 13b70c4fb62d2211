"""Ctrl-C and SIGTERM: stop at the next control step, keep what is on disk, exit 130 / 143.

A signal only sets a flag; the episode loop and the backends' loops call `check()` between steps and
raise errors.Interrupted there. So a signal that arrives while a simulator cannot be interrupted
(LIBERO's reset retries in a loop that swallows every exception) still stops the run within that
step, and the episode in flight is simply not recorded (a rerun runs it again). A second signal
while the first is pending raises at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from mibot_eval.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_pending: list[int] = []


def check() -> None:
    """Raise Interrupted if a signal arrived since the run started."""
    if _pending:
        raise Interrupted(_pending[0])


def _handler(signum: int, _frame: FrameType | None) -> None:
    if _pending:  # the second Ctrl-C: the user does not want to wait for the step to end
        raise Interrupted(signum)
    _pending.append(signum)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Within the block SIGINT/SIGTERM set the flag instead of raising (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    _pending.clear()
    for sig in SIGNALS:
        signal.signal(sig, _handler)
    try:
        yield
        check()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _pending.clear()
