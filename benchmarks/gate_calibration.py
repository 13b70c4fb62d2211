"""Size, power and coverage of the fixed-N gate's tests and intervals, by exact enumeration (and a
seeded Monte Carlo where a sum of many rates makes enumeration impossible). One run, one table.

    python benchmarks/gate_calibration.py [--quick] [--alpha 0.05] [--reps 2000] [--seed 0]

Rows (each: the worst case over its grid; "size" = probability of a wrong verdict at the null's
boundary, candidate = baseline - margin, maximised over the nuisance parameter):
  paired margin 0       exact McNemar (results/stats/exact.py), n 24-2000, discordance 0.005-0.3
  paired margin         exact unconditional test ordered by Tango's statistic, n 24-2000, margins
                        1-10 pp, discordance from the margin to 0.3 (400 points, not the test's grid);
                        beside it, for contrast, the same sizes of Tango's statistic used
                        asymptotically and of the previous test (McNemar with the observed
                        discordance plugged into the null share)
  unpaired              exact unconditional test ordered by the Farrington-Manning statistic (a run
                        against the release's LIBERO logs, a partial baseline), sizes of the release's
                        n (24 / 50 / 300 / 500 / 1000 each side), margins 0-10 pp, baseline rate from
                        the margin to 1
  reported (release n)  the report's "consistent" column for a faithful reproduction: probability of
                        "inconsistent" when the run and the release share one true rate (two-sample,
                        two-sided at 0.05), against the previous check "reported inside the run's
                        Wilson interval"; and the exact binomial test of a figure taken as exact
  averages (MOVER)      LIBERO's average against the release's (unpaired) and against a run (paired,
                        Tango terms): seeded Monte Carlo size at the margin's boundary
  intervals             exact coverage of the rate interval (Clopper-Pearson; Wilson and Jeffreys for
                        contrast) at every p for every n 24-2000; Monte Carlo coverage of the MOVER
                        average and of CALVIN's average length; exact coverage of Tango's paired and
                        Newcombe's unpaired difference intervals (n 24-100)
  planner               exact power at the sizes `mibot-eval plan-gate` plans
The sequential gate's rows come from benchmarks/sequential_calibration.py (`main_table()`), when that
file exists (the marked spot at the end of main_table).
--quick: the small-n slice tests/test_gate_calibration.py runs (seconds, not minutes).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from scipy.stats import binom, norm
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mibot_eval.results.stats import exact  # noqa: E402
from mibot_eval.results.stats.intervals import mover, p_above, p_below, paired_term, rate_term, tango_interval

NS_FULL = (24, 30, 40, 50, 75, 100, 144, 200, 300, 500, 750, 1000, 1500, 2000)
NS_QUICK = (24, 50, 100)
MARGINS_FULL = (0.01, 0.02, 0.03, 0.05, 0.07, 0.10)
MARGINS_QUICK = (0.01, 0.05, 0.10)
POINTS = 400


@dataclass(frozen=True)
class Row:
    variant: str
    method: str
    grid: str
    size_regressed: float | None  # worst P(false "regressed")
    size_not_worse: float | None  # worst P(false "not worse")
    other: str = ""  # power, coverage, contrast

    def cells(self) -> tuple[str, ...]:
        def f(x: float | None) -> str:
            return "–" if x is None else f"{x:.4f}"
        return (self.variant, self.method, self.grid, f(self.size_regressed), f(self.size_not_worse),
                self.other)


# -- paired ---------------------------------------------------------------------------------------
def _plugin_region(n: int, margin: float, alpha: float) -> np.ndarray:
    """The previous margin test's region: binomtest(b, d, 1/2 + margin n / (2 d)) 'greater' <= alpha."""
    d = np.arange(n + 1)
    share = np.where(d > 0, 0.5 + margin * n / (2 * np.maximum(d, 1)), 1.0)
    k = np.full(n + 1, n + 2)
    ok = share < 1
    k_ok = binom.isf(alpha, d[ok], share[ok]) + 1
    k[ok] = np.where(d[ok] > 0, k_ok, d[ok] + 1)
    return np.minimum(k, d + 1).astype(int)


