"""Exact unconditional tests of a margin for success rates, paired and unpaired, with their power.

The gate asks two one-sided questions of every compared rate, at a margin D (a fraction, >= 0):

  regressed   H0: candidate >= baseline - D   against   H1: candidate < baseline - D
  not worse   H0: candidate <= baseline - D   against   H1: candidate > baseline - D

Both nulls share the boundary "candidate = baseline - D". Under it the data still depend on a
nuisance parameter (paired: the discordance, the share of pairs whose outcomes differ; unpaired: the
baseline's rate). An *exact unconditional* test orders the possible tables by a statistic and takes
as p-value the largest probability, over the nuisance parameter, of a table at least as extreme as
the observed one (Berger & Boos, JASA 89, 1994, without their confidence restriction; Sidik,
Biometrical Journal 45, 2003, for matched pairs). Its size is at most alpha at every value of the
nuisance parameter on the grid by construction; benchmarks/gate_calibration.py computes it between
grid points too, by exact enumeration.

Ordering statistics (asymptotic score tests, used here only to order tables):
  paired     Tango's score statistic for a difference of paired proportions with the restricted
             maximum-likelihood variance (T. Tango, Statistics in Medicine 17, 1998)
  unpaired   the Farrington-Manning score statistic for a difference of two independent proportions
             (Farrington & Manning, Statistics in Medicine 9, 1990; the restricted MLE in the closed
             form of Miettinen & Nurminen, 1985)

Why this is written here: scipy and statsmodels have neither a paired-difference test with a margin
nor an exact unconditional test with a margin (scipy's `barnard_exact` tests a zero difference only;
tests/test_exact.py checks this module against it at margin 0), and statsmodels' vectorised score
test returns NaN for some boundary tables (e.g. 0/1000 against 46/1000 at a 3 pp margin) and a
restricted MLE off the constrained maximum for others (0/40 against 15/60 at 10 pp). Used
asymptotically these statistics exceed alpha near the margin (0.089 and 0.088 at alpha 0.05 in
benchmarks/gate_calibration.py), which is why the exact calibration is needed.

At margin 0 the paired test is the exact McNemar test (scipy `binomtest` on the discordant pairs),
which is exact already.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.optimize import brentq
from scipy.stats import binom, binomtest, norm

NUISANCE_POINTS = 240  # grid over the nuisance parameter for the supremum (at least; more for large n)
POWER_TARGET = 0.8


def grid_points(n: int) -> int:
    """Grid size for samples of n: the size varies over the nuisance parameter on a scale of
    1 / sqrt(n), so the grid grows with sqrt(n) (240 up to n = 225)."""
    return max(NUISANCE_POINTS, int(16 * math.sqrt(n)))


def nuisance_grid(low: float, points: int = NUISANCE_POINTS) -> np.ndarray:
    """Points in [low, 1]: evenly spaced, plus geometric ones close to `low` (where the supremum of
    a paired test often lies: few discordant pairs)."""
    even = np.linspace(low, 1.0, points // 2)
    span = 1.0 - low
    near = low + span * np.geomspace(1e-4, 0.3, points - points // 2)
    grid = np.unique(np.concatenate([even, near]))
    return grid[(grid >= low) & (grid <= 1.0)]


@lru_cache(maxsize=32)
def _pmf_rows(n: int, rates: tuple[float, ...]) -> np.ndarray:
    """Binomial(n, r) probabilities of 0..n, one row per rate (cached: the grids repeat)."""
    return binom.pmf(np.arange(n + 1)[None, :], n, np.asarray(rates)[:, None])


# -- paired ---------------------------------------------------------------------------------------
def tango_z(base_only: np.ndarray | float, cand_only: np.ndarray | float, n: int,
            margin: float) -> np.ndarray:
    """Tango's score statistic for H0: p_base_only - p_cand_only = margin (vectorised). Large values:
    the baseline wins more discordant pairs than the margin allows (evidence of a regression)."""
    b = np.asarray(base_only, dtype=np.float64)
    c = np.asarray(cand_only, dtype=np.float64)
    a = 2.0 * n
    bb = -b - c + (2.0 * n - b + c) * margin
    cc = -c * margin * (1.0 - margin)
    root = np.sqrt(np.maximum(bb * bb - 4.0 * a * cc, 0.0))
    p_cand_only = np.maximum((-bb + root) / (2.0 * a), 0.0)  # restricted MLE of P(candidate only)
    variance = n * (2.0 * p_cand_only + margin * (1.0 - margin))
    numerator = b - c - n * margin
    with np.errstate(divide="ignore", invalid="ignore"):
        z = numerator / np.sqrt(variance)
        z = np.where(variance > 0, z, np.sign(numerator) * np.inf)
    return np.where(np.isnan(z), 0.0, z)


@lru_cache(maxsize=16)
def _paired_table(n: int, margin: float) -> np.ndarray:
    """T[d, b] for d discordant pairs of which b are baseline-only (NaN where b > d)."""
    d = np.arange(n + 1)
    dd, bb = np.meshgrid(d, d, indexing="ij")
    table = tango_z(bb, dd - bb, n, margin)
    table[bb > dd] = np.nan
    table.setflags(write=False)
    return table


def paired_bounds(n: int, margin: float, threshold: float, upper: bool) -> np.ndarray:
    """Per number of discordant pairs d: the region {T >= threshold} is b >= k_d (upper), the region
    {T <= threshold} is b <= k_d (T increases with b within a row); k_d = d + 1 / -1 when empty."""
    table = _paired_table(n, margin)
    d = np.arange(n + 1)
    columns = np.arange(n + 1)[None, :]
    with np.errstate(invalid="ignore"):
        hit = table >= threshold - 1e-12 if upper else table <= threshold + 1e-12
    if upper:
        return np.min(np.where(hit, columns, d[:, None] + 1), axis=1)
    return np.max(np.where(hit, columns, -1), axis=1)


def paired_probability(n: int, bounds: np.ndarray, upper: bool, theta: float,
                        discordance: np.ndarray) -> np.ndarray:
    """P(b >= k_d) (upper) or P(b <= k_d) when the true difference p_base_only - p_cand_only is theta
    and the discordance each q >= theta: d ~ Bin(n, q), b | d ~ Bin(d, (q + theta) / (2 q))."""
    d = np.arange(n + 1)[None, :]
    q = np.asarray(discordance, dtype=np.float64)[:, None]
    share = np.clip((q + theta) / (2.0 * np.maximum(q, 1e-300)), 0.0, 1.0)
    weight = _pmf_rows(n, tuple(q[:, 0]))
    k = bounds[None, :]
    inside = binom.sf(k - 1, d, share) if upper else binom.cdf(k, d, share)
    return (weight * inside).sum(axis=1)


def paired_p_values(base_only: int, cand_only: int, n: int, margin: float) -> tuple[float, float]:
    """(p regressed, p not worse) of n matched pairs with base_only / cand_only discordant pairs, at a
    margin (fraction). Margin 0: exact McNemar (scipy binomtest on the discordant pairs); margin > 0:
    the exact unconditional test ordered by Tango's statistic (module docstring)."""
    discordant = base_only + cand_only
    if n <= 0:
        return 1.0, 1.0
    if margin <= 0:
        if discordant == 0:
            return 1.0, 1.0
        return (float(binomtest(base_only, discordant, 0.5, alternative="greater").pvalue),
                float(binomtest(base_only, discordant, 0.5, alternative="less").pvalue))
    observed = float(tango_z(base_only, cand_only, n, margin))
    grid = nuisance_grid(margin, grid_points(n))
    out = []
    for upper in (True, False):
        bounds = paired_bounds(n, margin, observed, upper)
        out.append(min(1.0, float(np.max(paired_probability(n, bounds, upper, margin, grid)))))
    return out[0], out[1]


