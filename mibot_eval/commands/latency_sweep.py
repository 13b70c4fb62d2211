"""`mibot-eval latency-sweep`: success rate versus inference delay, i.e. how much latency a
checkpoint absorbs under asynchronous (real-time) execution.

Each delay d in 0..D control steps is an ordinary async run with a fixed delay (RunRequest with
execution="async" and execution_options={"delay_steps": d, ...}): it has its own run folder, resumes
like any run, and shows up in `mibot-eval report`. The policy is loaded once for all delays. Per suite
the sweep writes <results>/latency-sweep__<checkpoint>__<suite>/latency_sweep.csv (one row per delay)
and latency_sweep.png: success rate with 95% Wilson intervals, the seam jump (mean |a_t - a_{t-1}| at
chunk switches) and the time to success with 95% bootstrap bands over episodes, versus delay (steps
and ms). The motion metrics are documented in mibot_eval/run/motion.py.
d = 0 executes exactly the sync protocol's actions (see mibot_eval.run.scheduler).
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mibot_eval.commands.arg_types import int_list as _int_list
from mibot_eval.commands.arg_types import str_list as _str_list
from mibot_eval.errors import UserError
from mibot_eval.results.records import EpisodeRecord
from mibot_eval.results.stats.rates import wilson_interval

if TYPE_CHECKING:
    from mibot_eval.config import CheckpointInfo

CSV_NAME = "latency_sweep.csv"
PNG_NAME = "latency_sweep.png"
CSV_FIELDS = (
    "suite", "delay_steps", "delay_ms", "episodes", "successes", "success_rate", "ci95_low",
    "ci95_high", "errors", "idle_steps_per_episode", "idle_switch_fraction",
    "dropped_actions_per_episode", "latency_p50_ms", "latency_p95_ms",
    "seam_jump_l2", "seam_jump_l2_ci95_low", "seam_jump_l2_ci95_high",
    "plan_vs_executed_l2", "plan_vs_executed_l2_ci95_low", "plan_vs_executed_l2_ci95_high",
    "seam_vs_old_chunk_l2", "seam_vs_old_chunk_l2_ci95_low", "seam_vs_old_chunk_l2_ci95_high",
    "time_to_success_s", "time_to_success_s_ci95_low", "time_to_success_s_ci95_high", "prefix", "run",
)
MOTION_BANDS = ("seam_jump_l2", "plan_vs_executed_l2", "seam_vs_old_chunk_l2", "time_to_success_s")


@dataclass
class SweepRequest:
    checkpoint: str
    suites: list[str] = field(default_factory=list)
    like: str | None = None  # an unlisted checkpoint inherits this listed one's suites and robot type
    tasks: list[int] | None = None
    episodes_per_task: int | None = None
    max_steps: int | None = None
    delays: list[int] | None = None  # None: 0..max_delay
    max_delay: int | None = None  # None: the largest replan_steps of the suites (k)
    results_dir: Path = Path("results")
    prefix: bool | None = None  # None: use committed-action prefixes if the checkpoint accepts them
    control_hz: float | None = None  # None: each suite's control_hz
    render: str = "lazy"
    device: str | None = None


def sweep_delays(max_delay: int | None, delays: list[int] | None, default_max: int) -> list[int]:
    if delays is not None:
        if not delays or any(d < 0 for d in delays):
            raise UserError(f"--delays must be integers >= 0, got {delays}")
        return sorted(set(delays))
    top = default_max if max_delay is None else max_delay
    if top < 0:
        raise UserError(f"--max-delay must be >= 0, got {top}")
    return list(range(top + 1))


def sweep_dir(results_dir: Path, checkpoint: str, suite: str) -> Path:
    from mibot_eval.run.planning import slug

    return Path(results_dir) / f"latency-sweep__{slug(checkpoint)}__{slug(suite)}"


def sweep_row(suite: str, delay: int, control_hz: float | None, run_dir: Path,
              records: list[EpisodeRecord]) -> dict[str, Any]:
    """One CSV row: the suite's episodes of the run at this delay."""
    from mibot_eval.results.measure.latency import latency_summary

    mine = [r for r in records if r.get("suite") == suite]
    ok = [r for r in mine if r.get("status", "ok") == "ok"]
    n, wins = len(mine), sum(1 for r in ok if r.get("success") is True)  # an error is a failure
    low, high = wilson_interval(wins, n)
    summary = latency_summary(ok)
    latency = summary.get("latency_ms") or {}
    execution = summary.get("execution")
    prefix = execution.get("prefix") if isinstance(execution, dict) else None
    if isinstance(prefix, bool):
        prefix = str(prefix).lower()

    def mean(key: str) -> float | None:
        dist = summary.get(key)
        return None if not dist else dist["mean"]

    bands = {name: motion_band(ok, name) for name in MOTION_BANDS}
    return {
        **{f"{name}{part}": value for name, band in bands.items()
           for part, value in zip(("", "_ci95_low", "_ci95_high"), band, strict=True)},
        "suite": suite,
        "delay_steps": delay,
        "delay_ms": round(1000.0 * delay / control_hz, 1) if control_hz else None,
        "episodes": n,
        "successes": wins,
        "success_rate": round(wins / n, 4) if n else None,
        "ci95_low": round(low, 4),
        "ci95_high": round(high, 4),
        "errors": len(mine) - len(ok),
        "idle_steps_per_episode": mean("idle_steps_per_episode"),
        "idle_switch_fraction": summary.get("idle_switch_fraction"),
        "dropped_actions_per_episode": mean("dropped_actions_per_episode"),
        "latency_p50_ms": latency.get("p50"),
        "latency_p95_ms": latency.get("p95"),
        "prefix": prefix,
        "run": run_dir.name,
    }


