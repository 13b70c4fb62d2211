"""Drive a run: pick episodes, skip finished ones, run the rest, record each durably, show progress."""

from __future__ import annotations

import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mibot_eval.config import CheckpointInfo, SuiteProtocol, load_suite, resolve_checkpoint
from mibot_eval.episode import run_episode
from mibot_eval.errors import UserError
from mibot_eval.execution import ChunkScheduler, ExecutionConfig, make_execution_config
from mibot_eval.policy.base import Policy
from mibot_eval.policy.checkpoint import ResolvedCheckpoint, fingerprint, resolve_checkpoint_dir
from mibot_eval.results.manifest import git_commit, host_info, package_versions
from mibot_eval.results.store import RunStore, episode_record, utc_now
from mibot_eval.suites.base import SuiteAdapter, make_adapter
from mibot_eval.types import EpisodeResult, EpisodeSpec
from mibot_eval.video import VideoPolicy

MAX_CONSECUTIVE_ERRORS = 5


@dataclass
class RunRequest:
    """Everything a user can choose about a run (the CLI fills it)."""

    checkpoint: str
    suites: list[str] = field(default_factory=list)
    tasks: list[int] | None = None
    episodes_per_task: int | None = None
    results_dir: Path = Path("results")
    run_name: str | None = None
    execution: str | None = None
    max_steps: int | None = None
    video: str = "failures"
    video_cap: int = 3
    render: str = "lazy"
    device: str | None = None
    execution_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class SuitePlan:
    protocol: SuiteProtocol
    adapter: SuiteAdapter
    episodes: list[EpisodeSpec]
    execution: ExecutionConfig
    robot_type: str


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "run"


def run_dir_name(info: CheckpointInfo, protocols: list[SuiteProtocol], request: RunRequest) -> str:
    """Same command -> same folder (so a rerun resumes); protocol overrides get their own folder."""
    if request.run_name:
        return slug(request.run_name)
    benchmarks = "+".join(sorted({p.benchmark for p in protocols}))
    mode = request.execution or protocols[0].execution
    parts = [slug(info.name), benchmarks, mode]
    if request.max_steps is not None:
        parts.append(f"max{request.max_steps}")
    for key, value in sorted(request.execution_options.items()):
        if value is not None:
            parts.append(f"{key}{value}")
    return "__".join(slug(str(p)) for p in parts)


def plan_suites(request: RunRequest, info: CheckpointInfo) -> list[SuitePlan]:
    names = request.suites or list(info.suites)
    if not names:
        raise UserError(f"checkpoint '{info.name}' lists no suites; pass SUITES=... / --suites")
    plans = []
    for name in names:
        protocol = load_suite(name).with_overrides(
            max_steps=request.max_steps, execution=request.execution
        )
        options = {k: v for k, v in request.execution_options.items() if v is not None}
        execution = make_execution_config(  # options may override the suite's control_hz
            protocol.execution, protocol.replan_steps, **{"control_hz": protocol.control_hz, **options}
        )
        adapter = make_adapter(protocol, render=request.render)
        episodes = adapter.episodes(request.tasks, request.episodes_per_task)
        plans.append(
            SuitePlan(protocol, adapter, episodes, execution, info.robot_type_for(protocol))
        )
    return plans


def build_manifest(
    run: str, resolved: ResolvedCheckpoint, checkpoint_hash: str, plans: list[SuitePlan],
    policy: dict[str, Any], request: RunRequest,
) -> dict[str, Any]:
    return {
        "run": run,
        "checkpoint": {
            "name": resolved.info.name,
            "source": resolved.source,
            "revision": resolved.revision,
            "hash": checkpoint_hash,
        },
        "benchmark": "+".join(sorted({p.protocol.benchmark for p in plans})),
        "execution": plans[0].execution.as_dict(),
        "suites": {
            p.protocol.name: {
                "hash": p.protocol.protocol_hash(),
                "protocol": p.protocol.as_dict(),
                "robot_type": p.robot_type,
                "source": p.protocol.source,
                "simulator": getattr(p.adapter, "describe", dict)(),
            }
            for p in plans
        },
        "selection": {"tasks": request.tasks, "episodes_per_task": request.episodes_per_task},
        "expected_episodes": {p.protocol.name: len(p.episodes) for p in plans},
        "policy": policy,
        "render": request.render,
        "packages": package_versions(),
        "git_commit": git_commit(),
        "host": host_info(),
        "command": sys.argv,
        "updated_at": utc_now(),
    }


def load_policy(resolved: ResolvedCheckpoint, device: str | None) -> Policy:
    from mibot_eval.policy.hf import HFPolicy

    return HFPolicy(resolved.path, device=device)


