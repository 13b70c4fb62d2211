"""Drive a run: pick episodes, skip finished ones, run the rest, record each durably, show progress."""

from __future__ import annotations

import contextlib
import hashlib
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mibot_eval.config import CheckpointInfo, SuiteProtocol, load_suite, resolve_checkpoint
from mibot_eval.episode import run_episode
from mibot_eval.errors import UserError
from mibot_eval.execution import ChunkScheduler, ExecutionConfig, make_execution_config
from mibot_eval.policy.base import Policy
from mibot_eval.policy.checkpoint import ResolvedCheckpoint, fingerprint, resolve_checkpoint_dir
from mibot_eval.results.manifest import TRACKED_PACKAGES, git_commit, host_info, package_versions
from mibot_eval.results.store import RunStore, episode_record, utc_now
from mibot_eval.suites.base import SIMULATOR_PACKAGES, SuiteAdapter, make_adapter
from mibot_eval.types import EpisodeResult, EpisodeSpec, PolicyRequest
from mibot_eval.video import VideoPolicy

MAX_CONSECUTIVE_ERRORS = 5
EPISODE_ATTEMPTS = 2  # an exception inside an episode: retried once on a rebuilt env, then an error


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
    # Throughput and scale (mibot_eval.parallel); None/defaults = one process, as before.
    workers: int | None = None  # simulator processes (local) or actors (ray)
    batch_size: int = 8  # observations per policy call when batching across simulators
    batch_wait_ms: float = 5.0  # longest wait for a batch to fill
    policy_url: str | None = None  # ws://HOST:PORT of `mibot-eval serve` (comma-separated: several)
    backend: str = "local"  # local | ray
    ray_address: str = "auto"  # auto (running cluster) | local (private instance) | HOST:PORT
    ray_policy_replicas: int | None = None  # default: one per GPU in the cluster, at least one
    shard: tuple[int, int] | None = None  # (index, count): run only that deterministic shard
    episode_timeout: float | None = None  # per-episode wall-time limit in workers (None: default)


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
    if request.shard is not None:  # one writer per results store: each shard has its own folder
        parts.append(f"shard{request.shard[0]}of{request.shard[1]}")
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
                "simulator_packages": package_versions(SIMULATOR_PACKAGES.get(p.protocol.adapter, ())),
            }
            for p in plans
        },
        "selection": {"tasks": request.tasks, "episodes_per_task": request.episodes_per_task},
        "expected_episodes": {p.protocol.name: len(p.episodes) for p in plans},
        "policy": policy,
        "render": request.render,
        "packages": package_versions(tuple(dict.fromkeys(
            TRACKED_PACKAGES + sum((SIMULATOR_PACKAGES.get(p.protocol.adapter, ()) for p in plans), ())))),
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
    try:
        info = resolve_checkpoint(request.checkpoint)
    except UserError:
        if not request.policy_url:
            raise
        # --policy ws://...: the checkpoint lives on the server; it must report this name
        info = CheckpointInfo(name=Path(request.checkpoint).name)
    plans = plan_suites(request, info)
    try:
        return _execute(request, info, plans, policy)
    finally:
        for plan in plans:
            plan.adapter.close()


