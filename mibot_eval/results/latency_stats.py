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
from typing import Any

import numpy as np

PERCENTILES = (50, 95, 99)


def _ok(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
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


def latency_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
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


def _describe_execution(execution: Any) -> str:
    if isinstance(execution, list):
        return "mixed: " + "; ".join(_describe_execution(e) for e in execution)
    if not execution:
        return "unknown"
    mode = execution.get("mode", "?")
    k = execution.get("replan_steps")
    if mode != "async":
        return f"{mode} (replan every {k} steps; the simulator waits for each inference)"
    if execution.get("delay") == "measured":
        delay = f"measured delay at {execution.get('control_hz')} Hz"
    else:
        delay = f"fixed delay {execution.get('delay_steps')} steps"
        if execution.get("control_hz"):
            delay += f" (= {1000 * execution['delay_steps'] / execution['control_hz']:.0f} ms "
            delay += f"at {execution['control_hz']:g} Hz)"
    prefix = execution.get("prefix")
    prefix_text = {True: "true", False: "false"}.get(prefix, str(prefix))
    return f"async (window k={k}, {delay}, prefix: {prefix_text})"


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}{unit}"
    return f"{value}{unit}"


def latency_markdown(summary: dict[str, Any]) -> str:
    """A markdown section: execution mode and parameters, then a metric | value table."""
    lat = summary.get("latency_ms") or {}
    idle = summary.get("idle_steps_per_episode") or {}
    dropped = summary.get("dropped_actions_per_episode") or {}
    delays = summary.get("switch_delay_steps") or {}

    def pct(fraction: float | None) -> str:
        return "-" if fraction is None else f"{100 * fraction:.1f}%"

    rows = [
        ("episodes / inference requests", f"{summary.get('episodes', 0)} / {summary.get('requests', 0)}"),
        ("inference latency p50 / p95 / p99",
         " / ".join(_fmt(lat.get(f"p{p}"), " ms") for p in PERCENTILES) if lat else "-"),
        ("chunk switches", _fmt(summary.get("chunk_switches"))),
        ("switches where the robot idled (Δtinf > Δtc, simulated)",
         f"{summary.get('idle_switches', 0)} ({pct(summary.get('idle_switch_fraction'))})"),
        ("switches late at this machine's latency",
         f"{summary.get('late_switches', 0)} ({pct(summary.get('late_switch_fraction'))})"),
        ("delay per switch, mean / max (steps)",
         f"{_fmt(delays.get('mean'))} / {_fmt(delays.get('max'))}" if delays else "-"),
        ("idle steps per episode, mean / max",
         f"{_fmt(idle.get('mean'))} / {_fmt(idle.get('max'))}" if idle else "-"),
        ("dropped (elapsed) actions per episode, mean",
         _fmt(dropped.get("mean")) if dropped else "-"),
        ("superseded actions / discarded requests (total)",
         f"{summary.get('superseded_actions_total', 0)} / {summary.get('discarded_requests_total', 0)}"),
        ("requests sent with a committed-action prefix", _fmt(summary.get("prefix_requests"))),
    ]
    lines = [
        "### Execution and latency",
        "",
        f"Execution: {_describe_execution(summary.get('execution'))}",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in rows],
    ]
    return "\n".join(lines) + "\n"