def paired_sizes(ns: Sequence[int], margins: Sequence[float], alpha: float) -> list[Row]:
    """Exact sizes of the paired tests (module docstring)."""
    worst_mc = 0.0
    for n in ns:
        q = np.linspace(0.005, 0.3, POINTS)
        for upper in (True, False):
            region = exact.paired_region(n, 0.0, alpha, upper)
            worst_mc = max(worst_mc, float(exact.paired_probability(n, region, upper, 0.0, q).max()))
    rows = [Row("paired, margin 0", "exact McNemar", f"n {min(ns)}-{max(ns)}, q 0.005-0.3", worst_mc,
                worst_mc, "each tail")]
    worst = {True: (0.0, ""), False: (0.0, "")}
    asymptotic = plugin = 0.0
    z = float(norm.ppf(1 - alpha))
    for n in ns:
        for margin in margins:
            q = np.linspace(margin, 0.3, POINTS)
            for upper in (True, False):
                region = exact.paired_region(n, margin, alpha, upper)
                size = float(exact.paired_probability(n, region, upper, margin, q).max())
                if size > worst[upper][0]:
                    worst[upper] = (size, f"n {n}, {100 * margin:g} pp")
            bounds = exact.paired_bounds(n, margin, z, True)
            asymptotic = max(asymptotic, float(exact.paired_probability(n, bounds, True, margin, q).max()))
            plugin = max(plugin, float(exact.paired_probability(n, _plugin_region(n, margin, alpha), True,
                                                                 margin, q).max()))
    rows.append(Row("paired, margin", "exact unconditional, Tango order",
                    f"n {min(ns)}-{max(ns)}, {_pp(margins)}, q margin-0.3", worst[True][0], worst[False][0],
                    f"worst at {worst[True][1]} / {worst[False][1]}; previous plug-in McNemar "
                    f"{plugin:.3f}, Tango asymptotic {asymptotic:.3f}"))
    return rows


def _pp(margins: Sequence[float]) -> str:
    return f"margins {100 * min(margins):g}-{100 * max(margins):g} pp"


# -- unpaired -------------------------------------------------------------------------------------
def unpaired_sizes(sizes: Sequence[int], margins: Sequence[float], alpha: float) -> list[Row]:
    worst = {True: (0.0, ""), False: (0.0, "")}
    asymptotic = 0.0
    z = float(norm.ppf(1 - alpha))
    for n in sizes:
        for margin in margins:
            rates = np.linspace(margin, 1.0, POINTS)
            for regressed in (True, False):
                region = exact.unpaired_region(n, n, margin, alpha, regressed)
                size = float(exact.unpaired_probability(n, n, region, regressed, margin, rates).max())
                if size > worst[regressed][0]:
                    worst[regressed] = (size, f"n {n}, {100 * margin:g} pp")
            bounds = exact.unpaired_bounds(n, n, margin, -z, True)
            asymptotic = max(asymptotic, float(exact.unpaired_probability(n, n, bounds, True, margin,
                                                                           rates).max()))
    return [Row("unpaired (vs release logs, partial baseline)",
                "exact unconditional, Farrington-Manning order",
                f"n {min(sizes)}-{max(sizes)} each side, margins 0-{100 * max(margins):g} pp, p margin-1",
                worst[True][0], worst[False][0],
                f"worst at {worst[True][1]} / {worst[False][1]}; asymptotic score test {asymptotic:.3f}")]


# -- reported numbers -------------------------------------------------------------------------------
def faithful_inconsistency(n: int, rate: float, alpha: float = 0.05) -> tuple[float, float]:
    """P("inconsistent with reported") for a faithful reproduction: the run and the release both n
    episodes at one true rate. (two-sample two-sided exact test, the previous Wilson check)"""
    rates = np.array([rate])
    new = sum(float(exact.unpaired_probability(n, n, exact.unpaired_region(n, n, 0.0, alpha / 2, tail),
                                                tail, 0.0, rates)[0]) for tail in (True, False))
    x = np.arange(n + 1)
    weights = binom.pmf(x, n, rate)
    likely = x[weights > 1e-12]
    old = 0.0
    for x1 in likely:
        low, high = proportion_confint(int(x1), n, alpha=alpha, method="wilson")
        outside = (likely / n < low - 1e-9) | (likely / n > high + 1e-9)
        old += weights[x1] * float(weights[likely][outside].sum())
    return new, old


