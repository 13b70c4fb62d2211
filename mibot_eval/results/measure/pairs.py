"""Matched episodes of two runs, from their records: same suite, key (a WidowX episode with its
deterministic copies is one unit, keyed by its first copy) and protocol hash. `pair_units` gives the
stats/paired.py Pairs the gate counts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from mibot_eval.results.records import EpisodeRecord
from mibot_eval.results.stats.paired import Pair


def _ok_success(record: EpisodeRecord) -> float:
    return float(record.get("status", "ok") == "ok" and record.get("success") is True)


def _units(records: Iterable[EpisodeRecord]) -> dict[str, tuple[str, str, float]]:
    """unit key -> (suite, task, mean success of its copies); an error record is a failure."""
    groups: dict[str, list[float]] = defaultdict(list)
    where: dict[str, tuple[str, str]] = {}
    for record in records:
        unit = str((record.get("metrics") or {}).get("repeat_of") or record.get("key"))
        groups[unit].append(_ok_success(record))
        where.setdefault(unit, (str(record.get("suite")), str(record.get("task_id"))))
    return {u: (*where[u], sum(v) / len(v)) for u, v in groups.items()}


def unit_outcomes(records: Iterable[EpisodeRecord]) -> dict[str, float]:
    """unit key -> success (mean over deterministic copies; an error is a failure)."""
    return {unit: value for unit, (_, _, value) in _units(records).items()}


def pair_units(candidate: Iterable[EpisodeRecord], baseline: Iterable[EpisodeRecord],
               protocol_hashes: Mapping[str, tuple[Any, Any]]) -> list[Pair]:
    """Pairs of the independent trials both runs recorded, for suites whose protocol hashes match
    (`protocol_hashes`: suite -> (candidate hash, baseline hash)); in the candidate's order."""
    same = {s for s, (a, b) in protocol_hashes.items() if a is not None and a == b}
    mine = _units(r for r in candidate if r.get("suite") in same)
    theirs = _units(r for r in baseline if r.get("suite") in same)
    return [Pair(suite, task, unit, value, theirs[unit][2])
            for unit, (suite, task, value) in mine.items() if unit in theirs]
