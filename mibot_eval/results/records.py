"""The episode record: one JSON line of episodes.jsonl per finished episode, typed.

`EpisodeRecord` is what the Ledger writes (`episode_record`), the store reads back (validated by
`record_problem`), and every measure and view reads. Records carry `schema` (RECORD_SCHEMA); a record
without it was written before the field existed and reads as schema 1, whose fields are those below.
A record of a later schema (a newer mibot-eval) is refused by the store rather than measured wrongly.
Readers take fields with `.get`: a record of a benchmark may lack what another benchmark writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any, TypedDict, cast

from mibot_eval.types import EpisodeResult

RECORD_SCHEMA = 1
STATUSES = ("ok", "error")


class _Required(TypedDict):
    key: str  # suite/task_id/trial (EpisodeSpec.key): the episode's identity inside its run
    success: bool  # the episode's outcome (an error record is False)


class EpisodeRecord(_Required, total=False):
    """One finished episode (schema 1). Run context, spec, outcome, then what was measured."""

    schema: int  # RECORD_SCHEMA when written; absent in the oldest records: read as 1 (schema_of)
    # run context (the Ledger's, run/planning.suite_context)
    run: str  # the run folder's name ("release" for the release's own outcomes)
    checkpoint: str  # checkpoint name
    checkpoint_id: str  # checkpoint content hash (or a policy object's identity)
    benchmark: str  # libero | libero_pro | calvin | simpler
    robot_type: str  # the robot type the policy was asked for
    protocol_hash: str  # the suite protocol's hash (config.SuiteProtocol.protocol_hash)
    execution: dict[str, Any]  # the execution config (mode, replan_steps, async delays...)
    # the episode's spec (types.EpisodeSpec)
    suite: str
    task_id: int | None  # CALVIN: the sequence's index in its file; None in the release's CALVIN records
    task_name: str
    trial: int | None
    seed: int
    instruction: str
    # the outcome
    steps: int | None  # control steps executed (None in the release's records)
    status: str  # "ok" | "error" (an exception twice: a failure in every rate, listed apart)
    error: str | None  # the error's last line (status "error")
    timings: dict[str, float]  # seconds: total_s, reset_s, infer_s, sim_s, render_s
    metrics: dict[str, Any]  # trace_sha, request_seeds, motion, latencies_s, completed (CALVIN),
    # repeat_of (WidowX copies), video, attempts, ...: what the scheduler and the adapter measured
    finished_at: str | None  # UTC ISO time the record was written (None in the release's records)
    replaces: dict[str, Any]  # `run --retry-errors`: the errored record this one replaces
    release_log: str  # the release's own outcomes only: the log file they were read from


def utc_now() -> str:
    """The time as every file of a run folder writes it: UTC, ISO 8601, seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def episode_record(result: EpisodeResult, context: Mapping[str, Any]) -> EpisodeRecord:
    """The record of one episode: the spec's fields, the outcome, and run context."""
    spec = asdict(result.spec)
    record: dict[str, Any] = {
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
    return cast(EpisodeRecord, record)  # the context holds EpisodeRecord's run context fields


def schema_of(record: Mapping[str, Any]) -> int:
    """The record's schema version; 1 for records written before the field existed."""
    return int(record.get("schema", 1))


def is_ok(record: Mapping[str, Any]) -> bool:
    """Not an error record (status "ok", or no status in the oldest records)."""
    return record.get("status", "ok") != "error"


def suite_of(record: Mapping[str, Any]) -> str:
    """The record's suite (the first part of its key in records that do not name it)."""
    return str(record.get("suite") or str(record.get("key", "?")).split("/")[0])


# field -> (allowed types, required): what a record must hold to be measured (issue: "false" is True)
RECORD_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "schema": ((int,), False),
    "key": ((str,), True),
    "suite": ((str,), False),
    "success": ((bool,), True),
    "status": ((str,), False),
    "task_id": ((int, type(None)), False),
    "trial": ((int, type(None)), False),
    "metrics": ((dict,), False),
    "timings": ((dict,), False),
}


def record_problem(record: Any) -> str | None:
    """Why a parsed JSON line is not a record this harness can measure; None when it is one."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not a record (an object)"
    for name, (types, required) in RECORD_FIELDS.items():
        if name not in record:
            if required:
                return f"no '{name}' field"
            continue
        value = record[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            return f"'{name}' is {value!r} ({type(value).__name__})"
    if record.get("status", "ok") not in STATUSES:
        return f"'status' is {record.get('status')!r}, not one of {STATUSES}"
    if schema_of(record) > RECORD_SCHEMA:
        return (f"schema {schema_of(record)}, written by a newer mibot-eval (this one reads records up to "
                f"schema {RECORD_SCHEMA}): upgrade mibot-eval to read it")
    return None