@lru_cache(maxsize=64)
def paired_region(n: int, margin: float, alpha: float, regressed: bool = True) -> np.ndarray:
    """The paired test's rejection region at level alpha, per number of discordant pairs d: regressed
    when b >= k_d, not worse when b <= k_d (b = baseline-only pairs). Margin 0: McNemar's region;
    margin > 0: the least extreme Tango value whose supremum size over the grid is <= alpha."""
    d = np.arange(n + 1)
    if margin <= 0:
        if regressed:  # smallest b with P(Bin(d, 1/2) >= b) <= alpha
            k = binom.isf(alpha, d, 0.5) + 1
            k = np.where(binom.sf(k - 2, d, 0.5) <= alpha, k - 1, k)
            return np.where(d == 0, 1, k).astype(int)
        k = binom.ppf(alpha, d, 0.5)  # largest b with P(Bin(d, 1/2) <= b) <= alpha
        k = np.where(binom.cdf(k, d, 0.5) <= alpha, k, k - 1)
        return np.where(d == 0, -1, k).astype(int)
    table = _paired_table(n, margin)
    values = np.unique(table[~np.isnan(table)])
    values = values[::-1] if regressed else values  # most extreme first
    grid = nuisance_grid(margin, grid_points(n))

    def size(value: float) -> float:
        bounds = paired_bounds(n, margin, value, regressed)
        return float(np.max(paired_probability(n, bounds, regressed, margin, grid)))

    if size(values[0]) > alpha:
        return paired_bounds(n, margin, math.inf if regressed else -math.inf, regressed)
    low, high = 0, len(values) - 1  # the size grows as the threshold moves inwards: bisect
    while low < high:
        mid = (low + high + 1) // 2
        if size(values[mid]) <= alpha:
            low = mid
        else:
            high = mid - 1
    return paired_bounds(n, margin, float(values[low]), regressed)


