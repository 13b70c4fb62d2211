"""A measured number against a reported one, with the reported number's own sample size where the
release's logs give it.

Every number checkpoints.yaml reports for the released checkpoints is measured in the release's own
evaluation logs, shipped in the package (results/measure/release_baseline.py): a reported 98.8 for
libero_spatial is 494 successes of 500 episodes, not an exact rate. `release_reference` finds that
measurement (the release's logs for the same checkpoint and suites, reproducing the figure to its
printed decimals), so the comparison is two-sample: the run's n against the release's n. Where the
logs do not hold the number (another checkpoint's figure, a suite the release did not log), the
comparison treats the figure as exact and says so (an exact binomial test for a rate).

`compare_to_reported` gives each comparison's Difference (results/stats/differences.py), with margin 0 for
the report and the leaderboard ("consistent": the two-sided test does not reject at 0.05) or the
gate's margin for `check --baseline reported`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from mibot_eval.config import load_aggregates
from mibot_eval.results.measure.release_baseline import load_release_baseline
from mibot_eval.results.measure.suites import Estimate
from mibot_eval.results.measure.summary import Comparison, RunSummary, compare_reported, lookup
from mibot_eval.results.stats import differences
from mibot_eval.results.stats.holm import holm

TWO_SAMPLE = "two-sample against the release's logged episodes"
EXACT_FIGURE = "the reported figure taken as exact (its sample size is unknown)"
LEVEL = 0.05


def _decimals(metric: str) -> int:
    return 2 if metric == "avg_len" else 1


def member_suites(key: str) -> tuple[str, ...]:
    """The suites a reported key covers: an aggregate's members (libero -> its four) or the key."""
    for rule in load_aggregates():
        if rule.key == key and rule.rule == "mean_of_suites":
            return rule.suites
    return (key,)


@lru_cache(maxsize=16)
def _release(suites: tuple[str, ...]) -> RunSummary:
    from mibot_eval.results.measure.release_compare import release_summary

    return release_summary(list(suites))


def release_reference(source: str, key: str, metric: str, figure: float) -> Estimate | None:
    """The release's measurement of a reported figure of checkpoint `source` (its logs, the same
    checkpoint, every member suite logged, and the figure reproduced to its printed decimals); None
    when the logs do not hold it."""
    baseline = load_release_baseline()
    suites = member_suites(key)
    if not all(s in baseline.suites() and baseline.checkpoint(s) == source for s in suites):
        return None
    estimate = lookup(_release(suites), key, metric)
    if estimate is None or estimate.value is None:
        return None
    if abs(round(estimate.value, _decimals(metric)) - figure) > 1e-9:
        return None
    return estimate


def difference_to_reported(measured: Estimate, source: str, key: str, metric: str, figure: float,
                           margin: float = 0.0) -> tuple[differences.Difference, Estimate | None]:
    """measured - reported: two-sample against the release's measurement when its logs hold the
    figure (returned as the second item), else against the figure taken as exact."""
    reference = release_reference(source, key, metric, figure)
    method = measured.method if measured.method.startswith("MOVER") else f"MOVER ({measured.method})"
    if reference is not None:
        if measured.rate is not None and reference.rate is not None:
            return differences.unpaired(measured.rate, reference.rate, margin), reference
        return differences.linear(measured.terms, reference.terms, margin, method=method), reference
    if measured.rate is not None:
        return differences.fixed_rate(measured.rate, figure, margin), None
    return differences.linear(measured.terms, [], margin, figure=figure, method=method), None


@dataclass
class ReportedRow:
    """One reported number next to the run's, with the two-sided test of their difference."""

    comparison: Comparison
    difference: differences.Difference | None  # None: not measured
    reference: Estimate | None  # the release's measurement (its n) or None: figure taken as exact
    p_adjusted: float | None = None

    @property
    def basis(self) -> str:
        return TWO_SAMPLE if self.reference is not None else EXACT_FIGURE

    @property
    def consistent(self) -> bool | None:
        """True when the (adjusted) two-sided test does not reject at 0.05; None when untested."""
        return None if self.p_adjusted is None else self.p_adjusted >= LEVEL


def compare_to_reported(summary: RunSummary, adjust: bool = True) -> list[ReportedRow]:
    """Every reported number the run measured, tested two-sided (margin 0) against the release's
    measurement or the figure; p-values Holm-adjusted across the list (adjust=False: each alone)."""
    rows = []
    for c in compare_reported(summary):
        if c.measured is None or c.measured.value is None or not c.measured.terms:
            rows.append(ReportedRow(c, None, None))
            continue
        difference, reference = difference_to_reported(c.measured, summary.reported_source, c.key,
                                                       c.metric, c.reported)
        rows.append(ReportedRow(c, difference, reference))
    tested = [r for r in rows if r.difference is not None]
    raw = [r.difference.p_two_sided for r in tested if r.difference is not None]
    for row, p in zip(tested, holm(raw) if adjust else raw, strict=True):
        row.p_adjusted = p
    return rows


def consistent_with(measured: Estimate, source: str, key: str, metric: str,
                    figure: float | None) -> bool | None:
    """One number alone (a leaderboard row): the unadjusted two-sided test at 0.05; None when
    nothing is reported or measured."""
    if figure is None or measured.value is None or not measured.terms:
        return None
    difference, _ = difference_to_reported(measured, source, key, metric, float(figure))
    return difference.p_two_sided >= LEVEL


def adjusted_note(rows: Sequence[ReportedRow]) -> str:
    """How the report's column was decided, for its caption."""
    tested = sum(1 for r in rows if r.p_adjusted is not None)
    return (f"two-sided test of measured - reported at 0.05, Holm-adjusted over the {tested} "
            "compared numbers")
