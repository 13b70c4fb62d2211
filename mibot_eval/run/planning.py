"""What a run is, before anything runs: the request, its suites' plans and its folder name.

A SuitePlan is plain data (protocol, episodes, execution, robot type, which episodes repeat which):
it can be sent to a worker process as it is. Listing a suite's episodes needs its adapter, so
`plan_suites` builds each suite's adapter (envs are built lazily, on the first reset) and returns it
beside the plans; the runner owns and closes the adapters, and the in-process backend runs episodes
on them. No simulator steps, no policy, no files written here.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mibot_eval.config import CheckpointInfo, SuiteProtocol, load_suite
from mibot_eval.errors import UserError
from mibot_eval.run.scheduler import ExecutionConfig, make_execution_config
from mibot_eval.suites.base import SuiteAdapter, make_adapter
from mibot_eval.types import EpisodeSpec


@dataclass
class RunRequest:
    """Everything a user can choose about a run (the CLI and `mibot_eval.evaluate` fill it)."""

    checkpoint: str
    suites: list[str] = field(default_factory=list)
    like: str | None = None  # an unlisted checkpoint inherits this listed one's suites, robot type, numbers
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
    # Throughput and scale (mibot_eval.run.backends); None/defaults = one process.
    workers: int | str | None = None  # simulator processes (local) or actors (ray); 0/None: in this
    # process; "auto": sized to the machine
    batch_size: int | None = None  # most observations per policy call (None: 1, see backends/options)
    batch_wait_ms: float = 5.0  # longest wait for a batch to fill
    policy_url: str | None = None  # ws://HOST:PORT of `mibot-eval serve` (comma-separated: several)
    token_file: Path | None = None  # the policy server's shared token (serve --token-file)
    backend: str = "local"  # local | ray
    ray_address: str = "auto"  # auto (running cluster) | local (private instance) | HOST:PORT
    ray_policy_replicas: int | None = None  # default: one per GPU in the cluster, at least one
    replicas: int | None = None  # local policy replica processes (batch-1 forwards run concurrently)
    shard: tuple[int, int] | None = None  # (index, count): run only that deterministic shard
    episode_timeout: float | None = None  # per-episode wall-time limit in workers (None: default)
    progress: bool = True  # progress bars on stderr
    verbose: bool = False  # simulator chatter on the terminal instead of <run>/simulator.log
    gate_against: str | None = None  # baseline run folder: sequential paired gate, early stop
    gate_alpha: float = 0.05
    gate_max_drop: float = 0.0  # percentage points
    retry_errors: bool = False  # rerun the selected episodes recorded as errors (records replaced)
    allow_mixed_resume: bool = False  # resume although the runtime differs (results/resume.py)


@dataclass
class SuitePlan:
    """One suite of a run, as plain data: its protocol, episodes (official order), execution and
    robot type, and `repeat_of`: episode key -> the key of the episode it deterministically repeats
    (SimplerEnv WidowX's copies; empty for other suites)."""

    protocol: SuiteProtocol
    episodes: list[EpisodeSpec]
    execution: ExecutionConfig
    robot_type: str
    repeat_of: dict[str, str] = field(default_factory=dict)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "run"


def checkpoint_label(info: CheckpointInfo) -> str:
    """The checkpoint's part of a run folder name.

    A checkpoint of checkpoints.yaml (or a bare name: a Python policy object): its name. Any other hub
    id: OWNER--NAME (a hub id never contains "--"). Any other local folder: its folder name and 8 hex
    digits of its absolute path (sha256), so two folders named checkpoint-12000 from two training
    runs, or a folder named like a hub repo, never share a run folder.
    """
    origin = info.origin
    if origin is None:
        return slug(info.name)
    if origin.startswith("hf:"):
        return slug(origin[3:].replace("/", "--"))
    return f"{slug(info.name)}-{hashlib.sha256(origin.encode()).hexdigest()[:8]}"


def run_dir_name(info: CheckpointInfo, protocols: list[SuiteProtocol], request: RunRequest) -> str:
    """Same command -> same folder (so a rerun resumes); protocol overrides get their own folder."""
    if request.run_name:
        return slug(request.run_name)
    benchmarks = "+".join(sorted({p.benchmark for p in protocols}))
    mode = request.execution or protocols[0].execution
    parts = [checkpoint_label(info), benchmarks, mode]
    if request.max_steps is not None:
        parts.append(f"max{request.max_steps}")
    for key, value in sorted(request.execution_options.items()):
        if value is not None:
            parts.append(f"{key}{value}")
    if request.shard is not None:  # one writer per results store: each shard has its own folder
        parts.append(f"shard{request.shard[0]}of{request.shard[1]}")
    return "__".join(slug(str(p)) for p in parts)


def no_suites_message(info: CheckpointInfo) -> str:
    """Why a run of `info` has no suites, and what to pass."""
    if info.listed:
        return f"checkpoint '{info.name}' lists no suites in checkpoints.yaml; pass --suites (make: SUITES=)"
    return (f"checkpoint '{info.name}' is not in checkpoints.yaml, so its suites are unknown: pass "
            "--suites a,b (make: SUITES=) or --like NAME (make: LIKE=), NAME a listed checkpoint whose "
            "suites, robot type and reported numbers it takes, e.g. --like Xiaomi-Robotics-0-LIBERO")


def plan_suites(request: RunRequest, info: CheckpointInfo
                ) -> tuple[list[SuitePlan], dict[str, SuiteAdapter]]:
    """The requested suites' plans (protocols with overrides, episodes, execution configs) and, by
    suite name, the adapters that listed their episodes (the caller closes them)."""
    names = request.suites or list(info.suites)
    if not names:
        raise UserError(no_suites_message(info))
    plans: list[SuitePlan] = []
    adapters: dict[str, SuiteAdapter] = {}
    for name in names:
        protocol = load_suite(name).with_overrides(
            max_steps=request.max_steps, execution=request.execution
        )
        options = {k: v for k, v in request.execution_options.items() if v is not None}
        execution = make_execution_config(  # options may override the suite's control_hz
            protocol.execution, protocol.replan_steps, **{"control_hz": protocol.control_hz, **options}
        )
        adapter = adapters[protocol.name] = make_adapter(protocol, render=request.render)
        episodes = adapter.episodes(request.tasks, request.episodes_per_task)
        plans.append(SuitePlan(protocol, episodes, execution, info.robot_type_for(protocol),
                               repeats(adapter, episodes)))
    return plans, adapters


def repeats(adapter: SuiteAdapter, episodes: list[EpisodeSpec]) -> dict[str, str]:
    """Episode key -> the key of the episode it repeats, for adapters whose episodes have
    deterministic copies (`repeat_of`, SimplerEnv WidowX); {} for the others."""
    repeat_of = getattr(adapter, "repeat_of", None)
    if repeat_of is None:
        return {}
    return {spec.key: first for spec in episodes if (first := repeat_of(spec))}


def suite_context(plan: SuitePlan, context: dict[str, Any]) -> dict[str, Any]:
    """The run context stored in each episode record of this suite."""
    return {
        **context,
        "benchmark": plan.protocol.benchmark,
        "robot_type": plan.robot_type,
        "protocol_hash": plan.protocol.protocol_hash(),
        "execution": plan.execution.as_dict(),
    }