def paired_power(n: int, margin: float, alpha: float, theta: float, discordance: float,
                 regressed: bool = True) -> float:
    """Exact probability that the paired test at `margin` (level alpha) declares regressed (or not
    worse) when the true difference p_base_only - p_cand_only is theta and the discordance is
    max(discordance, |theta|)."""
    q = min(max(discordance, abs(theta), 1e-9), 1.0)
    bounds = paired_region(n, margin, alpha, regressed)
    return float(paired_probability(n, bounds, regressed, theta, np.array([q]))[0])


def paired_detectable_drop(n: int, margin: float, alpha: float, discordance: float,
                           power: float = POWER_TARGET) -> float | None:
    """The smallest true drop (fraction) that the paired test flags as regressed with `power` at n
    pairs and this discordance (raised to the drop where it must be: q >= drop); None when no drop
    up to 100 pp is."""
    if n <= 0 or paired_power(n, margin, alpha, 1.0, 1.0) < power:
        return None
    if paired_power(n, margin, alpha, margin, discordance) >= power:
        return margin
    return brentq(lambda t: paired_power(n, margin, alpha, t, discordance) - power, margin, 1.0,
                  xtol=1e-4)


# -- unpaired -------------------------------------------------------------------------------------
def score_z(s1: np.ndarray | float, n1: int, s2: np.ndarray | float, n2: int, margin: float) -> np.ndarray:
    """Farrington-Manning score statistic for H0: p1 - p2 = -margin (vectorised; 1 = candidate,
    2 = baseline). Small values: the candidate is below baseline - margin."""
    x1 = np.asarray(s1, dtype=np.float64)
    x2 = np.asarray(s2, dtype=np.float64)
    p1, p2 = x1 / n1, x2 / n2
    delta = -margin
    theta = n2 / n1
    a = 1.0 + theta
    b = -(1.0 + theta + p1 + theta * p2 + delta * (theta + 2.0))
    c = delta * delta + delta * (2.0 * p1 + theta + 1.0) + p1 + theta * p2
    d = -p1 * delta * (1.0 + delta)
    v = b ** 3 / (3.0 * a) ** 3 - b * c / (6.0 * a * a) + d / (2.0 * a)
    u = np.sign(v) * np.sqrt(np.maximum(b * b / (3.0 * a) ** 2 - c / (3.0 * a), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(u != 0, v / u ** 3, 1.0)
    w = (math.pi + np.arccos(np.clip(ratio, -1.0, 1.0))) / 3.0
    r1 = np.clip(2.0 * u * np.cos(w) - b / (3.0 * a), 0.0, 1.0)  # restricted MLE of p1
    r2 = np.clip(r1 - delta, 0.0, 1.0)
    variance = r1 * (1.0 - r1) / n1 + r2 * (1.0 - r2) / n2
    numerator = p1 - p2 - delta
    with np.errstate(divide="ignore", invalid="ignore"):
        z = numerator / np.sqrt(variance)
        z = np.where(variance > 1e-300, z, np.sign(np.round(numerator, 12)) * np.inf)
    return np.where(np.isnan(z), 0.0, z)


@lru_cache(maxsize=16)
def _unpaired_table(n1: int, n2: int, margin: float) -> np.ndarray:
    """Z[x1, x2] over every pair of success counts."""
    x1, x2 = np.meshgrid(np.arange(n1 + 1), np.arange(n2 + 1), indexing="ij")
    table = score_z(x1, n1, x2, n2, margin)
    table.setflags(write=False)
    return table


def unpaired_bounds(n1: int, n2: int, margin: float, threshold: float, regressed: bool) -> np.ndarray:
    """Per baseline count x2: the region {Z <= threshold} is x1 <= k (regressed; Z increases with
    x1), the region {Z >= threshold} is x1 >= k (not worse); k = -1 / n1 + 1 when empty."""
    table = _unpaired_table(n1, n2, margin)
    rows = np.arange(n1 + 1)[:, None]
    if regressed:
        return np.max(np.where(table <= threshold + 1e-12, rows, -1), axis=0)
    return np.min(np.where(table >= threshold - 1e-12, rows, n1 + 1), axis=0)


def unpaired_probability(n1: int, n2: int, bounds: np.ndarray, regressed: bool, gap: float,
                          base_rates: np.ndarray) -> np.ndarray:
    """P(x1 <= k_x2) (regressed) or P(x1 >= k_x2) when p2 = each base rate and p1 = p2 - gap."""
    p2 = np.asarray(base_rates, dtype=np.float64)[:, None]
    p1 = np.clip(p2 - gap, 0.0, 1.0)
    weight = _pmf_rows(n2, tuple(p2[:, 0]))
    k = bounds[None, :]
    inside = binom.cdf(k, n1, p1) if regressed else binom.sf(k - 1, n1, p1)
    return (weight * inside).sum(axis=1)


def unpaired_p_values(s1: float, n1: int, s2: float, n2: int, margin: float) -> tuple[float, float]:
    """(p regressed, p not worse) of candidate s1/n1 against baseline s2/n2 as independent samples,
    at a margin (fraction): the exact unconditional test ordered by the Farrington-Manning statistic
    (module docstring). Fractional successes (disagreeing WidowX copies) are ordered like any table."""
    if n1 <= 0 or n2 <= 0:
        return 1.0, 1.0
    observed = float(score_z(s1, n1, s2, n2, margin))
    grid = nuisance_grid(margin, grid_points(max(n1, n2)))
    out = []
    for regressed in (True, False):
        bounds = unpaired_bounds(n1, n2, margin, observed, regressed)
        out.append(min(1.0, float(np.max(unpaired_probability(n1, n2, bounds, regressed, margin, grid)))))
    return out[0], out[1]


@lru_cache(maxsize=64)
def unpaired_region(n1: int, n2: int, margin: float, alpha: float, regressed: bool = True) -> np.ndarray:
    """The unpaired test's rejection region at level alpha, per baseline count x2: regressed when
    x1 <= k, not worse when x1 >= k (the least extreme Farrington-Manning value whose supremum size
    over the grid is <= alpha)."""
    table = _unpaired_table(n1, n2, margin)
    values = np.unique(table)
    values = values if regressed else values[::-1]  # most extreme first
    grid = nuisance_grid(margin, grid_points(max(n1, n2)))

    def size(value: float) -> float:
        bounds = unpaired_bounds(n1, n2, margin, value, regressed)
        return float(np.max(unpaired_probability(n1, n2, bounds, regressed, margin, grid)))

    if size(values[0]) > alpha:
        return unpaired_bounds(n1, n2, margin, -math.inf if regressed else math.inf, regressed)
    low, high = 0, len(values) - 1
    while low < high:
        mid = (low + high + 1) // 2
        if size(values[mid]) <= alpha:
            low = mid
        else:
            high = mid - 1
    return unpaired_bounds(n1, n2, margin, float(values[low]), regressed)


def unpaired_power(n1: int, n2: int, margin: float, alpha: float, base_rate: float, drop: float,
                   regressed: bool = True) -> float:
    """Exact probability of declaring regressed (or not worse) when the baseline's rate is base_rate
    and the candidate's base_rate - drop."""
    bounds = unpaired_region(n1, n2, margin, alpha, regressed)
    return float(unpaired_probability(n1, n2, bounds, regressed, drop, np.array([base_rate]))[0])


def unpaired_detectable_drop(n1: int, n2: int, margin: float, alpha: float, base_rate: float,
                             power: float = POWER_TARGET) -> float | None:
    """The smallest true drop below base_rate flagged as regressed with `power`; None when even a
    drop to 0 is not."""
    if n1 <= 0 or n2 <= 0 or base_rate <= margin or unpaired_power(
            n1, n2, margin, alpha, base_rate, base_rate) < power:
        return None
    if unpaired_power(n1, n2, margin, alpha, base_rate, margin) >= power:
        return margin
    return brentq(lambda t: unpaired_power(n1, n2, margin, alpha, base_rate, t) - power, margin,
                  base_rate, xtol=1e-4)


def normal_detectable_drop(margin: float, standard_error: float, alpha: float,
                           power: float = POWER_TARGET) -> float:
    """margin + (z_{1-alpha} + z_power) * standard error: the drop a normal test detects with
    `power` (used for averages, whose interval gives the standard error)."""
    return margin + (float(norm.ppf(1 - alpha)) + float(norm.ppf(power))) * standard_error
