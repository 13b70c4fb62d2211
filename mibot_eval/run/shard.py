"""Deterministic shards (`run --shard I/N`) and `mibot-eval merge` for people without Ray.

Shard I of N is the I-th of N contiguous blocks of the selected episodes in official order
(mibot_eval.run.backends.work_queue.partition: near-equal sizes, cuts moved to task boundaries when that costs
at most 10% balance, so a shard rarely builds an env for only a few trials of a task). It depends only
on the selection (suites, tasks, episodes per task) and N, so every machine computes the same split.
Each shard writes its own run folder (`...__shardIofN`) whose manifest lists all planned episode keys.

`merge RUN_DIR... -o OUT` checks that the runs are the same experiment (checkpoint, execution mode,
protocol hashes), refuses any episode recorded twice, writes OUT/episodes.jsonl and a manifest, and
reports which planned episodes have no record (e.g. a shard that was never run; exit 5). It holds
OUT's writer lock (results/lock.py); the inputs are read without one.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from mibot_eval.errors import UserError
from mibot_eval.results.lock import writer_lock
from mibot_eval.results.records import EpisodeRecord, utc_now
from mibot_eval.results.store import RunStore, write_atomic

MAX_LISTED = 20


def select_shard(plans: list[Any], index: int, count: int) -> list[str]:
    """Narrow each plan to shard `index` of `count`; returns all planned keys (official order)."""
    from mibot_eval.run.backends.work_queue import partition

    if count < 1 or not 0 <= index < count:
        raise UserError(f"--shard I/N needs 0 <= I < N, got {index}/{count}")
    specs = [spec for plan in plans for spec in plan.episodes]
    mine = {spec.key for spec in partition(specs, count)[index]}
    for plan in plans:
        plan.episodes = [spec for spec in plan.episodes if spec.key in mine]
    return [spec.key for spec in specs]


def _identity(manifest: dict[str, Any]) -> dict[str, Any]:
    checkpoint = manifest.get("checkpoint") or {}
    return {
        "checkpoint": (checkpoint.get("name"), checkpoint.get("hash")),
        "execution": manifest.get("execution"),
        "suites": {name: s.get("hash") for name, s in (manifest.get("suites") or {}).items()},
    }


def merge_runs(run_dirs: list[Path], out: Path) -> dict[str, Any]:
    """Merge run folders into `out` (holding its writer lock; the inputs are only read); returns a
    summary (episodes, missing keys, inputs)."""
    if not run_dirs:
        raise UserError("merge needs at least one RUN_DIR")
    if len({d.resolve() for d in run_dirs}) != len(run_dirs):
        raise UserError("the same RUN_DIR is given twice")
    if out.resolve() in {d.resolve() for d in run_dirs}:
        raise UserError(f"{out} is one of the RUN_DIRs; merge into a new folder")
    for run_dir in run_dirs:
        if not run_dir.is_dir():
            raise UserError(f"{run_dir}: run folder not found")
    with writer_lock(out, what="merge"):
        return _merge_locked(run_dirs, out)


def _merge_locked(run_dirs: list[Path], out: Path) -> dict[str, Any]:
    out_store = RunStore(out)
    if out_store.episodes_path.exists() and out_store.episodes_path.stat().st_size:
        raise UserError(f"{out} already holds episodes; merge into a new folder")
    manifests, records_by_run = [], []
    for run_dir in run_dirs:
        store = RunStore(run_dir)
        manifest = store.read_manifest()
        if manifest is None:
            raise UserError(f"{run_dir}: no manifest.json (not a mibot-eval run folder)")
        manifests.append(manifest)
        records_by_run.append(store.records())
    reference = _identity(manifests[0])
    for run_dir, manifest in zip(run_dirs[1:], manifests[1:], strict=True):
        mine = _identity(manifest)
        for field in ("checkpoint", "execution"):
            if mine[field] != reference[field]:
                raise UserError(f"{run_dir} has a different {field} than {run_dirs[0]}; "
                                "only runs of the same experiment can be merged")
        for suite, digest in mine["suites"].items():
            if suite in reference["suites"] and reference["suites"][suite] != digest:
                raise UserError(f"{run_dir}: suite {suite} ran with another protocol than in "
                                f"{run_dirs[0]} (hash {digest} vs {reference['suites'][suite]})")
    owner: dict[str, Path] = {}
    duplicates: list[str] = []
    for run_dir, records in zip(run_dirs, records_by_run, strict=True):
        for record in records:
            key = record["key"]
            if key in owner:
                duplicates.append(f"{key} ({owner[key]} and {run_dir})")
            else:
                owner[key] = run_dir
    if duplicates:
        listed = "; ".join(duplicates[:5]) + (f"; ... {len(duplicates) - 5} more"
                                              if len(duplicates) > 5 else "")
        raise UserError(f"refusing to merge: {len(duplicates)} episode(s) recorded twice: {listed}")
    shards = [m.get("shard") for m in manifests]
    planned: list[str] | None = None
    if all(shards):
        counts = {s["count"] for s in shards}
        if len(counts) != 1:
            raise UserError(f"the runs are shards of different splits (N = {sorted(counts)})")
        indices = Counter(s["index"] for s in shards)
        twice = sorted(i for i, n in indices.items() if n > 1)
        if twice:
            raise UserError(f"shard(s) {', '.join(map(str, twice))} given twice")
        plans = {tuple(s["planned_keys"]) for s in shards}
        if len(plans) != 1:
            raise UserError("the shards were cut from different episode selections "
                            "(--suites/--tasks/--episodes differ)")
        planned = list(plans.pop())
        count = shards[0]["count"]
        absent_shards = sorted(set(range(count)) - set(indices))
    else:
        absent_shards = []
    records = [r for records in records_by_run for r in records]
    if planned is not None:
        order = {key: i for i, key in enumerate(planned)}
        strays = [r["key"] for r in records if r["key"] not in order]
        if strays:
            raise UserError(f"{len(strays)} record(s) are not in the shards' plan, e.g. {strays[0]}")
        records.sort(key=lambda r: order[r["key"]])
        missing = [key for key in planned if key not in owner]
        expected = Counter(key.rsplit("/", 2)[0] for key in planned)
    else:
        missing = []
        expected = Counter()
        for manifest in manifests:
            expected.update(manifest.get("expected_episodes") or {})
    _write_records(out_store, records)
    manifest = {k: v for k, v in manifests[0].items() if k not in ("shard", "parallel", "latency")}
    suites: dict[str, Any] = {}
    for m in manifests:
        suites.update(m.get("suites") or {})
    from mibot_eval.results.measure.latency import latency_summary
    from mibot_eval.results.resume import runtime_differences

    mixed = [f"{d}: {diff}" for d, m in zip(run_dirs[1:], manifests[1:], strict=True)
             for diff in runtime_differences(manifests[0], m)]
    if mixed:
        manifest["mixed_runtime"] = mixed
    manifest["history"] = [{**entry, "run_dir": str(d)} for d, m in zip(run_dirs, manifests, strict=True)
                           for entry in m.get("history") or []]
    manifest.update({
        "run": out.name, "suites": suites, "expected_episodes": dict(expected),
        "merged_from": [{"run_dir": str(d), "shard": (m.get("shard") or {}).get("index"),
                         "episodes": len(r)}
                        for d, m, r in zip(run_dirs, manifests, records_by_run, strict=True)],
        "missing_episodes": missing, "created_at": utc_now(), "updated_at": utc_now(),
        "invocations": 1, "latency": latency_summary(records),
    })
    out_store.write_manifest(manifest)
    return {"episodes": len(records), "missing": missing, "absent_shards": absent_shards,
            "runs": len(run_dirs), "out": out, "mixed_runtime": mixed}


def _write_records(store: RunStore, records: list[EpisodeRecord]) -> None:
    text = "".join(json.dumps(record, sort_keys=True, default=str) + "\n" for record in records)
    write_atomic(store.episodes_path, text.encode("utf-8"))


def summary_text(summary: dict[str, Any]) -> str:
    lines = [f"merged {summary['episodes']} episodes from {summary['runs']} run(s) into {summary['out']}"]
    missing = summary["missing"]
    if summary["absent_shards"]:
        lines.append(f"shard(s) not given: {', '.join(map(str, summary['absent_shards']))}")
    if missing:
        shown = ", ".join(missing[:MAX_LISTED]) + (f", ... {len(missing) - MAX_LISTED} more"
                                                   if len(missing) > MAX_LISTED else "")
        lines.append(f"MISSING {len(missing)} planned episode(s) with no record: {shown}")
    elif not summary["absent_shards"]:
        lines.append("no planned episode is missing")
    for difference in summary.get("mixed_runtime") or []:
        lines.append(f"warning: the runs differ in runtime: {difference} (manifest: mixed_runtime)")
    return "\n".join(lines)
