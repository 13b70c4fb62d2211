"""The benchmark headlines (the leaderboard pivot's columns) and what other models' authors reported on
them: figures *reported by others*, shipped as package data (mibot_eval/data/published/published.json,
its README says where each figure was read) and never measured here.

`HEADLINES` names each headline (leaderboard `suite` + `metric`); `load_published()` reads and
validates the figures (each needs a model, a known headline, a number, a `source` and a `url`);
`published_frame()` is their table (PUBLISHED_COLUMNS), which the leaderboard writes as published.csv
and renders apart from the measured rows. Imports nothing from the results views.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import pandas as pd

from mibot_eval.errors import UserError

DATA_PACKAGE = "mibot_eval"
DATA_PATH = "data/published/published.json"


@dataclass(frozen=True)
class Headline:
    """One benchmark headline: a leaderboard (suite, metric) and how the pivot names it."""

    column: str  # pivot column id, e.g. libero_average
    suite: str  # leaderboard suite (an aggregate key for kind=aggregate)
    metric: str
    label: str  # heading for people


HEADLINES = (
    Headline("libero_average", "libero", "average", "LIBERO average (%)"),
    Headline("calvin_abc_d_avg_len", "calvin_abc_d", "avg_len", "CALVIN ABC→D avg. length"),
    Headline("calvin_abcd_d_avg_len", "calvin_abcd_d", "avg_len", "CALVIN ABCD→D avg. length"),
    Headline("simpler_google_vm_average", "simpler_google_vm", "average", "Google Robot VM (%)"),
    Headline("simpler_google_va_average", "simpler_google_va", "average", "Google Robot VA (%)"),
    Headline("simpler_widowx_average", "simpler_widowx", "average", "WidowX (%)"),
)
PUBLISHED_COLUMNS = ("model", "suite", "metric", "headline", "value", "source", "url", "protocol", "detail")
_REQUIRED_TEXT = ("model", "suite", "metric", "source", "url")


def headline(suite: str, metric: str) -> Headline | None:
    """The headline of a leaderboard (suite, metric), or None."""
    return next((h for h in HEADLINES if (h.suite, h.metric) == (suite, metric)), None)


@dataclass(frozen=True)
class Figure:
    """One figure reported by others, with where it was read."""

    model: str
    suite: str
    metric: str
    value: float
    source: str
    url: str
    protocol: str = ""
    detail: str = ""

    @property
    def headline(self) -> Headline:
        found = headline(self.suite, self.metric)
        assert found is not None  # checked when loaded
        return found


def parse_figures(data: Any, where: str = DATA_PATH) -> list[Figure]:
    """Validate {"figures": [...]}; one UserError line naming the bad figure."""
    figures = data.get("figures") if isinstance(data, dict) else None
    if not isinstance(figures, list):
        raise UserError(f"{where}: expected {{'figures': [...]}}")
    out = []
    for index, entry in enumerate(figures):
        label = f"{where}: figures[{index}]"
        if not isinstance(entry, Mapping):
            raise UserError(f"{label}: expected a mapping")
        for name in _REQUIRED_TEXT:
            if not isinstance(entry.get(name), str) or not entry[name].strip():
                raise UserError(f"{label}: missing '{name}' (every figure names its model, headline and "
                                "where it was read)")
        value = entry.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{label}: 'value' must be a number, got {value!r}")
        if headline(entry["suite"], entry["metric"]) is None:
            known = ", ".join(f"{h.suite}/{h.metric}" for h in HEADLINES)
            raise UserError(f"{label}: {entry['suite']}/{entry['metric']} is not a headline ({known})")
        out.append(Figure(str(entry["model"]), str(entry["suite"]), str(entry["metric"]), float(value),
                          str(entry["source"]), str(entry["url"]), str(entry.get("protocol") or ""),
                          str(entry.get("detail") or "")))
    return out


def load_published() -> list[Figure]:
    """The shipped figures (mibot_eval/data/published/published.json), validated."""
    resource = resources.files(DATA_PACKAGE).joinpath(DATA_PATH)
    try:
        data = json.loads(resource.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{DATA_PACKAGE}/{DATA_PATH} is missing from the installed package; "
                        "reinstall mibot-eval") from None
    return parse_figures(data)


def published_frame(figures: list[Figure] | None = None) -> pd.DataFrame:
    """The figures as a table (PUBLISHED_COLUMNS), in headline order, then by value (best first)."""
    figures = load_published() if figures is None else figures
    order = {h.column: i for i, h in enumerate(HEADLINES)}
    rows = [{"model": f.model, "suite": f.suite, "metric": f.metric, "headline": f.headline.label,
             "value": f.value, "source": f.source, "url": f.url, "protocol": f.protocol,
             "detail": f.detail, "_order": order[f.headline.column]} for f in figures]
    frame = pd.DataFrame(rows, columns=[*PUBLISHED_COLUMNS, "_order"], dtype=object)
    if not rows:
        return frame.drop(columns="_order")
    frame = frame.sort_values(["_order", "value", "model"], ascending=[True, False, True], kind="stable")
    return frame.drop(columns="_order").reset_index(drop=True)