def reported_rows(cases: Iterable[tuple[str, int, float]], alpha: float) -> list[Row]:
    worst_new = worst_old = 0.0
    names = []
    for name, n, rate in cases:
        new, old = faithful_inconsistency(n, rate, alpha)
        worst_new, worst_old = max(worst_new, new), max(worst_old, old)
        names.append(f"{name} {new:.3f} (was {old:.3f})")
    rows = [Row("reported, release n known: 'consistent' column", "two-sample exact, two-sided",
                "faithful reproductions at the release's rates", None, None,
                f"P(inconsistent) max {worst_new:.4f}, previous Wilson check max {worst_old:.4f}: "
                + "; ".join(names))]
    worst = 0.0
    for n in (24, 50, 300, 500):
        for p0 in np.linspace(0.5, 0.99, 50):
            k = int(binom.ppf(alpha, n, p0))
            k = k if binom.cdf(k, n, p0) <= alpha else k - 1
            worst = max(worst, float(binom.cdf(k, n, p0)) if k >= 0 else 0.0)
    rows.append(Row("reported, figure taken as exact", "exact binomial (scipy binomtest)",
                    "n 24-500, figure - margin 50-99%", worst, worst, "size by enumeration; each tail"))
    return rows


# -- averages (MOVER), seeded Monte Carlo -------------------------------------------------------------
def _mc_average_unpaired(rates: Sequence[float], n: int, margin: float, reps: int, seed: int,
                         alpha: float) -> tuple[float, float]:
    """Release average of suites at `rates` (n each) against a candidate at rates - margin (every
    rate >= margin here): the boundary, candidate average = release average - margin."""
    rng = np.random.Generator(np.random.PCG64(seed))
    base = np.asarray(rates)
    cand = base - margin
    k = len(base)
    false_reg = false_ok = 0
    for _ in range(reps):
        sb = rng.binomial(n, base)
        sc = rng.binomial(n, cand)
        terms = [rate_term(float(s), n, 100 / k) for s in sc]
        others = [rate_term(float(s), n, -100 / k) for s in sb]
        value = sum(t.weight * t.value for t in terms + others)

        def interval(z: float, terms: list = terms + others) -> tuple[float, float]:
            return mover(terms, z)

        false_reg += p_below(interval, value, -100 * margin) < alpha
        false_ok += p_above(interval, value, -100 * margin) < alpha
    return false_reg / reps, false_ok / reps


def _mc_average_paired(n: int, suites: int, margin: float, discordance: float, reps: int, seed: int,
                       alpha: float) -> tuple[float, float]:
    """Paired average of `suites` suites of n pairs, each at baseline-only - candidate-only = margin
    (the boundary) with this discordance: MOVER over Tango terms."""
    rng = np.random.Generator(np.random.PCG64(seed))
    pb, pc = (discordance + margin) / 2, (discordance - margin) / 2
    false_reg = false_ok = 0
    for _ in range(reps):
        tables = rng.multinomial(n, [pb, pc, 1 - pb - pc], size=suites)
        terms = [paired_term(int(b), int(c), n, 100 / suites) for b, c, _ in tables]
        value = sum(t.weight * t.value for t in terms)

        def interval(z: float, terms: list = terms) -> tuple[float, float]:
            return mover(terms, z)

        false_reg += p_below(interval, value, -100 * margin) < alpha
        false_ok += p_above(interval, value, -100 * margin) < alpha
    return false_reg / reps, false_ok / reps


