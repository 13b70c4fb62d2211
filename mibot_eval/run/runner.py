"""Drive a run: plan it, resume what is already recorded, hand the rest to a backend.

The runner decides which episodes (planning.py), which folder, what is already done (the store's
records), which policy and checkpoint identity (policy/load.py) and which Backend runs the jobs
(run/backends/); the Ledger records every finished episode. Nothing below imports it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from mibot_eval.config import CheckpointInfo, listed_checkpoint, named_checkpoint, resolve_checkpoint
from mibot_eval.errors import UserError
from mibot_eval.policy.checkpoint import resolve_checkpoint_dir
from mibot_eval.policy.load import (
    CheckpointIdentity,
    describe_policy,
    load_policy,
    local_identity,
    object_identity,
    served_identity,
)
from mibot_eval.results.lock import writer_lock
from mibot_eval.results.records import utc_now
from mibot_eval.results.store import RunStore
from mibot_eval.run.backends import options as parallel_options
from mibot_eval.run.backends.base import Backend
from mibot_eval.run.backends.inprocess import InProcessBackend
from mibot_eval.run.backends.options import ParallelOptions
from mibot_eval.run.backends.sizing import auto_replicas, auto_workers, eta_text, gpu_free_memory_gb
from mibot_eval.run.gating import GateDecided, GateSession, supersede_completed
from mibot_eval.run.interrupts import deferred_signals
from mibot_eval.run.ledger import Ledger
from mibot_eval.run.manifest import build_manifest
from mibot_eval.run.planning import RunRequest, SuitePlan, plan_suites, run_dir_name, suite_context
from mibot_eval.run.video import VideoPolicy
from mibot_eval.serving.client import TOKEN_FILE_ENV
from mibot_eval.suites import chatter
from mibot_eval.suites.base import SuiteAdapter

__all__ = ["RunRequest", "execute"]

MAX_LISTED_ERRORS = 20  # errored keys named in a history entry's outcome


def execute(request: RunRequest, policy: Any | None = None, checkpoint: CheckpointInfo | None = None
            ) -> Path:
    """Run (or resume) the requested evaluation; returns the run directory.

    policy: use this object instead of loading the checkpoint (any object with `infer`).
    checkpoint: the resolved checkpoint `policy` was loaded from (then it is identified as that
    checkpoint, not as a policy object)."""
    chatter.set_log(None, verbose=request.verbose)  # -v: simulator output on the terminal from the start
    with contextlib.ExitStack() as stack:
        if request.token_file is not None:  # RemotePolicy reads it here, in workers and in Ray actors
            scoped_environ(stack, TOKEN_FILE_ENV, str(Path(request.token_file).resolve()))
        info, named_only = _checkpoint_info(request, policy) if checkpoint is None else (checkpoint, False)
        plans, adapters = plan_suites(request, info)
        if not named_only and policy is None and not request.policy_url and request.backend == "local":
            resolve_checkpoint_dir(info)  # loaded on this machine: not there -> one line, before any folder
        if request.workers == "auto":
            request = _auto_workers(request, plans, info, policy)
        try:
            with deferred_signals():  # Ctrl-C / SIGTERM: errors.Interrupted at the next step
                return _execute(request, info, plans, adapters, policy, named_only)
        finally:
            for adapter in adapters.values():
                adapter.close()


def scoped_environ(stack: contextlib.ExitStack, name: str, value: str) -> None:
    """Set an environment variable until `stack` closes (a later run in this process starts clean)."""
    previous = os.environ.get(name)
    os.environ[name] = value

    def restore() -> None:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous

    stack.callback(restore)


def _auto_workers(request: RunRequest, plans: list[SuitePlan], info: CheckpointInfo,
                  policy: Any | None) -> RunRequest:
    """Resolve `--workers auto` for this machine and plan (and, for a released checkpoint on a CUDA
    device, `--replicas`), and say so (with an ETA) on stderr."""
    episodes = sum(len(p.episodes) for p in plans)
    if request.backend == "ray" or request.replicas:
        return dataclasses.replace(request, workers=None)  # Ray and --replicas size themselves
    workers, why = auto_workers(episodes)
    replicas = 1
    on_cuda = request.device is None or str(request.device).startswith("cuda")
    if workers > 1 and policy is None and not request.policy_url and not info.tiny and on_cuda:
        replicas, replicas_why = auto_replicas(gpu_free_memory_gb(), workers)
        if replicas > 1:
            why += f"; {replicas} policy replicas ({replicas_why}; --replicas R to choose)"
    chosen = None if workers == 1 else workers
    benchmarks = sorted({p.protocol.benchmark for p in plans})
    label = "in this process" if chosen is None else f"{workers} simulator processes"
    if request.progress:
        print(f"mibot-eval: {label} ({why}; --workers N to choose); "
              f"{eta_text(episodes, benchmarks, workers)}", file=sys.stderr)
    return dataclasses.replace(request, workers=chosen, replicas=replicas if replicas > 1 else None)


def _checkpoint_info(request: RunRequest, policy: Any | None) -> tuple[CheckpointInfo, bool]:
    """The checkpoint (listed, a local folder or any hub id); (a bare name, True) for a policy object
    whose name is neither listed nor a local folder (a name, not a hub id to fetch), or a policy
    server's checkpoint that this machine cannot resolve."""
    name = Path(request.checkpoint).name
    if policy is not None and listed_checkpoint(request.checkpoint) is None \
            and not Path(request.checkpoint).expanduser().is_dir():
        return named_checkpoint(name, like=request.like), True
    try:
        return resolve_checkpoint(request.checkpoint, like=request.like), False
    except UserError:
        if not request.policy_url and policy is None:
            raise
        return named_checkpoint(name, like=request.like), True


