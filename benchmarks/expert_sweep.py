"""Success versus inference delay with real outcomes: the scripted expert (tests/scripted_expert.py)
on LIBERO's real simulator, async execution with fixed delays, through the harness.

    python benchmarks/expert_sweep.py [--tasks 6,8] [--episodes 5] [--delays 0,2,4,6,8]
                                      [--max-steps N] [--results results/expert-sweep] [--check-sync]

Each delay is an ordinary `mibot_eval.evaluate` run (`--execution async --delay-steps d`, its own
resumable folder under --results, records with metrics.motion); the runner's adapters are handed to
the expert, which plans every chunk from the privileged scene of its request's observation. Prints,
per delay, success with its 95% Wilson interval, the mean seam jump, the time to success and the
idle steps, and writes expert_sweep.csv / expert_sweep.png with the writer and plot of
mibot_eval.commands.latency_sweep.
--check-sync also runs the official sync protocol and checks that d = 0 executed the same episodes
(equal trace hashes), as mibot_eval.run.scheduler promises.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mibot_eval  # noqa: E402
from mibot_eval.commands.arg_types import int_list  # noqa: E402
from mibot_eval.commands.latency_sweep import plot, sweep_row, write_csv  # noqa: E402
from mibot_eval.config import load_suite  # noqa: E402
from tests.scripted_expert import ScriptedExpert, expert_adapters  # noqa: E402

SUITE = "libero_object"
NAME = "scripted-expert"


def run(expert: ScriptedExpert, args: argparse.Namespace, **options: Any) -> Any:
    with expert_adapters(expert):
        return mibot_eval.evaluate(expert, suites=[SUITE], tasks=args.tasks, episodes=args.episodes,
                                   results_dir=args.results, name=NAME, max_steps=args.max_steps,
                                   progress=False, **options)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict[str, Any]], per_task: dict[int, dict[int, tuple[int, int]]]) -> str:
    tasks = sorted({t for counts in per_task.values() for t in counts})
    head = ["delay", "ms", "success", "95% Wilson", *[f"task {t}" for t in tasks], "seam jump",
            "time to success s", "idle steps/ep"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        d = row["delay_steps"]
        cells = [str(d), _fmt(row["delay_ms"], 0), f"{row['successes']}/{row['episodes']} "
                 f"({100 * row['success_rate']:.0f}%)",
                 f"[{100 * row['ci95_low']:.0f}, {100 * row['ci95_high']:.0f}]",
                 *[f"{per_task[d][t][0]}/{per_task[d][t][1]}" for t in tasks],
                 _fmt(row["seam_jump_l2"]), _fmt(row["time_to_success_s"], 2),
                 _fmt(row["idle_steps_per_episode"], 1)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int_list, default=[6, 8], help="libero_object task ids (default 6,8)")
    p.add_argument("--episodes", type=int, default=5, help="trials per task (default 5)")
    p.add_argument("--delays", type=int_list, default=[0, 2, 4, 6, 8], help="fixed delays, control steps")
    p.add_argument("--max-steps", type=int, default=None, help="default: the protocol's (280)")
    p.add_argument("--results", type=Path, default=Path("results/expert-sweep"))
    p.add_argument("--check-sync", action="store_true", help="also run sync; check it equals d = 0")
    args = p.parse_args(argv)
    control_hz = load_suite(SUITE).control_hz
    expert = ScriptedExpert()
    rows, per_task, hashes = [], {}, {}
    for delay in sorted(set(args.delays)):
        start = time.perf_counter()
        summary = run(expert, args, execution="async", execution_options={"delay_steps": delay})
        rows.append(sweep_row(SUITE, delay, control_hz, summary.run_dir, summary.records))
        counts: dict[int, list[int]] = {}
        for record in summary.records:
            wins = counts.setdefault(record["task_id"], [0, 0])
            wins[0] += int(record["status"] == "ok" and record["success"] is True)
            wins[1] += 1
            hashes.setdefault(delay, {})[record["key"]] = record["metrics"].get("trace_sha")
        per_task[delay] = {t: (w, n) for t, (w, n) in counts.items()}
        print(f"delay {delay}: {rows[-1]['successes']}/{rows[-1]['episodes']} successes "
              f"({time.perf_counter() - start:.0f} s, {summary.run_dir})", file=sys.stderr, flush=True)
    args.results.mkdir(parents=True, exist_ok=True)
    write_csv(args.results / "expert_sweep.csv", rows)
    tasks = ",".join(str(t) for t in args.tasks)
    plot(args.results / "expert_sweep.png", rows, f"scripted expert on {SUITE} tasks {tasks}: success vs "
         "inference delay (async, no prefix)", control_hz)
    print(table(rows, per_task))
    print(f"\n{args.results / 'expert_sweep.csv'}, {args.results / 'expert_sweep.png'}")
    if args.check_sync and 0 in hashes:
        sync = run(expert, args)
        same = {r["key"]: r["metrics"].get("trace_sha") for r in sync.records} == hashes[0]
        print(f"sync: {sum(r['success'] is True for r in sync.records)}/{len(sync.records)} successes; "
              f"async d = 0 executed the same episodes: {same}")
        if not same:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
