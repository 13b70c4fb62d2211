"""Pooling runs for the leaderboard: the episodes of several run folders grouped by (checkpoint,
checkpoint_id, suite, protocol hash, execution); an episode recorded twice keeps its ok record, then
its latest."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mibot_eval.errors import UserError
from mibot_eval.results.measure.summary import dedupe, execution_label
from mibot_eval.results.records import EpisodeRecord, suite_of
from mibot_eval.results.store import EPISODES_FILE, MANIFEST_FILE, RunStore

GroupKey = tuple[str, str, str, str, str]  # checkpoint, checkpoint_id, suite, protocol, execution


@dataclass
class Group:
    """Pooled episodes of one (checkpoint, suite, protocol, execution)."""

    key: GroupKey
    records: list[EpisodeRecord] = field(default_factory=list)
    protocol: dict[str, Any] = field(default_factory=dict)
    runs: set[str] = field(default_factory=set)


@dataclass
class Pool:
    groups: dict[GroupKey, Group] = field(default_factory=dict)
    run_members: dict[str, dict[str, GroupKey]] = field(default_factory=dict)  # run -> suite -> key


def run_dirs(results_dir: Path) -> list[Path]:
    """Run folders directly under results_dir (those with episodes.jsonl or manifest.json)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"{results_dir}: results folder not found")
    return sorted(p for p in results_dir.iterdir()
                  if p.is_dir() and ((p / EPISODES_FILE).is_file() or (p / MANIFEST_FILE).is_file()))


def collect(dirs: Iterable[Path]) -> Pool:
    """Group the episodes of several runs by (checkpoint, checkpoint_id, suite, protocol, execution)."""
    pool = Pool()
    for run_dir in dirs:
        store = RunStore(run_dir)
        manifest = store.read_manifest() or {}
        ckpt = manifest.get("checkpoint") or {}
        suites = manifest.get("suites") or {}
        members = pool.run_members.setdefault(str(run_dir.name), {})
        for record in store.records():
            suite = suite_of(record)
            entry = suites.get(suite) or {}
            key = (str(record.get("checkpoint") or ckpt.get("name") or "?"),
                   str(record.get("checkpoint_id") or ckpt.get("hash") or ""), suite,
                   str(record.get("protocol_hash") or entry.get("hash") or ""),
                   execution_label(record.get("execution") or manifest.get("execution") or {}))
            group = pool.groups.setdefault(key, Group(key))
            group.records.append(record)
            group.runs.add(run_dir.name)
            group.protocol = group.protocol or dict(entry.get("protocol") or {})
            members.setdefault(suite, key)
    for group in pool.groups.values():
        group.records = dedupe(group.records)
    return pool