def _execute(
    request: RunRequest, info: CheckpointInfo, plans: list[SuitePlan], policy: Policy | None
) -> Path:
    from mibot_eval.parallel import options as parallel_options

    options = parallel_options.validate(request)
    planned_keys = None
    if request.shard is not None:
        from mibot_eval.shard import select_shard

        planned_keys = select_shard(plans, *request.shard)
    run = run_dir_name(info, [p.protocol for p in plans], request)
    store = RunStore(Path(request.results_dir) / run)
    with contextlib.ExitStack() as stack:
        cluster = None
        if request.backend == "ray":
            from mibot_eval.parallel.ray_backend import RayCluster

            cluster = stack.enter_context(RayCluster(request, info, options, policy))
            policy = cluster.identity_policy
        elif policy is None and options.policy_urls:
            from mibot_eval.policy.remote import RemotePolicy

            policy = stack.enter_context(RemotePolicy(options.policy_urls[0]))
        identity = getattr(policy, "checkpoint_identity", None)
        if identity is not None:  # a policy server: it states which checkpoint it serves
            resolved, checkpoint_hash = _remote_identity(info, identity())
        else:
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
        if options.parallel:
            manifest["parallel"] = options.as_dict()
        if planned_keys is not None:
            manifest["shard"] = {"index": request.shard[0], "count": request.shard[1],
                                 "episodes": sum(len(p.episodes) for p in plans),
                                 "planned_keys": planned_keys}
        store.open_manifest(manifest, identity_keys=("checkpoint", "execution"))
        videos = VideoPolicy(request.video, store.run_dir, request.video_cap)
        context = {"run": run, "checkpoint": info.name, "checkpoint_id": checkpoint_hash}
        records = store.records()
        finished = {r["key"] for r in records}
        if cluster is not None:
            cluster.run(plans, store, videos, context, records, finished)
        elif options.parallel:
            from mibot_eval.parallel.local import run_local

            stats = run_local(plans, policy, options, store, videos, context, records, finished,
                              render=request.render)
            manifest = store.read_manifest() or {}
            manifest.setdefault("parallel", {}).update(stats)
            store.write_manifest(manifest)
        else:
            for plan in plans:
                _run_suite(plan, policy, store, videos, context, records, finished)
    _record_latency(store)
    return store.run_dir


def _remote_identity(info: CheckpointInfo, served: dict[str, Any]) -> tuple[ResolvedCheckpoint, str]:
    """The checkpoint identity a policy server reports, checked against --checkpoint."""
    if served.get("name") != info.name:
        raise UserError(
            f"the policy server serves checkpoint '{served.get('name')}', not '{info.name}'; "
            "pass the same --checkpoint the server was started with"
        )
    resolved = ResolvedCheckpoint(info, Path(str(served.get("path") or "")),
                                  str(served.get("source")), served.get("revision"))
    return resolved, str(served.get("hash"))


def _record_latency(store: RunStore) -> None:
    """Put the run's execution/latency summary (all its episodes) into the manifest."""
    from mibot_eval.results.latency_stats import latency_summary

    manifest = store.read_manifest() or {}
    manifest["latency"] = latency_summary(store.records())
    store.write_manifest(manifest)


def suite_context(plan: SuitePlan, context: dict[str, Any]) -> dict[str, Any]:
    """The run context stored in each episode record of this suite."""
    return {
        **context,
        "benchmark": plan.protocol.benchmark,
        "robot_type": plan.robot_type,
        "protocol_hash": plan.protocol.protocol_hash(),
        "execution": plan.execution.as_dict(),
    }


class Ledger:
    """The single writer of a run's results: appends each finished episode durably (one fsynced
    line), keeps the progress bar and stops the run after too many errors in a row."""

    def __init__(
        self, store: RunStore, contexts: dict[str, dict[str, Any]], total: int, done: int,
        successes: int, desc: str,
    ) -> None:
        self.store, self.contexts = store, contexts
        self.successes = successes
        self.errors = 0
        self.consecutive_errors = 0
        self.bar = _progress(total, done, successes, desc)

    def record(self, result: EpisodeResult) -> None:
        self.store.append(episode_record(result, self.contexts[result.spec.suite]))
        self.successes += int(result.success)
        is_error = result.status == "error"
        self.errors += int(is_error)
        self.consecutive_errors = self.consecutive_errors + 1 if is_error else 0
        self.bar.update(1)
        self.bar.set_postfix_str(_success_text(self.successes, self.bar.n)
                                 + (f", errors {self.errors}" if self.errors else ""))
        if self.consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
            raise UserError(
                f"{self.consecutive_errors} episodes in a row failed with errors; last: {result.error}"
            )

    def close(self) -> None:
        self.bar.close()


