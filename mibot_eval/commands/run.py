"""`mibot-eval run`: evaluate a checkpoint (the Python API's `evaluate` does the work), then
publish the run's report and leaderboard rows and exit with the run's code (mibot_eval/exit_codes.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mibot_eval import exit_codes
from mibot_eval.commands.arg_types import int_list as _int_list
from mibot_eval.commands.arg_types import str_list as _str_list
from mibot_eval.errors import UserError


def _workers(text: str) -> int | str:
    """'auto' or an integer >= 0 (0: in this process)."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of workers or 'auto', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"--workers must be >= 0 (0: in this process), got {value}")
    return value

def _shard(text: str) -> tuple[int, int]:
    """'I/N': shard I (0-based) of N."""
    index, sep, count = text.partition("/")
    try:
        if not sep:
            raise ValueError(text)
        return int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N (e.g. 0/4), got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="evaluate a checkpoint on one or more suites (resumes an interrupted run)",
        description="Evaluate a checkpoint with the official protocol of each suite. Every finished "
        "episode is appended durably to <results>/<run>/episodes.jsonl; rerunning the same command "
        "resumes where it stopped (refused when the folder holds another checkpoint, protocol or "
        "runtime). One command writes a run folder at a time.",
        epilog=f"{exit_codes.help_line()}. run: 0 every selected episode recorded without error; 4 some "
        "are recorded as errors (--retry-errors reruns them); with --gate-against the gate's verdict: "
        "1 regressed, 3 inconclusive; 2 refused; 130 interrupted (rerun to resume).",
    )
    p.add_argument("--checkpoint", "-c", required=True,
                   help="a name from checkpoints.yaml (`mibot-eval list`; e.g. Xiaomi-Robotics-0-LIBERO, "
                   "tiny), any hub id owner/name (taken from the local Hugging Face cache, downloaded "
                   "when online), or a local checkpoint folder (with config.json); one not in "
                   "checkpoints.yaml needs --suites or --like")
    p.add_argument("--suites", "-s", type=_str_list, default=[],
                   help="comma-separated suites, or paths to suite YAML files (default: the checkpoint's "
                   "suites)")
    p.add_argument("--like", default=None, metavar="NAME",
                   help="for a checkpoint not in checkpoints.yaml (a fine-tune): inherit the suites, "
                   "robot type and reported numbers of this listed checkpoint, e.g. "
                   "--like Xiaomi-Robotics-0-LIBERO (recorded in the manifest)")
    p.add_argument("--tasks", type=_int_list, default=None,
                   help="task ids, e.g. 0,3 or 0-99 (default: all); CALVIN: positions in the release's "
                   "order (0-9 = its first ten sequences; records keep the file index)")
    p.add_argument("--episodes", type=int, default=None,
                   help="trials per task (default: the protocol's, 50 for LIBERO)")
    p.add_argument("--results", type=Path, default=Path("results"), help="results folder")
    p.add_argument("--run", dest="run_name", default=None,
                   help="run folder name (default: derived from checkpoint and protocol)")
    p.add_argument("--execution", choices=("sync", "async"), default=None,
                   help="chunk execution mode (default: the suite's, sync = official); async infers "
                   "the next chunk while the robot executes the current one")
    p.add_argument("--delay-steps", type=int, default=None, metavar="N",
                   help="async: every inference takes N control steps (fixed, reproducible)")
    p.add_argument("--delay", choices=("fixed", "measured"), default=None,
                   help="async: 'measured' converts each inference's wall time into steps, "
                   "ceil(latency_s * control_hz); 'fixed' needs --delay-steps")
    p.add_argument("--control-hz", type=float, default=None, metavar="HZ",
                   help="async: control frequency for --delay measured and for latency reports "
                   "(default: the suite's control_hz); model a target robot rate")
    p.add_argument("--no-prefix", action="store_true",
                   help="async: do not pass the committed actions as a prefix even if the "
                   "checkpoint accepts them (the released checkpoints do not)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="override the protocol's max steps (non-official; gets its own run folder)")
    p.add_argument("--video", choices=("none", "failures", "all"), default="failures",
                   help="which episodes get an MP4 of the agentview stream (default: failures)")
    p.add_argument("--video-cap", type=int, default=3, help="max videos kept per task (default 3)")
    p.add_argument("--render", choices=("lazy", "eager"), default="lazy",
                   help="render cameras only when the policy reads them (lazy, default) or every step")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--no-report", action="store_true", help="do not print the report at the end")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show the simulators' own output (default: it goes to <run>/simulator.log)")
    p.add_argument("--retry-errors", action="store_true",
                   help="rerun the selected episodes recorded as errors (e.g. after fixing their "
                   "cause); each new record replaces the old one, and the manifest lists them")
    p.add_argument("--allow-mixed-resume", action="store_true",
                   help="resume a run folder although this run's runtime differs from the recorded "
                   "one (dtype, attention kernel, device kind, torch/transformers or simulator "
                   "versions); the differences are recorded in the manifest (default: refused)")
    gate = p.add_argument_group("sequential regression gate (see docs/regression-gate.md)")
    gate.add_argument("--gate-against", default=None, metavar="BASELINE_RUN",
                      help="run episodes in rounds that hold every task and stop as soon as an always-valid "
                      "paired test decides: regressed, or not worse than BASELINE_RUN by more than "
                      "--max-drop (the manifest's gate.verdict: regressed / not_worse / inconclusive)")
    gate.add_argument("--alpha", type=float, default=0.05, help="the gate's error level (default 0.05)")
    gate.add_argument("--max-drop", type=float, default=0.0, metavar="PP",
                      help="tolerated drop in percentage points (default 0: only a regression can stop "
                      "the run early; e.g. 5 also stops once the candidate is shown not 5 pp worse)")
    g = p.add_argument_group("throughput and scale")
    g.add_argument("--workers", type=_workers, default="auto", metavar="N|auto",
                   help="run episodes in N simulator processes (Ray: N actors, default one per "
                   "cluster CPU), the policy in this process; default auto: as many as the machine "
                   "holds (cores - 1, 1.5 GiB of memory each; printed at the start), in this process "
                   "when that is one; --workers 0: everything in this process; --workers 1: one "
                   "simulator process (a crash or --episode-timeout cannot take this process down)")
    g.add_argument("--batch-size", type=int, default=None, metavar="B",
                   help="most observations per policy call with --workers (default 1: records do not "
                   "depend on timing; B > 1 batches observations of checkpoints that seed per sample "
                   "(the tiny one), whose batched forwards differ from batch 1 in the last bits, so "
                   "episodes then depend on which observations met in a batch)")
    g.add_argument("--batch-wait-ms", type=float, default=5.0, metavar="MS",
                   help="longest wait for a batch to fill; a batch goes at once when every busy "
                   "simulator is waiting (default 5)")
    g.add_argument("--policy", dest="policy_url", default=None, metavar="ws://HOST:PORT",
                   help="use a policy server (`mibot-eval serve`) instead of loading the model; "
                   "comma-separate several servers to spread --workers over them")
    g.add_argument("--replicas", type=int, default=None, metavar="R",
                   help="R policy processes on this machine's device, each holding the model: R forwards "
                   "at batch 1 run at once (the released checkpoints take one seed per forward); "
                   "implies --workers R unless given (default with --workers auto on a CUDA device: as "
                   "many as the GPU's free memory holds at about 12 GiB each, at most 4)")
    g.add_argument("--token-file", type=Path, default=None, metavar="FILE",
                   help="the policy server's shared token (the file given to `serve --token-file`)")
    g.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local processes, or Ray actors across a Ray cluster (pip install "
                   "'mibot-eval[ray]'; `ray start` on each node)")
    g.add_argument("--ray-address", default="auto", metavar="ADDR",
                   help="Ray cluster to join: auto (the running cluster, default), local (a private "
                   "instance on this machine) or HOST:PORT")
    g.add_argument("--ray-policy-replicas", type=int, default=None, metavar="R",
                   help="Ray: policy server replicas (default: one per GPU, at least one; more replicas than "
                   "GPUs share them, e.g. 4 on one GPU ask for 0.25 each)")
    g.add_argument("--shard", type=_shard, default=None, metavar="I/N",
                   help="run only shard I (0-based) of N deterministic shards of the selected "
                   "episodes (own run folder; combine with `mibot-eval merge`)")
    g.add_argument("--episode-timeout", type=float, default=None, metavar="S",
                   help="with --workers/--backend ray: kill and retry (once) an episode running "
                   "longer than S seconds (default 1800; 0 = no limit)")
    p.set_defaults(handler=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from mibot_eval.api import evaluate

    options = {
        "delay": args.delay, "delay_steps": args.delay_steps, "control_hz": args.control_hz,
        "prefix": False if args.no_prefix else None,
    }
    if args.execution != "async":
        given = [flag for flag, key in (("--delay-steps", "delay_steps"), ("--delay", "delay"),
                                        ("--control-hz", "control_hz"), ("--no-prefix", "prefix"))
                 if options[key] is not None]
        if given:
            raise UserError(f"{', '.join(given)} need(s) --execution async")
    if args.gate_against is None and (args.alpha != 0.05 or args.max_drop != 0.0):
        raise UserError("--alpha and --max-drop need --gate-against BASELINE_RUN")
    summary = evaluate(
        args.checkpoint, suites=args.suites, tasks=args.tasks, episodes=args.episodes, like=args.like,
        results_dir=args.results, run_name=args.run_name,
        execution=args.execution, max_steps=args.max_steps, video=args.video,
        video_cap=args.video_cap, render=args.render, device=args.device,
        execution_options={k: v for k, v in options.items() if v is not None},
        workers=args.workers, batch_size=args.batch_size, batch_wait_ms=args.batch_wait_ms,
        policy_url=args.policy_url, backend=args.backend, ray_address=args.ray_address,
        ray_policy_replicas=args.ray_policy_replicas, shard=args.shard,
        episode_timeout=args.episode_timeout, token_file=args.token_file, replicas=args.replicas,
        verbose=args.verbose, retry_errors=args.retry_errors,
        allow_mixed_resume=args.allow_mixed_resume,
        gate_against=args.gate_against, gate_alpha=args.alpha, gate_max_drop=args.max_drop,
    )
    run_dir = summary.run_dir
    gate = summary.manifest.get("gate") if args.gate_against else None
    if gate:
        print(f"gate: {gate['reason']}; {gate['episodes_saved']} of {gate['planned_episodes']} planned "
              "episodes saved")
    print(f"results: {run_dir}")
    if not args.no_report:
        from mibot_eval.results.views.publish import publish_run

        print(publish_run(run_dir, args.results / "leaderboard.csv"))
    code, why = run_exit_code(summary.manifest, gate)
    if why:
        print(f"mibot-eval: exit {code}: {why}", file=sys.stderr)
    return code


def run_exit_code(manifest: dict, gate: dict | None) -> tuple[int, str]:
    """`run`'s exit code (mibot_eval/exit_codes.py) and why, from its manifest: the outcome of this
    invocation's selected episodes (its history entry) and, with --gate-against, the gate's verdict."""
    codes, reasons = [exit_codes.OK], []
    outcome = ((manifest.get("history") or [{}])[-1] or {}).get("outcome") or {}
    if outcome.get("errors"):
        codes.append(exit_codes.ERRORED_EPISODES)
        reasons.append(f"{outcome['errors']} of the {outcome.get('selected')} selected episodes are "
                       "recorded as errors (counted as failures); fix the cause, then rerun with "
                       "--retry-errors")
    if gate is not None:
        verdict = gate.get("verdict") or {"regressed": "regressed",
                                          "not_worse": "not_worse"}.get(gate.get("decision"), "inconclusive")
        codes.append(exit_codes.for_verdict(verdict))
        if verdict != "not_worse":
            reasons.append(f"the gate's verdict is {verdict}")
    code = exit_codes.most_severe(*codes)
    return code, "; ".join(reasons)
