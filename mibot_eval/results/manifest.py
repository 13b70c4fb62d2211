"""The run manifest: what makes a run reproducible and comparable (checkpoint identity, each suite's
protocol and simulator, execution, policy runtime, package versions, git commit), and its latency
summary once episodes are recorded."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mibot_eval.results.store import RunStore, utc_now
from mibot_eval.suites.base import SIMULATOR_PACKAGES

if TYPE_CHECKING:
    from mibot_eval.planning import RunRequest, SuitePlan

TRACKED_PACKAGES = (  # the harness and model stack; each suite adds its simulator's packages
    "mibot-eval",
    "torch",
    "transformers",
    "numpy",
    "pillow",
    "imageio-ffmpeg",
)


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def source_checkout() -> Path | None:
    """The git checkout this package runs from (an editable install); None for an installed copy."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / ".git").exists() else None


def git_commit() -> str | None:
    """HEAD of the harness checkout, with '+dirty' when it has uncommitted changes (None when the
    package is installed rather than run from a checkout)."""
    root = source_checkout()
    if root is None:
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def host_info() -> dict[str, str]:
    return {"python": platform.python_version(), "platform": platform.platform()}


def build_manifest(
    run: str, checkpoint: dict[str, Any], plans: Sequence[SuitePlan], policy: dict[str, Any],
    request: RunRequest,
) -> dict[str, Any]:
    """The manifest of a run about to start (the store merges it with a resumed run's)."""
    simulators = tuple(dict.fromkeys(
        name for p in plans for name in SIMULATOR_PACKAGES.get(p.protocol.adapter, ())))
    return {
        "run": run,
        "checkpoint": checkpoint,
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
        "packages": package_versions(tuple(dict.fromkeys(TRACKED_PACKAGES + simulators))),
        "git_commit": git_commit(),
        "host": host_info(),
        "command": sys.argv,
        "updated_at": utc_now(),
    }


def record_latency(store: RunStore) -> None:
    """Put the run's execution/latency summary (all its episodes) into the manifest."""
    from mibot_eval.results.latency_stats import latency_summary

    manifest = store.read_manifest() or {}
    manifest["latency"] = latency_summary(store.records())
    store.write_manifest(manifest)
