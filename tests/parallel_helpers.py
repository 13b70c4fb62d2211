"""Shared by the parallel/server/shard/Ray tests: one small LIBERO selection with the tiny checkpoint,
its single-process reference run (computed once per pytest session), and record comparison."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from mibot_eval.run.planning import RunRequest
from mibot_eval.run.runner import execute

# 2 tasks x 1 trial, 12 steps (queries at steps 0 and 10): two env builds, two resets.
LIBERO_SELECTION = dict(checkpoint="tiny", suites=["libero_spatial"], tasks=[0, 1],
                        episodes_per_task=1, max_steps=12, video="none")
_REFERENCE: dict[str, Any] = {}


def libero_request(results_dir: Path, **kw: Any) -> RunRequest:
    return RunRequest(**{**LIBERO_SELECTION, "results_dir": results_dir, **kw})


def records(run_dir: Path) -> dict[str, dict[str, Any]]:
    path = Path(run_dir) / "episodes.jsonl"
    return {r["key"]: r for r in map(json.loads, path.read_text().splitlines())}


def outcome(records_by_key: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """What must not depend on how episodes were run: status, success, steps, queries, trace."""
    return {
        key: (r["status"], r["success"], r["steps"], r["metrics"].get("queries"),
              r["metrics"].get("trace_sha"))
        for key, r in sorted(records_by_key.items())
    }


def reference_outcome() -> dict[str, tuple[Any, ...]]:
    """The single-process run of LIBERO_SELECTION (once per session)."""
    if "outcome" not in _REFERENCE:
        folder = Path(tempfile.mkdtemp(prefix="mibot-reference-"))
        run_dir = execute(libero_request(folder))
        _REFERENCE["outcome"] = outcome(records(run_dir))
        _REFERENCE["run_dir"] = run_dir
    return _REFERENCE["outcome"]
