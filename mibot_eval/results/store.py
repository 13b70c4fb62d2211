"""Durable results: one JSON line per finished episode (flushed and fsynced), a run manifest, resume.

A run directory holds:
  manifest.json    what makes the run reproducible and comparable (checkpoint identity, protocols,
                   execution mode, package versions, git commit); rewritten atomically.
  episodes.jsonl   one record per finished episode, appended durably; a torn last line left by a
                   kill is dropped on the next open, so a rerun resumes without loss or duplicates.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mibot_eval.errors import UserError
from mibot_eval.types import EpisodeResult

RECORD_SCHEMA = 1
EPISODES_FILE = "episodes.jsonl"
MANIFEST_FILE = "manifest.json"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def episode_record(result: EpisodeResult, context: dict[str, Any]) -> dict[str, Any]:
    """The JSON record of one episode: the spec's fields, the outcome, and run context."""
    spec = asdict(result.spec)
    return {
        "schema": RECORD_SCHEMA,
        "key": result.spec.key,
        **context,
        **spec,
        "success": bool(result.success),
        "steps": int(result.steps),
        "status": result.status,
        "error": result.error,
        "timings": {k: round(float(v), 4) for k, v in result.timings.items()},
        "metrics": result.metrics,
        "finished_at": utc_now(),
    }


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Complete records of an episodes file; a torn trailing line (killed mid-write) is skipped."""
    if not path.is_file():
        return
    with path.open("rb") as stream:
        for line in stream:
            if not line.endswith(b"\n"):
                return  # torn tail from a kill: not a finished episode
            if line.strip():
                yield json.loads(line)


def _repair_torn_tail(path: Path) -> None:
    """Cut a partial last line so the next append starts on a fresh line."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb+") as stream:
        data = stream.read()
        if data.endswith(b"\n"):
            return
        stream.truncate(data.rfind(b"\n") + 1)
        stream.flush()
        os.fsync(stream.fileno())


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON via a temp file + fsync + rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2, sort_keys=True, default=str)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunStore:
    """The durable record of one run: append finished episodes, know which are done."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.episodes_path = self.run_dir / EPISODES_FILE
        self.manifest_path = self.run_dir / MANIFEST_FILE

    # -- manifest -------------------------------------------------------------------------------
    def read_manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.is_file():
            return None
        with self.manifest_path.open(encoding="utf-8") as stream:
            return json.load(stream)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json_atomic(self.manifest_path, manifest)

    def open_manifest(self, manifest: dict[str, Any], identity_keys: tuple[str, ...]) -> None:
        """Create the manifest, or check that a resumed run is the same experiment and merge."""
        existing = self.read_manifest()
        if existing is None:
            self.write_manifest({**manifest, "created_at": utc_now(), "invocations": 1})
            return
        for key in identity_keys:
            if key in existing and existing[key] != manifest.get(key):
                raise UserError(
                    f"{self.run_dir} holds a run with a different {key}; "
                    f"use another --run name (or delete that folder) instead of mixing results"
                )
        suites = dict(existing.get("suites", {}))
        for name, protocol in manifest.get("suites", {}).items():
            if name in suites and suites[name].get("hash") != protocol.get("hash"):
                raise UserError(
                    f"{self.run_dir}: suite {name} was run with another protocol "
                    f"(hash {suites[name].get('hash')} vs {protocol.get('hash')}); use another --run"
                )
            suites[name] = protocol
        merged = {**existing, **manifest, "suites": suites}
        merged["created_at"] = existing.get("created_at", utc_now())
        merged["invocations"] = int(existing.get("invocations", 1)) + 1
        self.write_manifest(merged)

    # -- episodes -------------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        return list(read_records(self.episodes_path))

    def finished_keys(self) -> set[str]:
        """Keys of episodes that have a record (successful, failed or errored)."""
        return {r["key"] for r in read_records(self.episodes_path)}

    def append(self, record: dict[str, Any]) -> None:
        """Append one record and make it durable before returning."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        _repair_torn_tail(self.episodes_path)
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        with self.episodes_path.open("a", encoding="utf-8") as stream:
            stream.write(line)
            stream.flush()
            os.fsync(stream.fileno())
