"""The Xiaomi-Robotics-0 release's own evaluation outcomes (package data), to compare a run with.

scripts/derive_release_baseline.py derives them from the release's published eval logs into
mibot_eval/data/release/ (its README says what each log can and cannot give):
  LIBERO      per-task success counts out of 50 (the logs number episodes in completion order
              across a worker pool, so which trial succeeded is unknown);
  CALVIN      each sequence's completed-subtask count (0..5), but not which sequence it was;
  SimplerEnv  every episode's outcome by its index in the official list (fractal / bridge).

`records(suite)` turns them into episode records in the harness's format, so the statistics code
(measure/suites.py: measure_suite / measure_aggregate) can measure "the release" as if it were a run.
This module reads only the package data and the suite YAMLs (config.load_suite).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from mibot_eval.config import SuiteProtocol, load_suite
from mibot_eval.errors import UserError
from mibot_eval.results.records import RECORD_SCHEMA, EpisodeRecord
from mibot_eval.suites.simpler_episodes import task_episodes

DATA_PACKAGE = "mibot_eval"
DATA_DIR = ("data", "release")
FILES = ("libero.json", "calvin.json", "simplerenv.json")
RUN_NAME = "release"  # the `run` field of the synthetic records


@dataclass(frozen=True)
class LiberoTask:
    """One LIBERO task of the release: successes out of trials (no per-trial outcomes)."""

    successes: int
    trials: int
    instruction: str
    log: str  # path under the release's eval_logs/


@dataclass(frozen=True)
class LiberoSuite:
    name: str
    checkpoint: str
    tasks: dict[int, LiberoTask]


@dataclass(frozen=True)
class CalvinRank:
    """One rank's completed-subtask counts, in its log's (completion) order."""

    rank: int
    completed: tuple[int, ...]
    log: str


@dataclass(frozen=True)
class CalvinSuite:
    name: str
    checkpoint: str
    ranks: tuple[CalvinRank, ...]

    @property
    def completed(self) -> list[int]:
        """Every sequence's count, rank 0 first, each rank in log order."""
        return [c for rank in self.ranks for c in rank.completed]


@dataclass(frozen=True)
class SimplerList:
    """One official episode list: each index's task_suite_name and the release's outcome."""

    name: str
    outcomes: dict[int, tuple[str, bool]]
    log: str


