"""One writer per run folder: an OS lock (fcntl.flock) on RUN_DIR/writer.lock, held for a whole run.

Every command that writes a run folder (`run`, `merge -o OUT`) takes it first, before reading what
is recorded; a second command on the same folder stops at once with one line naming the holder (pid,
host, command and start time, which the holder writes into the lock file). Readers (`report`,
`leaderboard`, `check`, merge's inputs) take no lock: records are appended whole and manifests
replaced atomically, so a reader sees a consistent folder, at worst without the newest episodes.

Files several run folders share are updated under `waiting_lock` (two runs finishing at once both
upsert their rows into results/leaderboard.csv: the second waits for the first).

The OS releases the lock when its holder exits, however it exits (a kill -9 included), so a lock
file left by a killed run is no obstacle: only its text remains, and the next holder replaces it.
The file itself is never deleted (deleting it would let two processes lock two different files).
flock works between processes of one machine and, on Linux, on NFS (it is emulated with POSIX byte
range locks there); it is not reliable on every network filesystem.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mibot_eval.errors import UserError
from mibot_eval.results.records import utc_now

LOCK_FILE = "writer.lock"


class RunLocked(UserError):
    """Another process is writing this run folder."""


def holder_info() -> dict[str, Any]:
    """What a second command is told about this one."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": sys.argv,
            "started_at": utc_now()}


@contextlib.contextmanager
def writer_lock(run_dir: Path, what: str = "run") -> Iterator[None]:
    """Hold RUN_DIR's writer lock for the block; RunLocked (one line) if another process holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise UserError(f"cannot open {path} ({exc.strerror or exc}): the run folder must be "
                        "writable") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(f"{run_dir} is being written by {_describe_holder(fd)}; one writer per run "
                            f"folder: wait for it to finish (or stop it), or {what} into another "
                            "folder") from None
        text = (json.dumps(holder_info(), default=str) + "\n").encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, text, 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # released: no stale holder text (the file stays, see above)
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


@contextlib.contextmanager
def waiting_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if absent) for the block, waiting for any holder:
    for short read-modify-writes of a file several runs share (results/leaderboard.csv)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _describe_holder(fd: int) -> str:
    """'pid 123 on host h (mibot-eval run ...) since 2026-...' from the lock file, as far as known."""
    try:
        info = json.loads(os.pread(fd, 1 << 16, 0) or b"{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or not info.get("pid"):
        return "another process (it has not written its name yet)"
    command = info.get("command")
    command_text = " ".join(map(str, command)) if isinstance(command, list) else str(command or "?")
    if len(command_text) > 160:
        command_text = command_text[:157] + "..."
    return (f"pid {info.get('pid')} on host {info.get('host', '?')} ({command_text}) since "
            f"{info.get('started_at', '?')}")