def _run_suite(
    plan: SuitePlan, policy: Policy, store: RunStore, videos: VideoPolicy,
    context: dict[str, Any], records: list[dict[str, Any]], finished: set[str],
) -> None:
    keys = {spec.key for spec in plan.episodes}
    done = [r for r in records if r["key"] in keys]
    successes = sum(1 for r in done if r.get("success"))
    todo = [spec for spec in plan.episodes if spec.key not in finished]
    ledger = Ledger(store, {plan.protocol.name: suite_context(plan, context)}, len(plan.episodes),
                    len(done), successes, plan.protocol.name)
    try:
        for spec in todo:
            result = _run_one(plan, policy, spec, videos)
            finished.add(spec.key)
            ledger.record(result)
    finally:
        ledger.close()


class TracePolicy:
    """Forwards to a policy and hashes what crosses it: every observation the policy reads (state,
    images, instruction, prefix) and every chunk it returns. Equal `trace_sha` = equal episodes."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.supports_prefix = getattr(inner, "supports_prefix", False)
        self._digest = hashlib.sha256()

    def infer(self, requests: Sequence[PolicyRequest]) -> list[np.ndarray]:
        chunks = self.inner.infer(requests)
        for request, chunk in zip(requests, chunks, strict=True):
            obs, d = request.observation, self._digest
            d.update(np.ascontiguousarray(obs.state, dtype=np.float64).tobytes())
            d.update(str(request.seed).encode())
            for label, image in obs.images.items():
                d.update(label.encode())
                d.update(np.ascontiguousarray(image).tobytes())
            d.update(obs.instruction.encode())
            if request.prefix is not None:
                d.update(np.ascontiguousarray(request.prefix, dtype=np.float64).tobytes())
            d.update(np.ascontiguousarray(chunk, dtype=np.float32).tobytes())
        return chunks

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def hexdigest(self) -> str:
        return self._digest.hexdigest()[:32]


def run_one(
    adapter: SuiteAdapter, policy: Policy, spec: EpisodeSpec, execution: ExecutionConfig,
    protocol: SuiteProtocol, robot_type: str, on_frame: Callable[[np.ndarray], None] | None = None,
) -> EpisodeResult:
    """One episode wherever it runs (this process, a worker process, a Ray actor).

    A UserError stops the run. Any other exception is taken for an infrastructure failure: the
    adapter is closed (its env is rebuilt) and the episode retried once; a second exception becomes
    an error record, which the statistics count as a failure, as the release does.
    """
    reasons: list[str] = []
    while True:
        scheduler = ChunkScheduler(execution, protocol.hold_action)
        tracer = TracePolicy(policy)
        try:
            result = run_episode(
                adapter, tracer, spec, scheduler, robot_type, protocol.max_steps, on_frame=on_frame,
                seed_rule=protocol.request_seed,
            )
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - retried once, then an error record (a failure)
            reasons.append(traceback.format_exception_only(type(exc), exc)[-1].strip())
            with contextlib.suppress(Exception):
                adapter.close()
            if len(reasons) < EPISODE_ATTEMPTS:
                continue
            return EpisodeResult(spec=spec, success=False, steps=0, status="error", error=reasons[-1],
                                 metrics={"attempts": len(reasons), "retried_after": reasons[:-1]})
        result.metrics["trace_sha"] = tracer.hexdigest()
        if reasons:
            result.metrics.update(attempts=len(reasons) + 1, retried_after=reasons)
        return result


def _run_one(plan: SuitePlan, policy: Policy, spec: EpisodeSpec, videos: VideoPolicy) -> EpisodeResult:
    video = None
    if videos.wants(spec.suite, spec.task_id):
        video = videos.recorder(spec.suite, spec.task_id, spec.trial)
    plan.adapter.record_video = video is not None
    result = run_one(plan.adapter, policy, spec, plan.execution, plan.protocol, plan.robot_type,
                     on_frame=video.add if video is not None else None)
    if video is not None:
        path = videos.finish(video, spec.suite, spec.task_id, result.success)
        if path is not None:
            result.metrics["video"] = str(path.relative_to(videos.run_dir))
    return result
