"""The run's execution and latency facts (measure/latency.py `latency_summary`) as the report's
markdown section."""

from __future__ import annotations

from typing import Any

from mibot_eval.results.measure.latency import PERCENTILES


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