@dataclass(frozen=True)
class ReleaseBaseline:
    """The release's outcomes per harness suite (see the module docstring for what is known)."""

    source: str
    libero: dict[str, LiberoSuite]
    calvin: dict[str, CalvinSuite]
    simpler_lists: dict[str, SimplerList]
    simpler_suites: dict[str, tuple[str, str]]  # suite -> (list name, checkpoint)

    def suites(self) -> list[str]:
        """Harness suites the release has outcomes for."""
        return sorted([*self.libero, *self.calvin, *self.simpler_suites])

    def checkpoint(self, suite: str) -> str | None:
        """The released checkpoint (checkpoints.yaml name) the release evaluated on a suite."""
        for table in (self.libero, self.calvin):
            if suite in table:
                return table[suite].checkpoint
        return self.simpler_suites[suite][1] if suite in self.simpler_suites else None

    def libero_task(self, suite: str, task_id: int) -> tuple[int, int] | None:
        """(successes, trials) of a LIBERO task; None when unknown."""
        task = self.libero[suite].tasks.get(task_id) if suite in self.libero else None
        return None if task is None else (task.successes, task.trials)

    def calvin_completed(self, suite: str) -> list[int] | None:
        """Per-sequence completed-subtask counts (rank 0 first, log order; not sequence ids)."""
        return self.calvin[suite].completed if suite in self.calvin else None

    def simpler_outcome(self, suite: str, reference_index: int) -> bool | None:
        """Success of the list episode `reference_index`; None when it is not an episode of the suite."""
        if suite not in self.simpler_suites:
            return None
        outcome = self.simpler_lists[self.simpler_suites[suite][0]].outcomes.get(reference_index)
        if outcome is None or outcome[0] not in dict(_simpler_tasks(suite)).values():
            return None
        return outcome[1]

    def simpler_task_counts(self, suite: str, task_name: str) -> tuple[int, int] | None:
        """(successes, episodes) of a SimplerEnv task by its harness name, repeats included (90/144)."""
        if suite not in self.simpler_suites:
            return None
        source = dict(_simpler_tasks(suite)).get(task_name)
        if source is None:
            return None
        outcomes = [ok for name, ok in self.simpler_lists[self.simpler_suites[suite][0]].outcomes.values()
                    if name == source]
        return sum(outcomes), len(outcomes)

    def records(self, suite: str) -> list[EpisodeRecord]:
        """Synthetic episode records that reproduce the release's outcomes on `suite` (fresh copies).

        Every record is an EpisodeRecord (results/records.py): schema, key, run ("release"),
        checkpoint, benchmark, suite, task_id, task_name, trial, seed, instruction, success, steps
        (None: not logged), status "ok", error None, timings {}, metrics, finished_at None, plus
        release_log (the log the outcome came from, under the release's eval_logs/).
          LIBERO      one record per trial, key SUITE/TASK/TRIAL; the first `successes` trials of a task
                      succeed. That trial assignment is arbitrary: the logs do not say which trial
                      succeeded, so only per-task (and coarser) comparisons are meaningful.
                      task_name is the task's instruction.
          CALVIN      one record per sequence with metrics.completed (0..5), in log order. The logs do
                      not say which sequence each count belongs to, so task_id and trial are None and
                      the key is SUITE/rank<R>/<local seq>: deliberately not a harness key
                      (SUITE/<sequence>/0), so nothing pairs it with a run's sequence.
                      metrics.subtasks is [] (unknown): per-subtask rates cannot be measured.
          SimplerEnv  one record per list episode, keyed like the adapter (SUITE/TASK/TRIAL, trial = the
                      task's i-th list entry) with metrics.reference_index (list index), repeat_of
                      (first copy's key, WidowX repeats) and task_suite: exact per-episode pairing.
        """
        if suite in self.libero:
            return _libero_records(self.libero[suite], load_suite(suite))
        if suite in self.calvin:
            return _calvin_records(self.calvin[suite], load_suite(suite))
        if suite in self.simpler_suites:
            return self._simpler_records(suite)
        raise UserError(f"no release baseline for suite '{suite}' (known: {', '.join(self.suites())})")

    def _simpler_records(self, suite: str) -> list[EpisodeRecord]:
        protocol = load_suite(suite)
        listed, checkpoint = self.simpler_suites[suite]
        outcomes = self.simpler_lists[listed]
        records = []
        for episodes in task_episodes(listed, list(_simpler_tasks(suite))):
            for episode in episodes:
                source, success = outcomes.outcomes[episode.reference_index]
                if source != episode.source:
                    raise UserError(f"release baseline: list {listed} index {episode.reference_index} is "
                                    f"{source}, the suite expects {episode.source}")
                first = episode.first_copy
                first_key = None if first is None else _key(suite, episode.task_id, first)
                metrics = {"reference_index": episode.reference_index, "repeat_of": first_key,
                           "task_suite": episode.source}
                records.append(_record(protocol, checkpoint, _key(suite, episode.task_id, episode.trial),
                                       episode.task_id, episode.task_name, episode.trial, "", success,
                                       metrics, outcomes.log))
        return records


# -- records ----------------------------------------------------------------------------------------
def _key(suite: str, task_id: int, trial: int) -> str:
    return f"{suite}/{task_id}/{trial}"  # = EpisodeSpec.key


def _record(
    protocol: SuiteProtocol, checkpoint: str, key: str, task_id: int | None, task_name: str,
    trial: int | None, instruction: str, success: bool, metrics: dict[str, Any], log: str,
) -> EpisodeRecord:
    return {
        "schema": RECORD_SCHEMA, "key": key, "run": RUN_NAME, "checkpoint": checkpoint,
        "benchmark": protocol.benchmark, "suite": protocol.name, "task_id": task_id, "task_name": task_name,
        "trial": trial, "seed": protocol.seed, "instruction": instruction, "success": bool(success),
        "steps": None, "status": "ok", "error": None, "timings": {}, "metrics": metrics,
        "finished_at": None, "release_log": log,
    }


