"""Holm's step-down adjustment of p-values (family-wise error control; statsmodels multipletests
"holm"): the gate's regression tests, the release comparison and the reported-number comparison each
adjust over their own table."""

from __future__ import annotations

from collections.abc import Sequence

from statsmodels.stats.multitest import multipletests


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error control), in input order."""
    if not p_values:
        return []
    return [float(p) for p in multipletests(list(p_values), method="holm")[1]]
