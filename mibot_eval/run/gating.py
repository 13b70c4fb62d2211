"""`run --gate-against BASELINE`: dispatch the plan in rounds that cover every task and stop as soon as
the sequential paired gate (results/stats/sequential.py) has decided the candidate against a baseline run.

Only units matched to the baseline count (same suite, key and protocol hash; WidowX's deterministic
copies form one unit, on both sides). The dispatch order is fixed by the plan before anything runs
(results/measure/gate_rounds.py: every task in every round; LIBERO: trial j of every task in round j), and the
gate reads finished units in that order, never in the order they finish (failures run to the step
limit and finish last: reading in completion order would favour the candidate with many workers). A
resumed run's recorded episodes go through the same buffer, whatever order they were recorded in. A
stopped run is an ordinary run: rerunning without the option completes the protocol, and then the
gate's verdict no longer stands (`supersede_completed`: the fixed-N tests of `check` decide).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mibot_eval.errors import UserError
from mibot_eval.results.measure.gate_rounds import (
    ORDER,
    RoundBuffer,
    build_rounds,
    decode_units,
    encode_units,
    success,
    unit_key,
)
from mibot_eval.results.records import EpisodeRecord
from mibot_eval.results.stats.sequential import SequentialGate
from mibot_eval.results.store import RunStore
from mibot_eval.types import EpisodeSpec

if TYPE_CHECKING:
    from mibot_eval.run.planning import SuitePlan


class GateDecided(BaseException):
    """The sequential gate decided: the backend stops (what is recorded stays recorded)."""


class GateSession:
    """The baseline's units, the plan's rounds and the gate's state during one run."""

    def __init__(self, baseline: str | Path, plans: Sequence[SuitePlan], alpha: float,
                 max_drop_pp: float) -> None:
        if not 0 < alpha < 1:
            raise UserError(f"--alpha must be between 0 and 1, got {alpha}")
        if not 0 <= max_drop_pp < 100:
            raise UserError(f"--max-drop must be in [0, 100) percentage points, got {max_drop_pp}")
        path = Path(baseline)
        store = RunStore(path)
        if not path.is_dir() or not store.episodes_path.is_file():
            raise UserError(f"--gate-against {baseline}: not a run folder with recorded episodes")
        manifest = store.read_manifest() or {}
        theirs = {name: entry.get("hash") for name, entry in (manifest.get("suites") or {}).items()}
        records = store.records()
        for record in records:
            theirs.setdefault(str(record.get("suite")), record.get("protocol_hash"))
        mine = {p.protocol.name: p.protocol.protocol_hash() for p in plans}
        self.matched_suites = sorted(s for s, h in mine.items() if theirs.get(s) == h)
        if not self.matched_suites:
            raise UserError(f"--gate-against {baseline}: no suite of this run has the baseline's protocol "
                            f"(this run: {mine}; baseline: {theirs})")
        self.baseline = str(path)
        groups: dict[str, list[float]] = {}
        for record in records:
            if record.get("suite") in self.matched_suites:
                groups.setdefault(unit_key(record), []).append(success(record))
        baseline_units = {u: sum(v) / len(v) for u, v in groups.items()}
        self.specs = [s for p in plans for s in p.episodes]
        members = _plan_units(plans, set(self.matched_suites))
        matched = [u for u in members if u in baseline_units]
        if not matched:
            raise UserError(f"--gate-against {baseline}: the baseline recorded none of this run's episodes "
                            f"of {', '.join(self.matched_suites)}")
        self.units = decode_units(encode_units(matched))  # the order replay_recorded rebuilds
        self.rounds = build_rounds(self.units)
        self.gate = SequentialGate(alpha, max_drop_pp / 100)
        self.buffer = RoundBuffer(self.gate, self.rounds, {u: members[u] for u in self.units},
                                  baseline_units)
        position = {key: i for i, key in enumerate(
            k for r in self.rounds for u, _, _ in r for k in members[u])}
        self._position = {s.key: position.get(s.key, len(position) + i) for i, s in enumerate(self.specs)}

    def order(self, specs: Sequence[EpisodeSpec]) -> list[EpisodeSpec]:
        """The dispatch order: the rounds' episodes (a unit's copies together), then the episodes the
        gate does not read, in plan order."""
        return sorted(specs, key=lambda s: self._position.get(s.key, len(self._position)))

    def observe(self, record: EpisodeRecord) -> str | None:
        """One recorded candidate episode (any order); the decision once there is one."""
        if record.get("suite") not in self.matched_suites:
            return self.gate.decision
        return self.buffer.add(record)

    def on_record(self, record: EpisodeRecord) -> None:
        """The Ledger's hook: stop the run once decided."""
        if self.gate.decision is None and self.observe(record) is not None:
            raise GateDecided(self.gate.decision)

    def summary(self, planned: int, recorded: int) -> dict[str, Any]:
        decided = self.gate.decision is not None
        return {**self.gate.as_dict(), "baseline": self.baseline, "order": ORDER,
                "matched_suites": self.matched_suites, "units": encode_units(self.units),
                "planned_rounds": len(self.rounds), "planned_units": len(self.units),
                "planned_episodes": planned, "recorded_episodes": recorded,
                "recorded_not_read": self.buffer.waiting,
                "stopped_early": decided and recorded < planned,
                "episodes_saved": max(0, planned - recorded) if decided else 0,
                "reason": self._reason()}

    def _reason(self) -> str:
        g = self.gate
        low, high = (round(100 * b, 1) for b in g.confidence_bounds())
        where = (f"after {g.rounds} of {len(self.rounds)} rounds ({g.n} matched units); difference "
                 f"in [{low:+g}, {high:+g}] pp (confidence sequence, each bound {100 * (1 - g.alpha):g}%)")
        if g.decision == "regressed":
            return (f"regressed: worse than the baseline by more than {100 * g.max_drop:g} pp (wealth "
                    f"{g.wealth_regressed:.1f} >= 1/alpha = {g.threshold:g}) {where}")
        if g.decision == "not_worse":
            return (f"not worse than the baseline by more than {100 * g.max_drop:g} pp (wealth "
                    f"{g.wealth_not_worse:.1f} >= 1/alpha = {g.threshold:g}) {where}")
        return f"inconclusive: neither verdict reached 1/alpha = {g.threshold:g} {where}"


def _plan_units(plans: Sequence[SuitePlan], suites: set[str]) -> dict[str, list[str]]:
    """Unit key -> its copies' episode keys, in plan order, for the plan's episodes of `suites`."""
    units: dict[str, list[str]] = {}
    for plan in plans:
        if plan.protocol.name not in suites:
            continue
        for spec in plan.episodes:
            units.setdefault(plan.repeat_of.get(spec.key) or spec.key, []).append(spec.key)
    return units


def supersede_completed(store: RunStore, planned_keys: set[str]) -> None:
    """After a run without --gate-against: once the protocol is complete (every episode of this plan
    and every unit the gate planned is recorded), an earlier sequential verdict no longer decides; it
    moves to `gate_superseded` and `check`'s fixed-N tests decide."""
    manifest = store.read_manifest() or {}
    gate = manifest.get("gate")
    if not gate:
        return
    recorded = store.finished_keys()
    gate_units = set(decode_units(gate.get("units") or {}))
    if not planned_keys <= recorded or not gate_units <= recorded:
        return
    manifest["gate_superseded"] = {**gate, "superseded": "a rerun without --gate-against completed the "
                                   "protocol: the fixed-N tests of `check` decide"}
    del manifest["gate"]
    store.write_manifest(manifest)
