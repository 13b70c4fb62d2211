"""Confidence intervals of rates, of averages of rates and of differences, and the p-values that
invert them. Pure functions, no I/O.

  rate_bounds       Clopper-Pearson ("exact") interval of a success rate (statsmodels
                    proportion_confint "beta"): coverage >= the nominal level at every p and n, where
                    Wilson's dips to 0.84 and Jeffreys' to 0.88 near 0 and 1 for n >= 24
                    (benchmarks/gate_calibration.py computes the exact coverage)
  Term, mover       an average of independent rates (LIBERO: mean of four suites; SimplerEnv: mean
                    of task groups) or a difference of such averages: the MOVER interval (method of
                    variance estimates recovery; G. Y. Zou and A. Donner, Statistics in Medicine 27,
                    2008) from each term's own interval. Written here because statsmodels and scipy
                    have no interval for a weighted sum of proportions. It never has zero width:
                    each term's interval has none (an all-fail average is [0, 0.9] at n 500, not [0, 0])
  tango_interval    Tango's score interval for a difference of paired proportions (T. Tango,
                    Statistics in Medicine 17, 1998); none in statsmodels or scipy
  p_below, p_above  one-sided p-values of "value < threshold" / "value > threshold" from an interval
                    function, by inverting it in its normal quantile z
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scipy.optimize import brentq
from scipy.stats import norm
from statsmodels.stats.proportion import proportion_confint

from mibot_eval.results.stats.exact import tango_z

RATE_METHOD = "Clopper-Pearson"
MOVER_METHOD = "MOVER (Clopper-Pearson terms)"
AVG_LEN_METHOD = "Clopper-Pearson on avg_len / length (bounded mean)"
PAIRED_METHOD = "Tango score"
PAIRED_MOVER_METHOD = "MOVER (Tango terms)"
Z_MAX = 15.0  # a one-sided p-value of 4e-51 (at larger z the exact beta quantiles fail to converge)


def z_of(confidence: float) -> float:
    """The normal quantile of a two-sided interval at this confidence."""
    return float(norm.ppf(0.5 + confidence / 2))


def rate_bounds(successes: float, n: int, z: float) -> tuple[float, float]:
    """Clopper-Pearson bounds (fractions) of successes / n at normal quantile z (two-sided level
    2 (1 - Phi(z))); exactly 0 (1) when there is no success (failure); (0, 1) without trials."""
    if n <= 0:
        return 0.0, 1.0
    alpha = max(2.0 * float(norm.sf(z)), 1e-300)
    low, high = proportion_confint(successes, n, alpha=alpha, method="beta")
    low = 0.0 if successes <= 0 or math.isnan(low) else max(0.0, float(low))
    high = 1.0 if successes >= n or math.isnan(high) else min(1.0, float(high))
    return low, high


@dataclass(frozen=True)
class Term:
    """weight x (an estimate with an interval function): one term of a MOVER sum. `bounds(z)` gives
    the term's own interval of `value` (before weighting) at normal quantile z."""

    value: float
    bounds: Callable[[float], tuple[float, float]]
    weight: float = 1.0


def rate_term(successes: float, n: int, weight: float = 1.0) -> Term:
    """A rate (fraction) as a MOVER term with its Clopper-Pearson interval."""
    return Term(successes / n if n else float("nan"), lambda z: rate_bounds(successes, n, z), weight)


def paired_term(base_only: int, cand_only: int, n: int, weight: float = 1.0) -> Term:
    """A paired difference candidate - baseline (fraction) as a MOVER term with Tango's interval."""
    return Term((cand_only - base_only) / n, lambda z: tango_interval(base_only, cand_only, n, z), weight)


def mover(terms: Sequence[Term], z: float) -> tuple[float, float]:
    """MOVER bounds of sum(weight x value) at normal quantile z (weights of either sign)."""
    value = sum(t.weight * t.value for t in terms)
    down = up = 0.0
    for t in terms:
        low, high = t.bounds(z)
        a, b = t.weight * low, t.weight * high
        down += (t.weight * t.value - min(a, b)) ** 2
        up += (max(a, b) - t.weight * t.value) ** 2
    return value - math.sqrt(down), value + math.sqrt(up)


def negated(terms: Sequence[Term]) -> list[Term]:
    return [Term(t.value, t.bounds, -t.weight) for t in terms]


def tango_interval(base_only: int, cand_only: int, n: int, z: float) -> tuple[float, float]:
    """Tango's score interval (fractions) of p_cand - p_base from n matched pairs at quantile z: the
    differences d whose score statistic |T(d)| <= z (T decreases in the baseline's advantage)."""
    if n <= 0:
        return -1.0, 1.0
    observed = (cand_only - base_only) / n

    def statistic(diff: float) -> float:  # H0: p_base_only - p_cand_only = -diff
        return float(tango_z(base_only, cand_only, n, -diff))

    def bound(target: float, lo: float, hi: float) -> float:
        f_lo, f_hi = statistic(lo) - target, statistic(hi) - target
        if f_lo * f_hi > 0:
            return lo if abs(f_lo) < abs(f_hi) else hi
        return float(brentq(lambda d: statistic(d) - target, lo, hi, xtol=1e-10))

    edge = 1.0 - 1e-12
    low = bound(-z, -edge, observed) if observed > -edge else -1.0
    high = bound(z, observed, edge) if observed < edge else 1.0
    return low, high


def p_below(interval: Callable[[float], tuple[float, float]], value: float, threshold: float) -> float:
    """One-sided p-value of "true value < threshold" (H0: >= threshold): the smallest level at which
    the one-sided upper bound falls below threshold; 1.0 when the estimate is not below it."""
    if not value < threshold:
        return 1.0
    if interval(Z_MAX)[1] < threshold:
        return float(norm.sf(Z_MAX))
    if interval(0.0)[1] >= threshold:  # a discrete interval's centre is not the estimate
        return 0.5
    z = brentq(lambda q: interval(q)[1] - threshold, 0.0, Z_MAX, xtol=1e-9)
    return float(norm.sf(z))


def p_above(interval: Callable[[float], tuple[float, float]], value: float, threshold: float) -> float:
    """One-sided p-value of "true value > threshold" (H0: <= threshold), as p_below mirrored."""
    if not value > threshold:
        return 1.0
    if interval(Z_MAX)[0] > threshold:
        return float(norm.sf(Z_MAX))
    if interval(0.0)[0] <= threshold:
        return 0.5
    z = brentq(lambda q: interval(q)[0] - threshold, 0.0, Z_MAX, xtol=1e-9)
    return float(norm.sf(z))
