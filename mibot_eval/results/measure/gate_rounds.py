
"""The sequential gate's rounds: which matched units it reads, in which order, and the buffer that
feeds it complete rounds whatever order the episodes finish in (results/stats/sequential.py is the test).

  unit              a matched independent trial: an episode key, or a WidowX episode with its
                    deterministic copies (`metrics.repeat_of`), keyed by its first copy
  build_rounds      every task in every round, about n_k / R units of task k (R = min_k n_k rounds),
                    with each unit's exponent (sequential.round_exponents); equal tasks: trial j of
                    every task in round j
  RoundBuffer       holds finished units until every unit of the next round is in, then feeds it
  replay_recorded   the verdict a gated run reached, recomputed from its records (what `check` shows)

A unit's value on each side is the mean success of the copies that side recorded (an errored episode
is a failure): the candidate's unit is compared with the baseline's unit, never one copy with a mean.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mibot_eval.results.records import EpisodeRecord
from mibot_eval.results.stats.sequential import SequentialGate, round_exponents

ORDER = "proportional_rounds"


def unit_key(record: EpisodeRecord) -> str:
    """The unit a record belongs to: the key of its first deterministic copy, else its own key."""
    return str((record.get("metrics") or {}).get("repeat_of") or record.get("key"))


def stratum_of(key: str) -> str:
    """The task of an episode key suite/task_id/trial: suite/task_id."""
    return key.rsplit("/", 1)[0]


def success(record: EpisodeRecord) -> float:
    return float(record.get("status", "ok") == "ok" and record.get("success") is True)


def build_rounds(units: Sequence[str]) -> list[list[tuple[str, str, float]]]:
    """Rounds of (unit key, task, exponent) from the matched units in plan order: R = min_k n_k rounds,
    round r holding task k's units floor(r n_k / R) .. floor((r + 1) n_k / R) - 1 (tasks in plan
    order), so every round holds every task in proportion to its size."""
    by_task: dict[str, list[str]] = {}
    for key in units:
        by_task.setdefault(stratum_of(key), []).append(key)
    if not by_task:
        return []
    total = sum(len(v) for v in by_task.values())
    weights = {task: len(v) / total for task, v in by_task.items()}
    n_rounds = min(len(v) for v in by_task.values())
    rounds = []
    for r in range(n_rounds):
        members = {task: keys[r * len(keys) // n_rounds:(r + 1) * len(keys) // n_rounds]
                   for task, keys in by_task.items()}
        exponents = round_exponents({t: len(k) for t, k in members.items()}, weights)
        rounds.append([(key, task, exponents[task]) for task, keys in members.items() for key in keys])
    return rounds


class RoundBuffer:
    """Feeds a SequentialGate complete rounds in order. members: unit key -> the episode keys of its
    copies that must be recorded before the unit counts; baseline: unit key -> the baseline's value."""

    def __init__(self, gate: SequentialGate, rounds: list[list[tuple[str, str, float]]],
                 members: Mapping[str, Iterable[str]], baseline: Mapping[str, float]) -> None:
        self.gate, self.rounds, self.baseline = gate, rounds, baseline
        self.members = {u: frozenset(keys) for u, keys in members.items()}
        self.unit_of = {key: u for u, keys in self.members.items() for key in keys}
        self.round_of = {u: r for r, units in enumerate(rounds) for u, _, _ in units}
        self.missing = [len(units) for units in rounds]  # units of each round not yet complete
        self.outcomes: dict[str, dict[str, float]] = defaultdict(dict)
        self.next_round = 0

    @property
    def waiting(self) -> int:
        """Recorded episodes of units the gate has not read (finished early, or after the stop)."""
        return sum(len(v) for u, v in self.outcomes.items() if self.round_of[u] >= self.next_round)

    def add(self, record: EpisodeRecord) -> str | None:
        """One recorded candidate episode; the gate's decision once there is one."""
        key = str(record.get("key"))
        unit = self.unit_of.get(key)
        if unit is not None and unit in self.round_of and key not in self.outcomes[unit]:
            self.outcomes[unit][key] = success(record)
            if len(self.outcomes[unit]) == len(self.members[unit]):
                self.missing[self.round_of[unit]] -= 1
                self._feed()
        return self.gate.decision

    def _value(self, unit: str) -> float:
        values = self.outcomes[unit].values()
        return sum(values) / len(values)

    def _feed(self) -> None:
        while (self.gate.decision is None and self.next_round < len(self.rounds)
               and self.missing[self.next_round] == 0):
            units = self.rounds[self.next_round]
            self.gate.update_round([(self._value(u), self.baseline[u], a) for u, _, a in units])
            self.next_round += 1


def encode_trials(trials: Iterable[int]) -> str:
    """Sorted ints as ranges: 0-49,60,62-63."""
    runs: list[list[int]] = []
    for t in sorted(set(trials)):
        if runs and t == runs[-1][1] + 1:
            runs[-1][1] = t
        else:
            runs.append([t, t])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def decode_trials(text: str) -> list[int]:
    trials: list[int] = []
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        trials.extend(range(int(low), int(high or low) + 1))
    return trials


def encode_units(units: Sequence[str]) -> dict[str, str]:
    """Matched units in plan order as {task: trial ranges} (units of a task are in trial order)."""
    by_task: dict[str, list[int]] = {}
    for key in units:
        by_task.setdefault(stratum_of(key), []).append(int(key.rsplit("/", 1)[1]))
    return {task: encode_trials(trials) for task, trials in by_task.items()}


def decode_units(encoded: Mapping[str, str]) -> list[str]:
    return [f"{task}/{t}" for task, text in encoded.items() for t in decode_trials(text)]


def replay_recorded(info: Mapping[str, Any], candidate: Iterable[EpisodeRecord],
                    baseline: Iterable[EpisodeRecord]) -> SequentialGate | None:
    """The gate a run recorded in its manifest (`info` = manifest["gate"]), recomputed from the
    candidate's and the baseline's records: the same rounds, so the same verdict at the same round.
    None when the entry does not describe the rounds (a gate recorded before they existed)."""
    if info.get("order") != ORDER or not isinstance(info.get("units"), Mapping):
        return None
    units = decode_units(info["units"])
    suites = set(info.get("matched_suites") or [])
    base_groups: dict[str, list[float]] = defaultdict(list)
    for record in baseline:
        if record.get("suite") in suites:
            base_groups[unit_key(record)].append(success(record))
    members: dict[str, set[str]] = defaultdict(set)
    records = [r for r in candidate if r.get("suite") in suites]
    for record in records:
        members[unit_key(record)].add(str(record.get("key")))
    wanted = [u for u in units if u in base_groups]
    gate = SequentialGate(float(info["alpha"]), float(info["max_drop_pp"]) / 100)
    buffer = RoundBuffer(gate, build_rounds(wanted), {u: members.get(u, {u}) for u in wanted},
                         {u: sum(v) / len(v) for u, v in base_groups.items()})
    for record in records:
        buffer.add(record)
    return gate
