"""Candidate minus baseline for one number: the difference, its 95% interval, the two one-sided
margin tests and the drop the comparison could detect. One function per kind of comparison:

  paired        matched episodes: exact McNemar (margin 0) or the exact unconditional test ordered
                by Tango's statistic (margin > 0), results/stats/exact.py; Tango's score interval
  unpaired      two independent samples: the exact unconditional test ordered by the
                Farrington-Manning statistic, results/stats/exact.py; the MOVER interval over both rates'
                Clopper-Pearson intervals (Newcombe's construction, which statsmodels implements
                with Wilson terms as "newcomb": that one covers only 0.90 at n 24-50 near 0 and 1,
                this one at least 0.955; benchmarks/gate_calibration.py)
  fixed_rate    a rate against a figure taken as exact (its sample size unknown): the exact binomial
                test (scipy binomtest) of the rate against figure - margin; Clopper-Pearson interval
                of the rate minus the figure
  linear        an average (a weighted sum of independent rates, or of paired differences) against
                another or against a fixed figure: MOVER interval (results/stats/intervals.py) and its
                inversion into one-sided p-values (an approximation; its size is measured in
                benchmarks/gate_calibration.py)

Units: a rate's difference is in percentage points; an average's in its own unit (avg_len:
subtasks). A margin is in the same unit. `Difference.detectable(alpha)` is the smallest true drop
that the regression test at level alpha flags with 80% power (exact power for the rate tests,
normal approximation from the interval's width for averages); None when no drop can be.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from scipy.stats import binom, binomtest

from mibot_eval.results.stats.exact import (
    POWER_TARGET,
    normal_detectable_drop,
    paired_detectable_drop,
    unpaired_detectable_drop,
    unpaired_p_values,
)
from mibot_eval.results.stats.intervals import (
    MOVER_METHOD,
    PAIRED_METHOD,
    RATE_METHOD,
    Term,
    mover,
    negated,
    p_above,
    p_below,
    rate_bounds,
    rate_term,
    tango_interval,
    z_of,
)
from mibot_eval.results.stats.paired import PairCounts
from mibot_eval.results.stats.rates import CONFIDENCE, Rate

PAIRED_MCNEMAR = "paired: exact McNemar"
PAIRED_EXACT = "paired: exact unconditional (Tango order)"
UNPAIRED_EXACT = "unpaired: exact unconditional (Farrington-Manning order)"
FIXED_BINOMIAL = "exact binomial vs the figure taken as exact"
LINEAR_MOVER = "MOVER interval inverted"


@dataclass(frozen=True)
class Difference:
    """candidate - baseline with its interval, margin tests and detectable drop."""

    estimate: float
    low: float | None
    high: float | None
    interval: str  # the interval's method
    p_regressed: float  # H0: candidate >= baseline - margin
    p_not_worse: float  # H0: candidate <= baseline - margin
    test: str
    detectable: Callable[[float], float | None]  # alpha -> smallest drop flagged with 80% power

    @property
    def p_two_sided(self) -> float:
        """Two-sided p-value of "no difference" when the margin is 0 (twice the smaller tail)."""
        return min(1.0, 2.0 * min(self.p_regressed, self.p_not_worse))


def _percent(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def paired(counts: PairCounts, margin: float, confidence: float = CONFIDENCE) -> Difference:
    """Matched pairs (margin in pp)."""
    n = counts.n
    p_regressed, p_not_worse = counts.p_values(margin / 100)
    low, high = tango_interval(counts.base_only, counts.cand_only, n, z_of(confidence))
    discordance = counts.discordance

    def detectable(alpha: float) -> float | None:
        return _percent(paired_detectable_drop(n, margin / 100, alpha, discordance))

    return Difference(100 * (counts.cand_only - counts.base_only) / n if n else 0.0, 100 * low, 100 * high,
                      PAIRED_METHOD, p_regressed, p_not_worse,
                      PAIRED_MCNEMAR if margin <= 0 else PAIRED_EXACT, detectable)


def unpaired(candidate: Rate, baseline: Rate, margin: float, confidence: float = CONFIDENCE) -> Difference:
    """Two independent samples (margin in pp)."""
    c, b = candidate, baseline
    p_regressed, p_not_worse = unpaired_p_values(c.successes, c.n, b.successes, b.n, margin / 100)
    low, high = mover([rate_term(c.successes, c.n, 100.0), rate_term(b.successes, b.n, -100.0)],
                      z_of(confidence))
    base_rate = b.successes / b.n

    def detectable(alpha: float) -> float | None:
        return _percent(unpaired_detectable_drop(c.n, b.n, margin / 100, alpha, base_rate))

    return Difference(100 * (c.successes / c.n - base_rate), low, high, MOVER_METHOD, p_regressed,
                      p_not_worse, UNPAIRED_EXACT, detectable)


def fixed_rate(candidate: Rate, figure: float, margin: float, confidence: float = CONFIDENCE) -> Difference:
    """A rate against a figure (pp) taken as exact. Fractional successes (disagreeing WidowX copies)
    are rounded against the candidate in each test (up for 'regressed', down for 'not worse')."""
    n, s = candidate.n, candidate.successes
    threshold = min(max((figure - margin) / 100, 0.0), 1.0)
    if threshold <= 0:
        p_regressed = 1.0
    else:
        p_regressed = float(binomtest(math.ceil(s), n, threshold, alternative="less").pvalue)
    if threshold >= 1:
        p_not_worse = 1.0
    else:
        p_not_worse = float(binomtest(math.floor(s), n, threshold, alternative="greater").pvalue)
    low, high = rate_bounds(s, n, z_of(confidence))

    def detectable(alpha: float) -> float | None:
        return _percent(_binomial_detectable_drop(n, threshold, figure / 100, alpha))

    return Difference(100 * s / n - figure, 100 * low - figure, 100 * high - figure,
                      f"{RATE_METHOD} minus the figure", p_regressed, p_not_worse, FIXED_BINOMIAL,
                      detectable)


def _binomial_detectable_drop(n: int, threshold: float, reference: float, alpha: float) -> float | None:
    """The smallest drop below `reference` that binomtest(..., threshold, "less") at alpha detects
    with 80% power (exact: the critical count is the largest k with P(X <= k | threshold) <= alpha)."""
    if threshold <= 0:
        return None
    critical = int(binom.ppf(alpha, n, threshold))
    critical = critical if binom.cdf(critical, n, threshold) <= alpha else critical - 1
    if critical < 0:
        return None
    rate = _largest_rate_with_power(n, critical)
    return max(reference - rate, 0.0)


def _largest_rate_with_power(n: int, critical: int) -> float:
    """The largest true rate p with P(X <= critical | n, p) >= POWER_TARGET (bisection)."""
    low, high = 0.0, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        if binom.cdf(critical, n, mid) >= POWER_TARGET:
            low = mid
        else:
            high = mid
    return low


def linear(candidate: Sequence[Term], baseline: Sequence[Term], margin: float, figure: float = 0.0,
           confidence: float = CONFIDENCE, method: str = "") -> Difference:
    """sum(candidate terms) - sum(baseline terms) - figure: averages against averages (baseline
    terms) or against a fixed figure (no baseline terms), or a sum of paired-difference terms."""
    terms = [*candidate, *negated(baseline)]
    value = sum(t.weight * t.value for t in terms) - figure

    def interval(z: float) -> tuple[float, float]:
        low, high = mover(terms, z)
        return low - figure, high - figure

    low, high = interval(z_of(confidence))
    standard_error = (high - low) / (2 * z_of(confidence))
    return Difference(value, low, high, method or "MOVER", p_below(interval, value, -margin),
                      p_above(interval, value, -margin), LINEAR_MOVER,
                      partial(_normal_detectable, margin, standard_error))


def _normal_detectable(margin: float, standard_error: float, alpha: float) -> float | None:
    return normal_detectable_drop(margin, standard_error, alpha) if standard_error > 0 else None
