"""The hand-written statistics (results/stats/exact.py, results/stats/intervals.py) against brute force
and the libraries that cover a special case: exact McNemar regions (scipy binomtest), the paired margin test
by trinomial enumeration, the unpaired test at margin 0 (scipy barnard_exact), the restricted MLE of
the Farrington-Manning statistic (numerical maximisation), exact sizes, interval inversions, power."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.stats import barnard_exact, binomtest, multinomial, norm

from mibot_eval.results.stats import exact
from mibot_eval.results.stats.intervals import mover, p_above, p_below, rate_bounds, rate_term, tango_interval


@pytest.mark.parametrize("n", [10, 37])
def test_mcnemar_regions_are_binomtests(n: int) -> None:
    regressed = exact.paired_region(n, 0.0, 0.05, True)
    not_worse = exact.paired_region(n, 0.0, 0.05, False)
    for d in range(n + 1):
        up = [b for b in range(d + 1) if d and binomtest(b, d, 0.5, alternative="greater").pvalue <= 0.05]
        down = [b for b in range(d + 1) if d and binomtest(b, d, 0.5, alternative="less").pvalue <= 0.05]
        assert regressed[d] == (min(up) if up else d + 1)
        assert not_worse[d] == (max(down) if down else -1)


def _paired_brute(b: int, c: int, n: int, margin: float, grid: np.ndarray) -> tuple[float, float]:
    """sup over the grid of P(T >= / <= T_observed), summing the trinomial over every table."""
    observed = float(exact.tango_z(b, c, n, margin))
    best = [0.0, 0.0]
    for q in grid:
        probs = [(q + margin) / 2, (q - margin) / 2, 1 - q]
        tails = [0.0, 0.0]
        for bb in range(n + 1):
            for cc in range(n + 1 - bb):
                p = multinomial.pmf([bb, cc, n - bb - cc], n, probs)
                t = float(exact.tango_z(bb, cc, n, margin))
                tails[0] += p * (t >= observed - 1e-12)
                tails[1] += p * (t <= observed + 1e-12)
        best = [max(best[0], tails[0]), max(best[1], tails[1])]
    return best[0], best[1]


@pytest.mark.parametrize("b, c, n, margin", [(5, 1, 24, 0.05), (0, 3, 25, 0.1), (2, 2, 24, 0.03)])
def test_paired_margin_test_equals_trinomial_enumeration(b, c, n, margin) -> None:
    grid = exact.nuisance_grid(margin)[::10]
    brute = _paired_brute(b, c, n, margin, grid)
    full = exact.paired_p_values(b, c, n, margin)
    # the module's supremum runs over the full grid: at least the subset's, and close to it
    assert full[0] >= brute[0] - 1e-12 and full[1] >= brute[1] - 1e-12
    assert full == pytest.approx(brute, abs=2e-3)


@pytest.mark.parametrize("table", [(3, 20, 9, 20), (15, 24, 20, 24), (7, 30, 2, 30)])
def test_unpaired_test_at_margin_zero_is_barnards(table) -> None:
    x1, n1, x2, n2 = table
    regressed, not_worse = exact.unpaired_p_values(x1, n1, x2, n2, 0.0)
    contingency = [[x1, x2], [n1 - x1, n2 - x2]]
    assert regressed == pytest.approx(barnard_exact(contingency, alternative="less").pvalue, abs=1e-4)
    assert not_worse == pytest.approx(barnard_exact(contingency, alternative="greater").pvalue, abs=1e-4)


def test_farrington_manning_statistic_uses_the_restricted_mle() -> None:
    n1, n2, margin = 40, 60, 0.1

    def by_optimisation(x1: int, x2: int) -> float:
        def loss(p2: float) -> float:
            p1 = p2 - margin
            return -(x1 * math.log(max(p1, 1e-300)) + (n1 - x1) * math.log(max(1 - p1, 1e-300))
                     + x2 * math.log(p2) + (n2 - x2) * math.log(max(1 - p2, 1e-300)))
        p2 = minimize_scalar(loss, bounds=(margin + 1e-12, 1 - 1e-12), method="bounded",
                             options={"xatol": 1e-12}).x
        p1 = p2 - margin
        return (x1 / n1 - x2 / n2 + margin) / math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)

    for x1 in range(0, n1 + 1, 4):  # x1 = 0 included: where statsmodels' closed form fails
        for x2 in range(0, n2, 7):
            assert float(exact.score_z(x1, n1, x2, n2, margin)) == pytest.approx(by_optimisation(x1, x2),
                                                                                 abs=1e-5)


@pytest.mark.parametrize("n, margin", [(24, 0.01), (24, 0.1), (50, 0.05), (100, 0.02)])
def test_paired_margin_test_holds_its_size_between_grid_points(n, margin) -> None:
    """Exact size at 400 discordances from the margin to 0.3 (not the grid the test uses)."""
    discordance = np.linspace(margin, 0.3, 400)
    for regressed in (True, False):
        region = exact.paired_region(n, margin, 0.05, regressed)
        size = exact.paired_probability(n, region, regressed, margin, discordance)
        assert size.max() <= 0.0505


@pytest.mark.parametrize("n, margin", [(24, 0.02), (50, 0.1)])
def test_unpaired_margin_test_holds_its_size_between_grid_points(n, margin) -> None:
    rates = np.linspace(margin, 1.0, 400)
    for regressed in (True, False):
        region = exact.unpaired_region(n, n, margin, 0.05, regressed)
        size = exact.unpaired_probability(n, n, region, regressed, margin, rates)
        assert size.max() <= 0.0505


def test_detectable_drop_has_the_stated_power() -> None:
    drop = exact.paired_detectable_drop(200, 0.03, 0.05, 0.05)
    assert drop is not None and 0.03 < drop < 0.2
    assert exact.paired_power(200, 0.03, 0.05, drop, 0.05) == pytest.approx(0.8, abs=0.01)
    drop = exact.unpaired_detectable_drop(50, 50, 0.03, 0.05, 0.95)
    assert drop is not None
    assert exact.unpaired_power(50, 50, 0.03, 0.05, 0.95, drop) == pytest.approx(0.8, abs=0.01)
    assert exact.paired_detectable_drop(1, 0.03, 0.05, 0.0) is None  # one pair detects nothing


def test_tango_interval_inverts_the_statistic() -> None:
    z = float(norm.ppf(0.975))
    for b, c, n in [(5, 1, 30), (0, 0, 50), (10, 0, 100), (3, 7, 40)]:
        low, high = tango_interval(b, c, n, z)
        assert low <= (c - b) / n <= high
        for bound, target in ((low, -z), (high, z)):
            if -1 < bound < 1:
                assert float(exact.tango_z(b, c, n, -bound)) == pytest.approx(target, abs=1e-6)
    assert tango_interval(0, 0, 50, z)[1] - tango_interval(0, 0, 50, z)[0] > 0.1  # never zero width


def test_mover_of_one_term_is_its_interval_and_p_values_invert_it() -> None:
    z = float(norm.ppf(0.975))
    assert mover([rate_term(7, 10, 100.0)], z) == pytest.approx(tuple(100 * x for x in rate_bounds(7, 10, z)))
    terms = [rate_term(s, 500, 25.0) for s in (494, 500, 494, 486)]
    p = p_below(lambda q: mover(terms, q), 98.7, 99.5)
    assert mover(terms, float(norm.isf(p)))[1] == pytest.approx(99.5, abs=1e-6)
    p = p_above(lambda q: mover(terms, q), 98.7, 97.0)
    assert mover(terms, float(norm.isf(p)))[0] == pytest.approx(97.0, abs=1e-6)
    assert p_below(lambda q: mover(terms, q), 98.7, 90.0) == 1.0  # the estimate is not below
