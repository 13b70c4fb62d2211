"""Matched episodes of two runs: same suite, task, trial and protocol hash, so the same scene, first
observation and noise seeds (the release's protocol makes every episode reproducible). Paired, a
candidate that fails trials the baseline passed is evidence the independent-sample tests cannot see.

  pair_units        matched independent trials (WidowX deterministic repeats collapse to one unit)
  PairCounts        the 2x2 table of a set of pairs; `p_values` = the paired margin test
                    (results/exact.py: exact McNemar at margin 0, exact unconditional above)

A unit's outcome is the mean success of its copies. In the 2x2 table a unit counts as a success only
when MORE than half of its copies succeeded: the copies are deterministic repeats, so a unit whose
copies split (e.g. WidowX 3 of 6) is not reproducible, and the gate does not credit an outcome the
run could not reproduce; a split exactly in half therefore counts as a failure, on either side, and
`PairCounts.split` counts such units so the gate's note names them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mibot_eval.results.exact import paired_p_values


@dataclass(frozen=True)
class Pair:
    """One matched independent trial: its suite, task, unit key and both outcomes (1.0 = success)."""

    suite: str
    task: str
    key: str
    candidate: float
    baseline: float


def unit_success(value: float) -> bool:
    """A unit's outcome in the 2x2 table: more than half of its copies succeeded (module docstring)."""
    return value > 0.5


@dataclass(frozen=True)
class PairCounts:
    both: int
    neither: int
    base_only: int  # the baseline succeeded, the candidate failed
    cand_only: int
    split: int = 0  # units (either side) whose copies split exactly in half: counted as failures

    @property
    def n(self) -> int:
        return self.both + self.neither + self.base_only + self.cand_only

    @property
    def discordance(self) -> float:
        return (self.base_only + self.cand_only) / self.n if self.n else 0.0

    def p_values(self, margin: float = 0.0) -> tuple[float, float]:
        """(p regressed, p not worse) of the paired test at margin (a fraction)."""
        return paired_p_values(self.base_only, self.cand_only, self.n, margin)

    @property
    def note(self) -> str:
        text = f"discordant: {self.base_only} baseline-only, {self.cand_only} candidate-only of {self.n}"
        if self.split:
            text += f"; {self.split} unit(s) whose copies split in half counted as failures"
        return text

    @classmethod
    def of(cls, pairs: Iterable[Pair]) -> PairCounts:
        both = neither = base_only = cand_only = split = 0
        for p in pairs:
            c, b = unit_success(p.candidate), unit_success(p.baseline)
            both += c and b
            neither += not c and not b
            base_only += b and not c
            cand_only += c and not b
            split += (p.candidate == 0.5) + (p.baseline == 0.5)
        return cls(both, neither, base_only, cand_only, split)


def _ok_success(record: Mapping[str, Any]) -> float:
    return float(record.get("status", "ok") == "ok" and record.get("success") is True)


def _units(records: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, str, float]]:
    """unit key -> (suite, task, mean success of its copies); an error record is a failure."""
    groups: dict[str, list[float]] = defaultdict(list)
    where: dict[str, tuple[str, str]] = {}
    for record in records:
        unit = str((record.get("metrics") or {}).get("repeat_of") or record.get("key"))
        groups[unit].append(_ok_success(record))
        where.setdefault(unit, (str(record.get("suite")), str(record.get("task_id"))))
    return {u: (*where[u], sum(v) / len(v)) for u, v in groups.items()}


def unit_outcomes(records: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """unit key -> success (mean over deterministic copies; an error is a failure)."""
    return {unit: value for unit, (_, _, value) in _units(records).items()}


def pair_units(candidate: Iterable[Mapping[str, Any]], baseline: Iterable[Mapping[str, Any]],
               protocol_hashes: Mapping[str, tuple[Any, Any]]) -> list[Pair]:
    """Pairs of the independent trials both runs recorded, for suites whose protocol hashes match
    (`protocol_hashes`: suite -> (candidate hash, baseline hash)); in the candidate's order."""
    same = {s for s, (a, b) in protocol_hashes.items() if a is not None and a == b}
    mine = _units(r for r in candidate if r.get("suite") in same)
    theirs = _units(r for r in baseline if r.get("suite") in same)
    return [Pair(suite, task, unit, value, theirs[unit][2])
            for unit, (suite, task, value) in mine.items() if unit in theirs]