def _progress(total: int, initial: int, successes: int, desc: str) -> Any:
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, desc=desc, unit="ep", dynamic_ncols=True)
    bar.set_postfix_str(_success_text(successes, initial))
    return bar


def _success_text(successes: int, done: int) -> str:
    return f"success {successes}/{done}" + (f" ({100 * successes / done:.1f}%)" if done else "")


def execute(request: RunRequest, policy: Policy | None = None) -> Path:
    """Run (or resume) the requested evaluation; returns the run directory."""
    info = resolve_checkpoint(request.checkpoint)
    plans = plan_suites(request, info)
    try:
        return _execute(request, info, plans, policy)
    finally:
        for plan in plans:
            plan.adapter.close()


def _execute(
    request: RunRequest, info: CheckpointInfo, plans: list[SuitePlan], policy: Policy | None
) -> Path:
    run = run_dir_name(info, [p.protocol for p in plans], request)
    store = RunStore(Path(request.results_dir) / run)
    resolved = resolve_checkpoint_dir(info)
    checkpoint_hash = fingerprint(resolved.path)
    if policy is None:
        policy = load_policy(resolved, request.device)
    for plan in plans:  # async: record whether committed-action prefixes can be used
        plan.execution = plan.execution.with_prefix_support(getattr(policy, "supports_prefix", False))
    for plan in plans:
        check = getattr(policy, "check_robot_type", None)
        if check is not None:
            check(plan.robot_type)
    manifest = build_manifest(run, resolved, checkpoint_hash, plans, policy.describe(), request)
    store.open_manifest(manifest, identity_keys=("checkpoint", "execution"))
    videos = VideoPolicy(request.video, store.run_dir, request.video_cap)
    context = {"run": run, "checkpoint": info.name, "checkpoint_id": checkpoint_hash}
    records = store.records()
    finished = {r["key"] for r in records}
    for plan in plans:
        _run_suite(plan, policy, store, videos, context, records, finished)
    _record_latency(store)
    return store.run_dir


def _record_latency(store: RunStore) -> None:
    """Put the run's execution/latency summary (all its episodes) into the manifest."""
    from mibot_eval.results.latency_stats import latency_summary

    manifest = store.read_manifest() or {}
    manifest["latency"] = latency_summary(store.records())
    store.write_manifest(manifest)


def _run_suite(
    plan: SuitePlan, policy: Policy, store: RunStore, videos: VideoPolicy,
    context: dict[str, Any], records: list[dict[str, Any]], finished: set[str],
) -> None:
    keys = {spec.key for spec in plan.episodes}
    done = [r for r in records if r["key"] in keys]
    successes = sum(1 for r in done if r.get("success"))
    todo = [spec for spec in plan.episodes if spec.key not in finished]
    bar = _progress(len(plan.episodes), len(done), successes, plan.protocol.name)
    suite_context = {
        **context,
        "benchmark": plan.protocol.benchmark,
        "robot_type": plan.robot_type,
        "protocol_hash": plan.protocol.protocol_hash(),
        "execution": plan.execution.as_dict(),
    }
    consecutive_errors = 0
    try:
        for spec in todo:
            result = _run_one(plan, policy, spec, videos)
            store.append(episode_record(result, suite_context))
            finished.add(spec.key)
            successes += int(result.success)
            consecutive_errors = consecutive_errors + 1 if result.status == "error" else 0
            bar.update(1)
            bar.set_postfix_str(_success_text(successes, bar.n))
            if consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
                raise UserError(
                    f"{consecutive_errors} episodes in a row failed with errors; last: {result.error}"
                )
    finally:
        bar.close()


def _run_one(plan: SuitePlan, policy: Policy, spec: EpisodeSpec, videos: VideoPolicy) -> EpisodeResult:
    video = None
    if videos.wants(spec.suite, spec.task_id):
        video = videos.recorder(spec.suite, spec.task_id, spec.trial)
    plan.adapter.record_video = video is not None
    scheduler = ChunkScheduler(plan.execution, plan.protocol.hold_action)
    try:
        result = run_episode(
            plan.adapter, policy, spec, scheduler, plan.robot_type, plan.protocol.max_steps,
            on_frame=video.add if video is not None else None,
        )
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded as an error episode, never as a failure
        detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
        result = EpisodeResult(spec=spec, success=False, steps=0, status="error", error=detail)
    if video is not None:
        path = videos.finish(video, spec.suite, spec.task_id, result.success)
        if path is not None:
            result.metrics["video"] = str(path.relative_to(videos.run_dir))
    return result
