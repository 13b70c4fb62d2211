"""Execution and latency facts of a run, from its episode records (the scheduler's metrics).

latency_summary(records) -> dict    inference latency percentiles, chunk switches where the robot
                                    idled, idle/dropped actions per episode, the execution mode
latency_markdown(summary) -> str    the same as a markdown section for `mibot-eval report`

Terms (see mibot_eval.run.scheduler): at a chunk switch Δtc = the committed window actions left when the
request fired (committed_steps), Δtinf = the delay in control steps (delay_steps).
* idle switch: delay_steps > committed_steps, the simulated robot held (async runs).
* late switch: the measured wall-clock latency exceeded the committed time committed_steps /
  control_hz, i.e. on this machine, in real time, the robot would have idled. In sync runs nothing is
  committed, so every switch is late: the robot stands still during every inference.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from mibot_eval.results.records import EpisodeRecord

PERCENTILES = (50, 95, 99)


def _ok(records: Sequence[EpisodeRecord]) -> list[EpisodeRecord]:
    return [r for r in records if r.get("status", "ok") == "ok" and isinstance(r.get("metrics"), dict)]


def _requests(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Per request facts; records written before these lists existed read as sync requests."""
    latencies = [float(x) for x in metrics.get("latencies_s") or []]
    n = len(latencies)
    outcomes = metrics.get("request_outcomes") or (["first"] + ["switch"] * (n - 1) if n else [])
    delays = metrics.get("delay_steps") or [0] * n
    committed = metrics.get("committed_steps") or [0] * n
    prefixes = metrics.get("prefix_lengths") or [0] * n
    return [
        {"latency_s": lat, "outcome": out, "delay": int(d), "committed": int(c), "prefix": int(p)}
        for lat, out, d, c, p in zip(latencies, outcomes, delays, committed, prefixes, strict=False)
    ]


def _dist(values: list[float], scale: float = 1.0, digits: int = 2) -> dict[str, float] | None:
    if not values:
        return None
    arr = np.asarray(values, dtype=np.float64) * scale
    out = {f"p{p}": round(float(np.percentile(arr, p)), digits) for p in PERCENTILES}
    out["mean"] = round(float(arr.mean()), digits)
    out["max"] = round(float(arr.max()), digits)
    return out


def _fraction(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def latency_summary(records: Sequence[EpisodeRecord]) -> dict[str, Any]:
    """Summarise the execution of a run (or of any set of episode records)."""
    ok = _ok(records)
    executions = {
        json.dumps(r.get("execution") or {}, sort_keys=True): r.get("execution") or {} for r in ok
    }
    execution: Any = next(iter(executions.values())) if len(executions) == 1 else list(
        executions.values()
    )
    latencies: list[float] = []
    switch_delays: list[int] = []
    switches = idle_switches = late_switches = late_known = prefix_requests = 0
    idle_steps, dropped, superseded, discarded, executed = [], [], 0, 0, 0
    for record in ok:
        metrics = record["metrics"]
        hz = metrics.get("control_hz") or (record.get("execution") or {}).get("control_hz")
        for req in _requests(metrics):
            latencies.append(req["latency_s"])
            prefix_requests += int(req["prefix"] > 0)
            if req["outcome"] != "switch":
                continue
            switches += 1
            switch_delays.append(req["delay"])
            idle_switches += int(req["delay"] > req["committed"])
            if hz:
                late_known += 1
                late_switches += int(req["latency_s"] > req["committed"] / float(hz))
            elif req["committed"] == 0:  # nothing committed: any latency is late
                late_known += 1
                late_switches += int(req["latency_s"] > 0)
        idle_steps.append(int(metrics.get("idle_steps", 0)))
        dropped.append(int(metrics.get("dropped_actions", 0)))
        superseded += int(metrics.get("superseded_actions", 0))
        discarded += int(metrics.get("discarded_requests", 0))
        executed += int(metrics.get("executed_actions", 0))
    return {
        "execution": execution,
        "episodes": len(ok),
        "requests": len(latencies),
        "latency_ms": _dist(latencies, scale=1000.0),
        "chunk_switches": switches,
        "idle_switches": idle_switches,
        "idle_switch_fraction": _fraction(idle_switches, switches),
        "late_switches": late_switches,
        "late_switch_fraction": _fraction(late_switches, late_known),
        "switch_delay_steps": _dist([float(d) for d in switch_delays]),
        "idle_steps_per_episode": _dist([float(x) for x in idle_steps]),
        "idle_steps_total": int(sum(idle_steps)),
        "executed_actions_total": executed,
        "dropped_actions_per_episode": _dist([float(x) for x in dropped]),
        "superseded_actions_total": superseded,
        "discarded_requests_total": discarded,
        "prefix_requests": prefix_requests,
    }