def motion_band(records: list[EpisodeRecord], name: str) -> tuple[float | None, ...]:
    """(mean, 95% bootstrap low, high) of metrics.motion[name] over the episodes that have it."""
    from mibot_eval.results.stats.bootstrap import bootstrap_means, percentile_interval

    values = [float(v) for r in records
              if (v := ((r.get("metrics") or {}).get("motion") or {}).get(name)) is not None]
    if not values:
        return None, None, None
    low, high = percentile_interval(bootstrap_means([values])[:, 0])
    return round(sum(values) / len(values), 6), round(low, 6), round(high, 6)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in CSV_FIELDS})
    tmp.replace(path)


def plot(path: Path, rows: list[dict[str, Any]], title: str, control_hz: float | None) -> None:
    """Success rate (95% Wilson intervals), seam discontinuity and time to success (95% bootstrap
    bands over episodes) versus delay steps, in one figure; a top axis in ms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["episodes"]]
    fig, axes = plt.subplots(3, 1, figsize=(6.4, 7.8), dpi=120, sharex=True)
    ax, seam_ax, time_ax = axes
    if rows:
        xs = [r["delay_steps"] for r in rows]
        ys = [100 * r["success_rate"] for r in rows]
        lower = [y - 100 * r["ci95_low"] for y, r in zip(ys, rows, strict=True)]
        upper = [100 * r["ci95_high"] - y for y, r in zip(ys, rows, strict=True)]
        ax.errorbar(xs, ys, yerr=[lower, upper], marker="o", capsize=3, label="success (95% CI)")
        idle = [r["idle_steps_per_episode"] or 0.0 for r in rows]
        ax2 = ax.twinx()
        ax2.plot(xs, idle, color="tab:gray", linestyle="--", marker=".", label="idle steps / episode")
        ax2.set_ylabel("idle steps / episode (dashed)", color="tab:gray")
        ax2.set_ylim(0, max(1.0, max(idle)) * 1.1)
        ax.set_xticks(xs)
        _band(seam_ax, rows, "seam_jump_l2", "tab:red", "seam jump |a_t - a_{t-1}|")
        _band(seam_ax, rows, "plan_vs_executed_l2", "tab:purple", "new plan vs executed, elapsed steps")
        seam_ax.legend(fontsize=7, loc="upper left")
        _band(time_ax, rows, "time_to_success_s", "tab:green", "time to success")
        title += f"\n(n = {rows[0]['episodes']} episodes per delay; bars: Wilson, bands: bootstrap 95%)"
    fig.suptitle(title, fontsize=9)
    time_ax.set_xlabel("inference delay d (control steps)")
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(-5, 105)
    seam_ax.set_ylabel("seam discontinuity\n(action units)")
    time_ax.set_ylabel("time to success (s)\n(successful episodes)")
    for axis in axes:
        axis.grid(True, alpha=0.3)
    if control_hz:
        top = ax.secondary_xaxis(
            "top", functions=(lambda s: s * 1000.0 / control_hz, lambda ms: ms * control_hz / 1000.0)
        )
        top.set_xlabel(f"delay (ms at {control_hz:g} Hz)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _band(axis: Any, rows: list[dict[str, Any]], name: str, color: str, label: str) -> None:
    points = [(r["delay_steps"], r[name], r[f"{name}_ci95_low"], r[f"{name}_ci95_high"]) for r in rows
              if r.get(name) is not None]
    if not points:
        return
    xs, ys, lows, highs = zip(*points, strict=True)
    axis.plot(xs, ys, marker="o", color=color, label=label)
    axis.fill_between(xs, lows, highs, color=color, alpha=0.2)


def run_sweep(request: SweepRequest, policy: Any = None) -> dict[str, Path]:
    """Run (or resume) every delay and write each suite's CSV and PNG; returns suite -> folder."""
    from mibot_eval.config import load_suite, resolve_checkpoint
    from mibot_eval.policy.checkpoint import resolve_checkpoint_dir
    from mibot_eval.policy.load import load_policy
    from mibot_eval.results.store import RunStore
    from mibot_eval.run.planning import RunRequest, no_suites_message
    from mibot_eval.run.runner import execute

    info = resolve_checkpoint(request.checkpoint, like=request.like)
    suites = list(request.suites or info.suites)
    if not suites:
        raise UserError(no_suites_message(info))
    protocols = {name: load_suite(name) for name in suites}
    delays = sweep_delays(request.max_delay, request.delays,
                          max(p.replan_steps for p in protocols.values()))
    if policy is None:
        policy = load_policy(resolve_checkpoint_dir(info), request.device)
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in suites}
    folders: dict[str, Path] = {}
    for delay in delays:
        options = {"delay_steps": delay, "prefix": request.prefix, "control_hz": request.control_hz}
        run_dir = execute(RunRequest(
            checkpoint=request.checkpoint, suites=suites, tasks=request.tasks,
            episodes_per_task=request.episodes_per_task, results_dir=request.results_dir,
            execution="async", max_steps=request.max_steps, video="none", render=request.render,
            device=request.device, execution_options={k: v for k, v in options.items() if v is not None},
            like=request.like,
        ), policy=policy, checkpoint=info)
        records = RunStore(run_dir).records()
        for name, protocol in protocols.items():
            hz = request.control_hz or protocol.control_hz
            rows[name].append(sweep_row(name, delay, hz, run_dir, records))
            # rewritten after every delay: partial results stay visible
            folders[name] = _write_outputs(request, info, name, rows[name], hz)
    return folders


