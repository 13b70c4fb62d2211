"""Seeded, stratified bootstrap of per-stratum means and its percentile interval (numpy): the motion
metrics' intervals in the report and the latency sweep."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mibot_eval.results.stats.rates import CONFIDENCE

BOOTSTRAP_REPLICATES = 2000


BOOTSTRAP_SEED = 0


def bootstrap_means(
    strata: Sequence[Sequence[float]], replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = BOOTSTRAP_SEED,
) -> np.ndarray:
    """(replicates, len(strata)) resampled means: each stratum resampled with replacement."""
    rng = np.random.Generator(np.random.PCG64(seed))
    out = np.empty((replicates, len(strata)))
    for column, values in enumerate(strata):
        data = np.asarray(values, dtype=np.float64)
        if data.size == 0:
            out[:, column] = np.nan
            continue
        draws = rng.integers(0, data.size, size=(replicates, data.size))
        out[:, column] = data[draws].mean(axis=1)
    return out


def percentile_interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)
