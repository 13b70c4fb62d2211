"""A success rate and its intervals. Pure functions, no I/O.

  Rate                Successes over independent trials (fractional successes: deterministic
                      repeats collapsed, see measure/suites.py); its interval is Clopper-Pearson
                      (intervals.rate_bounds): coverage >= 95% at every rate
  wilson_interval     Wilson score interval (statsmodels "wilson"; the latency sweep's bars)
  newcombe_interval   hybrid score interval of a difference of two independent rates (statsmodels
                      confint_proportions_2indep "newcomb", Newcombe 1998 #10; the robustness report)
  z_two_sided, z_one_sided   normal quantiles of a confidence / a one-sided level
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy.stats import norm
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from mibot_eval.results.stats.intervals import rate_bounds, z_of

CONFIDENCE = 0.95


def z_two_sided(confidence: float = CONFIDENCE) -> float:
    return float(norm.ppf(0.5 + confidence / 2))


def z_one_sided(alpha: float) -> float:
    return float(norm.ppf(1 - alpha))


def _alpha_of(z: float) -> float:
    """The two-sided level whose normal quantile is z."""
    return float(2 * norm.sf(z))


def wilson_bounds(successes: float, n: int, z: float) -> tuple[float, float]:
    """Wilson score bounds (as fractions) for `successes` of `n` at normal quantile z; exactly 0 (1)
    when there is no success (failure)."""
    if n <= 0:
        return 0.0, 1.0
    low, high = proportion_confint(successes, n, alpha=_alpha_of(z), method="wilson")
    low = 0.0 if successes <= 0 else max(0.0, float(low))
    high = 1.0 if successes >= n else min(1.0, float(high))
    return low, high


def wilson_interval(successes: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Two-sided Wilson interval (fractions); e.g. 7/10 -> (0.3968, 0.8922)."""
    return wilson_bounds(successes, n, z_two_sided(confidence))


def newcombe_interval(
    s1: float, n1: int, s2: float, n2: int, z: float
) -> tuple[float, float]:
    """Newcombe hybrid score interval for p1 - p2 (fractions) at normal quantile z."""
    low, high = confint_proportions_2indep(s1, n1, s2, n2, method="newcomb", compare="diff",
                                           alpha=_alpha_of(z))
    return float(low), float(high)


@dataclass(frozen=True)
class Rate:
    """A success rate over independent trials (successes may be fractional, see repeats)."""

    successes: float
    n: int

    @property
    def value(self) -> float | None:
        """Percent, or None without trials."""
        return 100 * self.successes / self.n if self.n else None

    def interval(self, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
        """Clopper-Pearson interval, percent (RATE_METHOD); None without trials."""
        if not self.n:
            return None
        low, high = rate_bounds(self.successes, self.n, z_of(confidence))
        return 100 * low, 100 * high
