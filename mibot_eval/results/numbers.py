"""How a measured number is written, in every table of every view: `fmt` (markdown and text: one
decimal, avg_len two, never "-0.0"), `fmt_ci`, `csv_digits` (the decimals a CSV cell keeps: rounded
once, where the cell is written) and `none_if_nan`."""

from __future__ import annotations

from typing import Any


def fmt(value: float | None, metric: str = "") -> str:
    if value is None:
        return "–"
    text = f"{value:.2f}" if metric == "avg_len" else f"{value:.1f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text  # no "-0.0"


def fmt_ci(low: float | None, high: float | None, metric: str = "") -> str:
    return "–" if low is None or high is None else f"[{fmt(low, metric)}, {fmt(high, metric)}]"


def csv_digits(metric: str) -> int:
    """Decimals an estimate keeps in a CSV cell (avg_len in subtasks: 3, percent: 2)."""
    return 3 if metric == "avg_len" else 2


def none_if_nan(value: Any) -> Any:
    """None for a float NaN (an empty cell), the value otherwise."""
    return None if isinstance(value, float) and value != value else value