def _libero_records(suite: LiberoSuite, protocol: SuiteProtocol) -> list[EpisodeRecord]:
    return [
        _record(protocol, suite.checkpoint, _key(suite.name, task_id, trial), task_id, task.instruction,
                trial, task.instruction, trial < task.successes, {}, task.log)
        for task_id, task in sorted(suite.tasks.items())
        for trial in range(task.trials)
    ]


def _calvin_records(suite: CalvinSuite, protocol: SuiteProtocol) -> list[EpisodeRecord]:
    length = int(protocol.params.get("subtasks_per_sequence", 5))
    return [
        _record(protocol, suite.checkpoint, f"{suite.name}/rank{rank.rank}/{local}", None,
                f"rank{rank.rank}_seq{local:03d}", None, "", completed == length,
                {"completed": completed, "sequence": None, "subtasks": [], "rank": rank.rank,
                 "local_seq": local}, rank.log)
        for rank in suite.ranks
        for local, completed in enumerate(rank.completed)
    ]


@cache
def _simpler_tasks(suite: str) -> tuple[tuple[str, str], ...]:
    """The suite YAML's tasks as (harness name, list task_suite_name), in task-id order."""
    return tuple((str(t["name"]), str(t["source"])) for t in load_suite(suite).params["tasks"])


# -- loading ----------------------------------------------------------------------------------------
def _read(name: str) -> dict[str, Any]:
    resource = resources.files(DATA_PACKAGE).joinpath("/".join((*DATA_DIR, name)))
    try:
        return json.loads(resource.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"release baseline {name} is missing from the installed package "
                        f"({'/'.join((DATA_PACKAGE, *DATA_DIR))}); reinstall mibot-eval") from None


def _parse_libero(data: dict[str, Any]) -> dict[str, LiberoSuite]:
    return {
        name: LiberoSuite(name, suite["checkpoint"], {
            int(k): LiberoTask(int(t["successes"]), int(t["trials"]), str(t["instruction"]), str(t["log"]))
            for k, t in suite["tasks"].items()
        })
        for name, suite in data["suites"].items()
    }


def _parse_calvin(data: dict[str, Any]) -> dict[str, CalvinSuite]:
    return {
        name: CalvinSuite(name, suite["checkpoint"], tuple(
            CalvinRank(int(r["rank"]), tuple(int(c) for c in r["completed"]), str(r["log"]))
            for r in sorted(suite["ranks"], key=lambda r: int(r["rank"]))
        ))
        for name, suite in data["suites"].items()
    }


def _parse_simpler_list(name: str, data: dict[str, Any]) -> SimplerList:
    outcomes: dict[int, tuple[str, bool]] = {}
    for source, task in data["task_suites"].items():
        for success, field in ((True, "succeeded"), (False, "failed")):
            for index in task[field]:
                if int(index) in outcomes:
                    raise UserError(f"release baseline: list {name} index {index} is listed twice")
                outcomes[int(index)] = (str(source), success)
    if sorted(outcomes) != list(range(int(data["episodes"]))):
        raise UserError(f"release baseline: list {name} does not cover indices 0..{data['episodes'] - 1}")
    return SimplerList(name, outcomes, str(data["log"]))


@cache
def load_release_baseline() -> ReleaseBaseline:
    """The shipped release baseline (read once; treat it as read-only)."""
    libero, calvin, simpler = (_read(name) for name in FILES)
    return ReleaseBaseline(
        source=str(libero["source"]),
        libero=_parse_libero(libero),
        calvin=_parse_calvin(calvin),
        simpler_lists={n: _parse_simpler_list(n, d) for n, d in simpler["lists"].items()},
        simpler_suites={s: (str(v["list"]), str(v["checkpoint"])) for s, v in simpler["suites"].items()},
    )
