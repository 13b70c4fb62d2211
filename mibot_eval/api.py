"""The Python API: `mibot_eval.evaluate(...)`, for training loops and notebooks. The CLI's `run` calls
it too, so there is one path.

    import mibot_eval

    summary = mibot_eval.evaluate("tiny", suites=["libero_spatial"], tasks=[0], episodes=2)
    print(summary.suites["libero_spatial"].rate.value)      # percent; summary.run_dir has the records

A policy may be given instead of a checkpoint: any object with
`infer(requests: Sequence[PolicyRequest]) -> list[np.ndarray]` (one decoded (T, D) action chunk per
request, see mibot_eval.types and mibot_eval.policy.base); `supports_prefix`, `describe()` and
`check_robot_type(robot_type)` are optional. Name it with `name=` (the run folder and the manifest
use it). The run is identified by what the policy computes (mibot_eval.policy.identity): its
`describe()`, else a digest of its parameters (a torch module's state_dict, any other object's
attributes); a policy with neither must be given `name=`. Rerunning with the same name resumes only a
policy of the same identity: another one (new weights under an old name) is refused with one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mibot_eval.errors import UserError
from mibot_eval.policy.identity import policy_fingerprint
from mibot_eval.results.measure.summary import RunSummary, load_run
from mibot_eval.run.planning import RunRequest
from mibot_eval.run.runner import execute


def evaluate(
    checkpoint_or_policy: str | Path | Any,
    suites: Sequence[str] | str | None = None,
    tasks: Sequence[int] | None = None,
    episodes: int | None = None,
    results_dir: str | Path = "results",
    *,
    name: str | None = None,
    like: str | None = None,
    progress: bool = True,
    **options: Any,
) -> RunSummary:
    """Run (or resume) an evaluation and return its measured summary.

    checkpoint_or_policy: a checkpoints.yaml name (e.g. "Xiaomi-Robotics-0-LIBERO", "tiny"), any hub
      id (owner/name), a local checkpoint folder, or a policy object (see the module docstring).
    suites: suite names (default: the checkpoint's); tasks: task ids (CALVIN: positions in the
      release's order); episodes: trials per task (default: the protocol's).
    like: for a checkpoint not in checkpoints.yaml, the listed one whose suites, robot type and
      reported numbers it inherits (e.g. "Xiaomi-Robotics-0-LIBERO" for a fine-tune of it).
    options: any other RunRequest field (run_name, execution, execution_options, max_steps, video,
      render, device, workers, batch_size, policy_url, backend, shard, episode_timeout, ...).
    """
    policy = None
    if isinstance(checkpoint_or_policy, (str, Path)):
        checkpoint = str(checkpoint_or_policy)
    else:
        if not callable(getattr(checkpoint_or_policy, "infer", None)):
            raise UserError("evaluate() takes a checkpoint name/folder or a policy with an infer() method")
        policy = checkpoint_or_policy
        if name is None and not callable(getattr(policy, "describe", None)) \
                and policy_fingerprint(policy) is None:
            raise UserError(f"evaluate(): a {type(policy).__name__} has no describe() and no parameters "
                            "to identify it by; pass name=... (a rerun under that name resumes it)")
        checkpoint = name or type(policy).__name__
    unknown = set(options) - set(RunRequest.__dataclass_fields__)
    if unknown:
        raise UserError(f"evaluate(): unknown option(s) {', '.join(sorted(unknown))}")
    options.setdefault("video", "none")
    request = RunRequest(
        checkpoint=checkpoint, suites=[suites] if isinstance(suites, str) else list(suites or []), like=like,
        tasks=None if tasks is None else list(tasks), episodes_per_task=episodes,
        results_dir=Path(results_dir), progress=progress, **options,
    )
    return load_run(execute(request, policy=policy))