def _write_outputs(request: SweepRequest, info: CheckpointInfo, suite: str, rows: list[dict[str, Any]],
                   control_hz: float | None) -> Path:
    from mibot_eval.run.planning import checkpoint_label

    checkpoint = info.name
    folder = sweep_dir(request.results_dir, checkpoint_label(info), suite)
    write_csv(folder / CSV_NAME, rows)
    prefix = rows[0]["prefix"] if rows else None
    plot(folder / PNG_NAME, rows, f"{checkpoint} on {suite}: success vs inference delay "
         f"(async, prefix: {prefix})", control_hz)
    return folder


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `latency-sweep` command to the CLI."""
    p = subparsers.add_parser(
        "latency-sweep",
        help="success rate vs inference delay (async execution, fixed delays 0..D)",
        description="Run the same episodes with asynchronous execution at fixed inference delays of "
        "0..D control steps (each delay is a normal, resumable run folder) and write success vs delay "
        f"as {CSV_NAME} and {PNG_NAME} into <results>/latency-sweep__<checkpoint>__<suite>/. "
        "Delay 0 executes exactly the sync protocol's actions.",
    )
    p.add_argument("--checkpoint", "-c", required=True,
                   help="a name from checkpoints.yaml (e.g. tiny), any hub id owner/name, or a local "
                   "folder (as for run; one not in checkpoints.yaml needs --suites or --like)")
    p.add_argument("--suites", "-s", type=_str_list, default=[],
                   help="comma-separated suites (default: the checkpoint's suites)")
    p.add_argument("--like", default=None, metavar="NAME",
                   help="an unlisted checkpoint inherits this listed one's suites, robot type and "
                   "reported numbers (as for run)")
    p.add_argument("--tasks", type=_int_list, default=None, help="task ids, e.g. 0,3 (default: all)")
    p.add_argument("--episodes", type=int, default=None,
                   help="trials per task (default: the protocol's, 50 for LIBERO)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="override the protocol's max steps (non-official)")
    p.add_argument("--max-delay", type=int, default=None, metavar="D",
                   help="sweep delays 0..D control steps (default: the suite's replan_steps k)")
    p.add_argument("--delays", type=_int_list, default=None,
                   help="explicit delays instead of 0..D, e.g. 0,2,4,8")
    p.add_argument("--control-hz", type=float, default=None, metavar="HZ",
                   help="control frequency for the ms axis and the latency reports "
                   "(default: the suite's control_hz)")
    p.add_argument("--no-prefix", action="store_true",
                   help="do not pass committed actions as a prefix even if the checkpoint accepts them")
    p.add_argument("--results", type=Path, default=Path("results"), help="results folder")
    p.add_argument("--render", choices=("lazy", "eager"), default="lazy",
                   help="render cameras only when the policy reads them (default) or every step")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.set_defaults(handler=_cmd_sweep)


def _cmd_sweep(args: argparse.Namespace) -> int:
    request = SweepRequest(
        checkpoint=args.checkpoint, suites=args.suites, tasks=args.tasks, like=args.like,
        episodes_per_task=args.episodes, max_steps=args.max_steps, delays=args.delays,
        max_delay=args.max_delay, results_dir=args.results,
        prefix=False if args.no_prefix else None, control_hz=args.control_hz, render=args.render,
        device=args.device,
    )
    for suite, folder in run_sweep(request).items():
        print(f"{suite}: {folder / CSV_NAME}, {folder / PNG_NAME}")
        print((folder / CSV_NAME).read_text(encoding="utf-8"), end="")
    return 0
