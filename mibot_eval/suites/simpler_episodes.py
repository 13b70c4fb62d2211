"""The official SimplerEnv episode lists (package data) and the suites' tasks derived from them.

Source: the Xiaomi-Robotics-0 release, `eval_simplerenv/env_options/{fractal,bridge}.json` at commit
3c297b2, shipped gzip-compressed in mibot_eval/data/simplerenv/ (see its README for digests).
A suite YAML lists its tasks as `{name, source, episodes}`: `source` is the list's
`task_suite_name`; trial i of a task is the i-th entry with that `task_suite_name`, in list order.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from mibot_eval.errors import UserError

DATASETS = {"fractal": "fractal.json.gz", "bridge": "bridge.json.gz"}
DATA_PACKAGE = "mibot_eval"
DATA_DIR = ("data", "simplerenv")


@dataclass(frozen=True)
class SimplerEpisode:
    """One entry of the official list, placed in its suite task."""

    task_id: int
    task_name: str
    trial: int
    reference_index: int  # position in the release's list (0-based)
    source: str  # the list's task_suite_name
    env_kwargs: dict[str, Any] = field(compare=False, repr=False)
    reset_options: dict[str, Any] = field(compare=False, repr=False)
    first_copy: int | None = None  # trial of the first identical entry of this task (None: this is it)


def reference_bytes(dataset: str) -> bytes:
    """The release's JSON file, byte for byte (decompressed from the package data)."""
    if dataset not in DATASETS:
        raise UserError(f"unknown SimplerEnv episode list '{dataset}' (known: {', '.join(DATASETS)})")
    resource = resources.files(DATA_PACKAGE).joinpath("/".join((*DATA_DIR, DATASETS[dataset])))
    try:
        return gzip.decompress(resource.read_bytes())
    except FileNotFoundError:
        raise UserError(
            f"SimplerEnv episode list {DATASETS[dataset]} is missing from the installed package "
            f"({'/'.join((DATA_PACKAGE, *DATA_DIR))}); reinstall mibot-eval"
        ) from None


@cache
def _load(dataset: str) -> tuple[dict[str, Any], ...]:
    entries = json.loads(reference_bytes(dataset))
    return tuple(entries)


def load_reference(dataset: str) -> list[dict[str, Any]]:
    """The entries of one list (copies: callers may modify them)."""
    return json.loads(json.dumps(list(_load(dataset))))


def task_episodes(dataset: str, tasks: list[tuple[str, str]]) -> list[list[SimplerEpisode]]:
    """Per task (name, source task_suite_name), its episodes in list order, with repeats marked."""
    entries = _load(dataset)
    out: list[list[SimplerEpisode]] = []
    for task_id, (name, source) in enumerate(tasks):
        episodes: list[SimplerEpisode] = []
        first_of: dict[str, int] = {}
        for index, entry in enumerate(entries):
            if entry.get("task_suite_name") != source:
                continue
            trial = len(episodes)
            canonical = json.dumps(entry, sort_keys=True)
            first = first_of.setdefault(canonical, trial)
            episodes.append(
                SimplerEpisode(
                    task_id=task_id,
                    task_name=name,
                    trial=trial,
                    reference_index=index,
                    source=source,
                    env_kwargs=json.loads(json.dumps(entry["env_kwargs"])),
                    reset_options=json.loads(json.dumps(entry["env_reset_options"])),
                    first_copy=None if first == trial else first,
                )
            )
        if not episodes:
            raise UserError(f"SimplerEnv list '{dataset}' has no episodes for task_suite_name '{source}'")
        out.append(episodes)
    return out