def average_rows(reps: int, seed: int, alpha: float, quick: bool) -> list[Row]:
    configs = [((0.988, 1.0, 0.988, 0.972), 500, 0.03), ((0.9, 0.85, 0.8, 0.95), 500, 0.03),
               ((0.625, 0.833, 0.958, 0.75), 24, 0.15)]
    worst = [0.0, 0.0]
    for i, (rates, n, margin) in enumerate(configs[:2] if quick else configs):
        r = _mc_average_unpaired(rates, n, margin, reps, seed + i, alpha)
        worst = [max(worst[0], r[0]), max(worst[1], r[1])]
    rows = [Row("average vs release (unpaired)", "MOVER (Clopper-Pearson terms) inverted",
                f"LIBERO-like 4 x 500 at 3 pp, WidowX-like 4 x 24 at 15 pp; {reps} seeded draws each",
                worst[0], worst[1], f"Monte Carlo SE {math.sqrt(0.05 * 0.95 / reps):.4f}")]
    paired_reps = max(reps // 5, 100)
    worst = [0.0, 0.0]
    for i, (n, q) in enumerate([(500, 0.05), (100, 0.1)] if not quick else [(100, 0.1)]):
        r = _mc_average_paired(n, 4, 0.03, q, paired_reps, seed + 10 + i, alpha)
        worst = [max(worst[0], r[0]), max(worst[1], r[1])]
    rows.append(Row("average vs run (paired)", "MOVER (Tango terms) inverted",
                    f"4 suites x 500 (q 0.05) and x 100 (q 0.1) at 3 pp; {paired_reps} seeded draws",
                    worst[0], worst[1], f"Monte Carlo SE {math.sqrt(0.05 * 0.95 / paired_reps):.4f}"))
    return rows


# -- intervals ---------------------------------------------------------------------------------------
def rate_coverage(n: int, method: str, confidence: float = 0.95) -> float:
    """Exact minimum coverage over p of a rate interval at n (the infimum lies at an endpoint)."""
    x = np.arange(n + 1)
    if method == "clopper-pearson":
        low, high = proportion_confint(x, n, alpha=1 - confidence, method="beta")
    else:
        low, high = proportion_confint(x, n, alpha=1 - confidence, method=method)
    low = np.where(x == 0, 0.0, np.nan_to_num(low)).astype(float)
    high = np.where(x == n, 1.0, np.nan_to_num(high, nan=1.0)).astype(float)
    points = np.concatenate([low - 1e-10, low + 1e-10, high - 1e-10, high + 1e-10])
    points = points[(points > 0) & (points < 1)]
    first = np.searchsorted(np.maximum.accumulate(high), points, side="left")
    last = np.searchsorted(np.maximum.accumulate(low), points, side="right") - 1
    return float((binom.cdf(last, n, points) - binom.cdf(first - 1, n, points)).min())


def interval_rows(ns: Sequence[int], reps: int, seed: int, quick: bool) -> list[Row]:
    worst = {m: 1.0 for m in ("clopper-pearson", "wilson", "jeffreys")}
    for n in ns:
        for method in worst:
            worst[method] = min(worst[method], rate_coverage(n, method))
    rows = [Row("rate interval", "Clopper-Pearson", f"every n {min(ns)}-{max(ns)}, every p", None, None,
                f"min coverage {worst['clopper-pearson']:.4f} (Wilson {worst['wilson']:.4f}, "
                f"Jeffreys {worst['jeffreys']:.4f})")]
    rng = np.random.Generator(np.random.PCG64(seed))
    z = float(norm.ppf(0.975))
    cover = []
    for rates, n in [((0.988, 1.0, 0.988, 0.972), 500), ((1.0, 1.0, 1.0, 0.998), 500),
                     ((0.005, 0.002, 0.01, 0.0), 500), ((0.625, 0.833, 0.958, 0.75), 24),
                     ((0.96, 0.99, 0.95, 0.98), 24)]:
        truth = 100 * float(np.mean(rates))
        s = rng.binomial(n, rates, size=(reps, len(rates)))
        hit = 0
        for draw in s:
            low, high = mover([rate_term(float(k), n, 100 / len(rates)) for k in draw], z)
            hit += low - 1e-9 <= truth <= high + 1e-9
        cover.append(hit / reps)
    rows.append(Row("average interval", "MOVER (Clopper-Pearson terms)",
                    f"LIBERO-like, all-success, all-fail (4 x 500), WidowX-like (4 x 24); {reps} draws each",
                    None, None, f"min coverage {min(cover):.4f} (zero width: never)"))
    histogram = np.array([0, 17, 23, 34, 45, 881]) / 1000  # the release's ABC->D completed counts
    cover = []
    for n in (100, 1000):
        draws = rng.choice(6, size=(reps, n), p=histogram)
        hit = 0
        for d in draws:
            low, high = 5 * np.array(proportion_confint(d.sum() / 5, n, alpha=0.05, method="beta"))
            hit += low <= 5 * float(histogram @ np.arange(6)) / 5 <= high
        cover.append(hit / reps)
    rows.append(Row("CALVIN avg_len interval", "Clopper-Pearson on avg_len / 5 (bounded mean)",
                    f"release's length histogram, n 100 and 1000; {reps} draws", None, None,
                    f"min coverage {min(cover):.4f}"))
    rows.append(_tango_coverage((24, 50) if quick else (24, 50, 100)))
    rows.append(_unpaired_interval_coverage((24, 50)))
    return rows


def _tango_coverage(ns: Sequence[int]) -> Row:
    """Exact coverage of Tango's interval over a grid of (P(base only), P(candidate only))."""
    z = float(norm.ppf(0.975))
    worst = 1.0
    for n in ns:
        tables = [(b, c) for b in range(n + 1) for c in range(n + 1 - b)]
        bounds = {t: tango_interval(t[0], t[1], n, z) for t in tables}
        b_all = np.array([t[0] for t in tables])
        c_all = np.array([t[1] for t in tables])
        for pb in np.linspace(0.0, 0.3, 13):
            for pc in np.linspace(0.0, 0.3, 13):
                diff = pc - pb
                covered = np.array([bounds[t][0] - 1e-9 <= diff <= bounds[t][1] + 1e-9 for t in tables])
                logp = (_log_multinomial(n, b_all, c_all) + _xlogy(b_all, pb) + _xlogy(c_all, pc)
                        + _xlogy(n - b_all - c_all, 1 - pb - pc))
                worst = min(worst, float(np.exp(logp)[covered].sum()))
    return Row("paired difference interval", "Tango score", f"n {', '.join(map(str, ns))}; "
               "P(base only), P(candidate only) 0-0.3", None, None, f"min coverage {worst:.4f}")


def _xlogy(x: np.ndarray, p: float) -> np.ndarray:
    if p <= 0:
        return np.where(x == 0, 0.0, -np.inf)
    return x * math.log(p)


def _log_multinomial(n: int, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    from scipy.special import gammaln

    return gammaln(n + 1) - gammaln(b + 1) - gammaln(c + 1) - gammaln(n - b - c + 1)


def _unpaired_interval_coverage(ns: Sequence[int]) -> Row:
    """Exact coverage of the unpaired difference interval the gate shows (MOVER over Clopper-Pearson
    intervals) and of statsmodels' Newcombe (MOVER over Wilson), over a 0.025 grid of (p1, p2)."""
    z = float(norm.ppf(0.975))
    worst_mover = worst_newcombe = 1.0
    for n in ns:
        x1, x2 = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
        low, high = confint_proportions_2indep(x1.ravel(), n, x2.ravel(), n, method="newcomb",
                                               compare="diff", alpha=0.05)
        newcombe = (np.asarray(low).reshape(x1.shape), np.asarray(high).reshape(x1.shape))
        bounds = np.array([[mover([rate_term(a, n, 1.0), rate_term(b, n, -1.0)], z) for b in range(n + 1)]
                           for a in range(n + 1)])
        moved = (bounds[..., 0], bounds[..., 1])
        for p1 in np.linspace(0.0, 1.0, 41):
            for p2 in np.linspace(0.0, 1.0, 41):
                weight = np.outer(binom.pmf(np.arange(n + 1), n, p1), binom.pmf(np.arange(n + 1), n, p2))
                for which, (lo, hi) in (("mover", moved), ("newcombe", newcombe)):
                    covered = (lo - 1e-9 <= p1 - p2) & (p1 - p2 <= hi + 1e-9)
                    value = float(weight[covered].sum())
                    if which == "mover":
                        worst_mover = min(worst_mover, value)
                    else:
                        worst_newcombe = min(worst_newcombe, value)
    return Row("unpaired difference interval", "MOVER (Clopper-Pearson terms)",
               f"n {', '.join(map(str, ns))} each side; p1, p2 on a 0.025 grid", None, None,
               f"min coverage {worst_mover:.4f} (statsmodels Newcombe, Wilson terms: {worst_newcombe:.4f})")


# -- the planner ---------------------------------------------------------------------------------------
def planner_rows(alpha: float) -> list[Row]:
    from mibot_eval.results.measure.plan_gate import (
        _catch_power,
        _exact_size,
        _paired_n,
        _paired_pass,
        _pass_power,
    )

    cases = []
    for q in (0.02, 0.05):
        pass_power = partial(_pass_power, margin=0.03, alpha=alpha, discordance=q)
        size = _exact_size(pass_power, 0.8, 2000, _paired_pass(q, 0.03, alpha, 0.8))
        if size.n is not None and size.exact:
            approx = _paired_pass(q, 0.03, alpha, 0.8)
            cases.append(f"pass at 3 pp, q {q}: {size.n} pairs (normal approx. {approx}), power "
                         f"{pass_power(size.n):.3f}")
        level = alpha / 11
        catch_power = _catch_power(0.0, level, 0.05, q)
        approx = _paired_n(q + 0.05, 0.05, 0.0, level, 0.8)
        size = _exact_size(catch_power, 0.8, 2000, approx)
        if size.n is not None and size.exact:
            cases.append(f"catch 5 pp at margin 0, q {q}: {size.n} pairs (normal approx. {approx}), "
                         f"power {catch_power(size.n):.3f}")
    return [Row("planner (plan-gate)", "exact power at the planned size", "paired examples", None, None,
                "; ".join(cases))]


# -- the table ---------------------------------------------------------------------------------------
def main_table(quick: bool = False, alpha: float = 0.05, reps: int = 2000, seed: int = 0,
               progress: Callable[[str], None] | None = None) -> str:
    """The whole calibration as one markdown table."""
    say = progress or (lambda _: None)
    ns = NS_QUICK if quick else NS_FULL
    margins = MARGINS_QUICK if quick else MARGINS_FULL
    rows: list[Row] = []
    say("paired")
    rows += paired_sizes(ns, margins, alpha)
    say("unpaired")
    rows += unpaired_sizes((24, 50) if quick else (24, 50, 300, 500, 1000), (0.0, *margins), alpha)
    say("reported")
    cases = [("libero_spatial 500 at 98.8%", 500, 0.988), ("libero_10 500 at 97.2%", 500, 0.972)]
    if not quick:
        cases += [("coke 300 at 98.7%", 300, 0.987), ("WidowX carrot 24 at 62.5%", 24, 0.625),
                  ("CALVIN chain_5 1000 at 88.1%", 1000, 0.881)]
    rows += reported_rows(cases, alpha)
    say("averages")
    rows += average_rows(reps if not quick else min(reps, 300), seed, alpha, quick)
    say("intervals")
    rows += interval_rows(range(24, 201) if quick else range(24, 2001), reps if not quick else 300, seed,
                          quick)
    if not quick:
        say("planner")
        rows += planner_rows(alpha)
    lines = ["| variant | method | grid | max size: regressed | max size: not worse | power / coverage / "
             "contrast |", "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    # -- sequential variants: benchmarks/sequential_calibration.py (the sequential gate's own
    # calibration, heterogeneous tasks and completion order) adds its rows here when it exists --
    sequential = _sequential_table(quick)
    if sequential:
        lines += ["", sequential.rstrip()]
    return "\n".join(lines) + "\n"


def _sequential_table(quick: bool) -> str | None:
    """benchmarks/sequential_calibration.py's main_table(), when that file exists."""
    path = Path(__file__).with_name("sequential_calibration.py")
    if quick or not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("sequential_calibration", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.main_table()
    return table if isinstance(table, str) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the small-n slice the tests run")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--reps", type=int, default=2000, help="Monte Carlo draws per configuration")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(main_table(args.quick, args.alpha, args.reps, args.seed,
                     progress=lambda s: print(f"... {s}", file=sys.stderr, flush=True)), end="")


if __name__ == "__main__":
    main()