def _execute(request: RunRequest, info: CheckpointInfo, plans: list[SuitePlan],
             adapters: dict[str, SuiteAdapter], policy: Any | None, named_only: bool) -> Path:
    options = parallel_options.validate(request)
    planned_keys = None
    if request.shard is not None:
        from mibot_eval.run.shard import select_shard

        planned_keys = select_shard(plans, *request.shard)
    run = run_dir_name(info, [p.protocol for p in plans], request)
    store = RunStore(Path(request.results_dir) / run)
    with contextlib.ExitStack() as stack:
        stack.enter_context(writer_lock(store.run_dir))  # before anything recorded is read
        chatter.set_log(store.run_dir / chatter.LOG_FILE, verbose=request.verbose)
        backend, policy, identity, options = _open_backend(stack, request, info, options, policy,
                                                           named_only, adapters)
        for plan in plans:  # async: record whether committed-action prefixes can be used
            plan.execution = plan.execution.with_prefix_support(getattr(policy, "supports_prefix", False))
            check = getattr(policy, "check_robot_type", None)
            if check is not None:
                check(plan.robot_type)
        keys = {spec.key for plan in plans for spec in plan.episodes}
        retry = _errored(store, keys) if request.retry_errors else {}
        checkpoint = identity.as_manifest()
        if info.inherited() is not None:  # what an unlisted checkpoint took from --like
            checkpoint["like"] = info.inherited()
        simulators = {name: getattr(a, "describe", dict)() for name, a in adapters.items()}
        manifest = build_manifest(run, checkpoint, plans, describe_policy(policy), request, simulators,
                                  retried_errors=sorted(retry))
        if options.parallel:
            manifest["parallel"] = options.as_dict()
        if planned_keys is not None:
            manifest["shard"] = {"index": request.shard[0], "count": request.shard[1],
                                 "episodes": sum(len(p.episodes) for p in plans),
                                 "planned_keys": planned_keys}
        store.open_manifest(manifest, identity_keys=("checkpoint", "execution"),
                            allow_mixed=request.allow_mixed_resume)
        videos = VideoPolicy(request.video, store.run_dir, request.video_cap)
        context = {"run": run, "checkpoint": info.name, "checkpoint_id": identity.hash}
        gate = None
        if request.gate_against:
            gate = GateSession(request.gate_against, plans, request.gate_alpha, request.gate_max_drop)
        stats = _run_backend(backend, plans, store, videos, context, request.progress, gate, retry)
        if stats:
            _record_parallel_stats(store, options, stats)
        if gate is None:
            supersede_completed(store, keys)
        _finish_manifest(store, keys, gate)
    return store.run_dir


def _errored(store: RunStore, keys: set[str]) -> dict[str, dict[str, Any]]:
    """The selected episodes whose record is an error: key -> what the rerun's record replaces."""
    return {r["key"]: {"status": "error", "error": r.get("error"), "finished_at": r.get("finished_at")}
            for r in store.records() if r["key"] in keys and r.get("status") == "error"}


def _finish_manifest(store: RunStore, keys: set[str], gate: GateSession | None) -> None:
    """This invocation's outcome over its selected episodes (the CLI's exit code reads it), the
    gate's summary and the run's latency summary (all its episodes)."""
    from mibot_eval.results.measure.latency import latency_summary

    records = store.records()
    selected = [r for r in records if r["key"] in keys]
    errors = sorted(r["key"] for r in selected if r.get("status") == "error")
    manifest = store.read_manifest() or {}
    history = manifest.get("history") or [{}]
    history[-1]["outcome"] = {"selected": len(keys), "recorded": len(selected), "errors": len(errors),
                              "error_keys": errors[:MAX_LISTED_ERRORS], "finished_at": utc_now()}
    manifest["history"] = history
    if gate is not None:
        manifest["gate"] = gate.summary(len(keys), len(selected))
    manifest["latency"] = latency_summary(records)
    store.write_manifest(manifest)


