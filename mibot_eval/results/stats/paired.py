"""Matched episodes of two runs: same suite, task, trial and protocol hash, so the same scene, first
observation and noise seeds (the release's protocol makes every episode reproducible). Paired, a
candidate that fails trials the baseline passed is evidence the independent-sample tests cannot see.

  Pair              one matched independent trial (measure/pairs.py makes them from records; WidowX
                    deterministic repeats collapse to one unit)
  PairCounts        the 2x2 table of a set of pairs; `p_values` = the paired margin test
                    (stats/exact.py: exact McNemar at margin 0, exact unconditional above)
  p_worse_paired    the one-sided paired p-value from the discordant counts

A unit's outcome is the mean success of its copies. In the 2x2 table a unit counts as a success only
when MORE than half of its copies succeeded: the copies are deterministic repeats, so a unit whose
copies split (e.g. WidowX 3 of 6) is not reproducible, and the gate does not credit an outcome the
run could not reproduce; a split exactly in half therefore counts as a failure, on either side, and
`PairCounts.split` counts such units so the gate's note names them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mibot_eval.results.stats.exact import paired_p_values


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


def p_worse_paired(base_only: int, cand_only: int, n: int, margin: float = 0.0) -> float:
    """One-sided paired p-value of H0: p_cand - p_base >= -margin on n matched episodes, from the
    discordant pairs: base_only (the baseline succeeded, the candidate failed) and cand_only.
    Margin 0: exact McNemar; margin > 0: the exact unconditional test (stats/exact.py)."""
    return paired_p_values(base_only, cand_only, n, margin)[0]
