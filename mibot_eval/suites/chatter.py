"""Simulator chatter (robosuite's private-macro warnings, LIBERO's task-order lines, EGL notices) goes to
the run folder's `simulator.log`, not the terminal; `mibot-eval run -v` shows it instead.

Adapters wrap their noisy calls (imports, benchmark and env construction) in `quiet()`, which
redirects the process's stdout and stderr file descriptors (so C libraries are caught too) into a
temporary file and appends what was written to the log. Before the run folder is known the text is
kept in memory and written once `set_log` names the file. Worker processes learn the file from
$MIBOT_EVAL_SIMULATOR_LOG.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

LOG_FILE = "simulator.log"
LOG_ENV = "MIBOT_EVAL_SIMULATOR_LOG"
VERBOSE_ENV = "MIBOT_EVAL_VERBOSE"
_pending: list[bytes] = []


def set_log(path: Path | None, verbose: bool = False) -> None:
    """Name the log file (this process and the workers it starts) and flush what was kept."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.pop(VERBOSE_ENV, None)
    if path is None:
        os.environ.pop(LOG_ENV, None)
        return
    os.environ[LOG_ENV] = str(path)
    _write(b"")


def _write(data: bytes) -> None:
    path = os.environ.get(LOG_ENV)
    if path is None:
        if data:
            _pending.append(data)
        return
    chunks = [*_pending, data]
    _pending.clear()
    text = b"".join(chunks)
    if text:
        with contextlib.suppress(OSError), open(path, "ab") as stream:
            stream.write(text)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Everything written to stdout/stderr inside the block goes to the simulator log (unless -v)."""
    if os.environ.get(VERBOSE_ENV):
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no real file descriptors (an embedding host): leave the output alone
        yield
        return
    with tempfile.TemporaryFile() as capture:
        text = open(capture.fileno(), "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
        os.dup2(capture.fileno(), 1)
        os.dup2(capture.fileno(), 2)
        try:
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                yield  # Python writers (sys.stdout may not be fd 1) and C writers both land here
        finally:
            with contextlib.suppress(Exception):
                text.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            capture.seek(0)
            _write(capture.read())