def _record_parallel_stats(store: RunStore, options: ParallelOptions, stats: dict[str, Any]) -> None:
    """This invocation's backend counters (`parallel`), every invocation's (`parallel_runs`) and
    their sums (`parallel.totals`): a resumed run adds to the counters, never resets them."""
    manifest = store.read_manifest() or {}
    runs = [*(manifest.get("parallel_runs") or []), stats]
    totals: dict[str, float] = {}
    for run in runs:
        for key, value in run.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "mean_batch":
                totals[key] = totals.get(key, 0) + value
    manifest["parallel_runs"] = runs
    manifest["parallel"] = {**options.as_dict(), **stats, "totals": totals}
    store.write_manifest(manifest)


def _open_backend(stack: contextlib.ExitStack, request: RunRequest, info: CheckpointInfo,
                  options: ParallelOptions, policy: Any | None, named_only: bool,
                  adapters: dict[str, SuiteAdapter]
                  ) -> tuple[Backend, Any, CheckpointIdentity, ParallelOptions]:
    """The backend, the policy that identifies the run, the checkpoint's identity and the options
    (with the replicas' addresses when this run starts them)."""
    backend: Backend | None = None
    given = policy  # identified as the caller gave it (Ray wraps it below)
    if options.replicas and policy is None:
        from mibot_eval.serving.replicas import ReplicaServers

        servers = stack.enter_context(ReplicaServers(
            options.replicas, checkpoint=request.checkpoint, device=request.device,
            batch_size=options.batch_size, batch_wait_ms=options.batch_wait_s * 1000))
        scoped_environ(stack, TOKEN_FILE_ENV, str(servers.token_file))  # the workers' RemotePolicy reads it
        options = dataclasses.replace(options, policy_urls=tuple(servers.urls))
    if request.backend == "ray":
        from mibot_eval.run.backends.ray import RayBackend

        cluster = stack.enter_context(RayBackend(request, info, options, policy))
        backend, policy = cluster, cluster.identity_policy
    elif policy is None and options.policy_urls:
        from mibot_eval.serving.client import RemotePolicy

        policy = stack.enter_context(RemotePolicy(options.policy_urls[0]))
    served = getattr(policy, "checkpoint_identity", None)
    if served is not None:  # a policy server: it states which checkpoint it serves
        identity = served_identity(info, served())
    elif named_only:
        identity = object_identity(info.name, given if given is not None else policy)
    else:
        resolved, identity = local_identity(info)
        if policy is None:
            policy = load_policy(resolved, request.device)
    if backend is None:
        if options.parallel:
            from mibot_eval.run.backends.local import LocalPoolBackend

            backend = LocalPoolBackend(policy, options, render=request.render)
        else:
            backend = InProcessBackend(policy, adapters)
    return backend, policy, identity, options


def _run_backend(backend: Backend, plans: list[SuitePlan], store: RunStore, videos: VideoPolicy,
                 context: dict[str, Any], progress: bool, gate: GateSession | None = None,
                 retry: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The plans' unfinished episodes (and those in `retry`, recorded as errors) through the backend
    and one Ledger: in plan order, or in the gate's rounds under a sequential gate (which may stop
    the run once decided)."""
    retry = retry or {}
    records = store.records()
    finished = {r["key"] for r in records} - set(retry)
    keys = {spec.key for plan in plans for spec in plan.episodes}
    done = [r for r in records if r["key"] in keys and r["key"] not in retry]
    todo = [spec for plan in plans for spec in plan.episodes if spec.key not in finished]
    if gate is not None:
        todo = gate.order(todo)
        for record in done:  # a resumed run: its recorded episodes go through the gate's buffer
            gate.observe(record)
        if gate.gate.decision is not None:
            todo = []
    contexts = {plan.protocol.name: suite_context(plan, context) for plan in plans}
    ledger = Ledger(store, contexts, len(keys), done, "+".join(plan.protocol.name for plan in plans),
                    progress=progress, on_record=gate.on_record if gate is not None else None,
                    replaces=retry)
    try:
        return backend.run(plans, todo, ledger, videos) if todo else {}
    except GateDecided:
        return {}
    finally:
        ledger.close()
