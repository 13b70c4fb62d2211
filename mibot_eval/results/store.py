"""Durable results: one JSON line per finished episode (flushed and fsynced), a run manifest, resume.

A run directory holds:
  manifest.json    what makes the run reproducible and comparable (checkpoint identity, protocols,
                   execution mode, package versions, git commit); rewritten atomically.
  episodes.jsonl   one record per finished episode (results/records.py: EpisodeRecord), appended
                   durably; a torn last line left by a kill is dropped on the next open, so a
                   rerun resumes without loss or duplicates.
                   An episode rerun by `run --retry-errors` is appended again: the latest line
                   for a key is its record (RunStore.records() gives one per key).
  writer.lock      held (fcntl) by the one command writing the folder (results/lock.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

from mibot_eval.errors import StoreError
from mibot_eval.results import resume
from mibot_eval.results.records import EpisodeRecord, record_problem, utc_now

EPISODES_FILE = "episodes.jsonl"
MANIFEST_FILE = "manifest.json"
LATEST_FIELDS = ("selection", "expected_episodes", "updated_at", "shard")  # the latest invocation's


def read_records(path: Path) -> Iterator[EpisodeRecord]:
    """Complete records of an episodes file; a torn trailing line (killed mid-write) is skipped.

    Anything else that is not a valid record (not JSON, not an object, a field of the wrong type)
    raises StoreError naming the file and line: measuring around it would be silently wrong.
    """
    if not path.is_file():
        return
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise StoreError(f"cannot read {path} ({exc.strerror or exc})") from None
    with stream:
        for number, line in enumerate(stream, start=1):
            if not line.endswith(b"\n"):
                return  # torn tail from a kill: not a finished episode
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                problem = f"not JSON ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})"
            else:
                problem = record_problem(record)
            if problem:
                raise StoreError(f"{path}:{number}: malformed episode record: {problem}; repair or "
                                 "delete that line (a rerun of the run then repeats that episode)")
            yield cast(EpisodeRecord, record)  # validated by record_problem


def latest_per_key(records: Iterable[EpisodeRecord]) -> list[EpisodeRecord]:
    """One record per key: the last line written for it, at the place its key was first recorded.

    `run --retry-errors` reruns an errored episode and appends the new record (with `replaces`)
    after the old one: the append is the whole update, durable in one fsynced line, so a kill at
    any moment leaves either the old record or the new one in force, never both or neither."""
    latest: dict[str, EpisodeRecord] = {}
    for record in records:
        latest[record["key"]] = record
    return list(latest.values())


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


def _umask_mode() -> int:
    """0666 minus the process umask: what `open()` gives a new file (mkstemp would give 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON via a temp file + fsync + rename, so readers never see half a file."""
    write_atomic(path, (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8"))


def write_atomic(path: Path, data: bytes) -> None:
    """Write a file via a temp file + fsync + rename (mode from the umask); StoreError on failure."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _write_error(path, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_error(path: Path, exc: OSError) -> StoreError:
    return StoreError(f"cannot write {path} ({exc.strerror or exc}); the episodes finished so far are "
                      "safe in its run folder: free space or fix permissions, then rerun the same "
                      "command to resume")


class RunStore:
    """The durable record of one run: append finished episodes, know which are done."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.episodes_path = self.run_dir / EPISODES_FILE
        self.manifest_path = self.run_dir / MANIFEST_FILE

    # -- manifest -------------------------------------------------------------------------------
    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest, None when there is none; StoreError (one line) when it is not valid JSON."""
        if not self.manifest_path.is_file():
            return None
        try:
            data = json.loads(self.manifest_path.read_bytes())
        except OSError as exc:
            raise StoreError(f"cannot read {self.manifest_path} ({exc.strerror or exc})") from None
        except ValueError as exc:
            raise StoreError(f"{self.manifest_path}: not a valid manifest ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:80]}); restore it, or delete it and rerun the "
                             "run's command to write a new one") from None
        if not isinstance(data, dict):
            raise StoreError(f"{self.manifest_path}: not a valid manifest (a JSON {type(data).__name__}, "
                             "not an object); restore it, or delete it and rerun the run's command")
        return data

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json_atomic(self.manifest_path, manifest)

    def open_manifest(self, manifest: dict[str, Any], identity_keys: tuple[str, ...],
                      allow_mixed: bool = False) -> None:
        """Create the manifest, or check that a resumed run is the same experiment and add this
        invocation (results/resume.py says what is checked).

        `manifest["invocation"]` (this invocation's host, packages, selection, ...) is appended to
        `history`; the run's facts (policy runtime, packages, host, git commit, command) stay those of
        its first invocation, selection and expected_episodes become this invocation's. A folder
        with records but no manifest gets one rebuilt from its records first."""
        manifest = dict(manifest)
        invocation = dict(manifest.pop("invocation", None) or {"started_at": utc_now()})
        existing = self.read_manifest()
        records = self.records()
        if existing is None and records:
            existing = resume.rebuild_manifest(self.run_dir.name, records)
        if existing is None:
            self.write_manifest({**manifest, "created_at": utc_now(), "invocations": 1,
                                 "history": [invocation]})
            return
        resume.check_identity(self.run_dir, existing, manifest, identity_keys)
        suites = dict(existing.get("suites", {}))
        for name, protocol in manifest.get("suites", {}).items():
            suites[name] = {**protocol, **suites[name]} if name in suites else protocol
        checkpoint = manifest.get("checkpoint") if isinstance(manifest.get("checkpoint"), dict) else {}
        resume.check_records(self.run_dir, records, {n: e.get("hash") for n, e in suites.items()},
                             checkpoint.get("hash"))
        differences = resume.runtime_differences(existing, manifest)
        if differences and not allow_mixed:
            resume.refuse_mixed(self.run_dir, differences)
        merged = {**manifest, **existing, "suites": suites}
        for key in LATEST_FIELDS:
            if key in manifest:
                merged[key] = manifest[key]
        benchmarks = {b for m in (existing, manifest) for b in str(m.get("benchmark") or "").split("+") if b}
        merged["benchmark"] = "+".join(sorted(benchmarks))
        if differences:
            invocation["mixed_resume"] = differences
            merged["mixed_resume"] = [*(existing.get("mixed_resume") or []),
                                      {"at": invocation.get("started_at"), "differences": differences}]
        merged["created_at"] = existing.get("created_at", utc_now())
        merged["invocations"] = int(existing.get("invocations", 1)) + 1
        merged["history"] = [*(existing.get("history") or []), invocation]
        self.write_manifest(merged)

    # -- episodes -------------------------------------------------------------------------------
    def records(self) -> list[EpisodeRecord]:
        """One record per episode key: the latest line written for it (see latest_per_key)."""
        return latest_per_key(read_records(self.episodes_path))

    def all_records(self) -> list[EpisodeRecord]:
        """Every complete line, in file order (a key recorded again appears twice)."""
        return list(read_records(self.episodes_path))

    def finished_keys(self) -> set[str]:
        """Keys of episodes that have a record (successful, failed or errored)."""
        return {r["key"] for r in read_records(self.episodes_path)}

    def append(self, record: EpisodeRecord) -> None:
        """Append one record and make it durable before returning. On a write error (disk full,
        read-only) the file is cut back to its last complete line and StoreError raised."""
        line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode("utf-8")
        size = None
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            _repair_torn_tail(self.episodes_path)
            size = self.episodes_path.stat().st_size if self.episodes_path.exists() else 0
            with self.episodes_path.open("ab") as stream:
                stream.write(line)
                stream.flush()
                os.fsync(stream.fileno())
        except OSError as exc:
            if size is not None:
                with contextlib.suppress(OSError):
                    os.truncate(self.episodes_path, size)
            raise _write_error(self.episodes_path, exc) from None
