"""Tables as text: markdown tables (cells' "|" escaped) and CSV in the project's cell format (None
empty, booleans true/false), written atomically; and reading cells of a CSV back (`number`, `truth`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mibot_eval.results.store import write_atomic


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """Lines of a markdown table (cells' "|" escaped)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def csv_text(frame: pd.DataFrame) -> str:
    """A frame as CSV text in the project's cell format (None empty, booleans true/false)."""
    return frame.map(csv_cell).to_csv(index=False, lineterminator="\n")


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write rows with fixed columns, atomically (readers never see half a file)."""
    frame = pd.DataFrame([{c: row.get(c) for c in columns} for row in rows], columns=list(columns),
                         dtype=object)
    write_atomic(path, csv_text(frame).encode("utf-8"))


def csv_cell(value: Any) -> str:
    """One CSV cell: None -> empty, booleans -> true/false, anything else str()."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    return str(value)


def number(value: Any) -> float | None:
    """A numeric cell (built, or read back from a CSV: empty is None) as a float."""
    if value is None or value == "":
        return None
    return float(value)


def truth(value: Any) -> bool:
    """A boolean cell (True, or "true" read back from a CSV)."""
    return value is True or str(value).lower() == "true"


def bool_or_none(value: Any) -> bool | None:
    """A boolean cell that may be empty (None)."""
    if value is None or value == "":
        return None
    return truth(value)
