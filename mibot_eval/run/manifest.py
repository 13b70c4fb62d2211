"""The run manifest: what makes a run reproducible and comparable (checkpoint identity, each suite's
protocol and simulator, execution, policy runtime, package versions, git commit), one `history`
entry per invocation (host with its GPU, packages, selection, command), and its latency summary once
episodes are recorded."""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mibot_eval.results.records import utc_now
from mibot_eval.suites.base import SIMULATOR_PACKAGES

if TYPE_CHECKING:
    from mibot_eval.run.planning import RunRequest, SuitePlan

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


def host_info() -> dict[str, Any]:
    """This machine: name, Python, platform and, where there is one, its GPU (gpu_info)."""
    info: dict[str, Any] = {"hostname": socket.gethostname(), "python": platform.python_version(),
                            "platform": platform.platform()}
    gpu = gpu_info()
    if gpu:
        info["gpu"] = gpu
    return info


def gpu_info() -> dict[str, Any] | None:
    """GPU models and driver (nvidia-smi), CUDA version torch was built with, None without a GPU.

    nvidia-smi first: it answers without creating a CUDA context in this process (a run whose
    policy lives in a server or in replicas needs none); torch.cuda when nvidia-smi is absent."""
    info: dict[str, Any] = {}
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            done = subprocess.run([smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            done = None
        rows = [[c.strip() for c in line.split(",")] for line in (done.stdout if done and
                                                                  done.returncode == 0 else "").splitlines()
                if line.strip()]
        if rows:
            info["models"] = [row[0] for row in rows]
            info["driver"] = rows[0][1] if len(rows[0]) > 1 else None
    torch = _torch()
    if torch is not None and getattr(torch.version, "cuda", None):
        if not info.get("models") and torch.cuda.is_available():
            info["models"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if info:
            info["cuda"] = torch.version.cuda
    return info or None


def _torch() -> Any:
    try:
        import torch
    except ImportError:  # the model extra is optional (a run against a policy server)
        return None
    return torch


def invocation_entry(request: RunRequest, packages: dict[str, str | None], commit: str | None,
                     policy: dict[str, Any], **notes: Any) -> dict[str, Any]:
    """One command's facts, kept in the manifest's `history` (a resume never overwrites them)."""
    from mibot_eval.results.resume import policy_runtime

    return {
        "started_at": utc_now(), "host": host_info(), "command": sys.argv, "git_commit": commit,
        "packages": packages, "policy_runtime": policy_runtime(policy),
        "selection": {"tasks": request.tasks, "episodes_per_task": request.episodes_per_task},
        **{k: v for k, v in notes.items() if v},
    }


def build_manifest(
    run: str, checkpoint: dict[str, Any], plans: Sequence[SuitePlan], policy: dict[str, Any],
    request: RunRequest, simulator_facts: Mapping[str, dict[str, Any]], **notes: Any,
) -> dict[str, Any]:
    """The manifest of a run about to start (the store merges it with a resumed run's); simulator_facts:
    suite -> its adapter's `describe()`; `notes` go into this invocation's history entry (e.g.
    retried_errors)."""
    simulators = tuple(dict.fromkeys(
        name for p in plans for name in SIMULATOR_PACKAGES.get(p.protocol.adapter, ())))
    packages = package_versions(tuple(dict.fromkeys(TRACKED_PACKAGES + simulators)))
    commit = git_commit()
    invocation = invocation_entry(request, packages, commit, policy,
                                  allow_mixed_resume=request.allow_mixed_resume, **notes)
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
                "simulator": simulator_facts.get(p.protocol.name, {}),
                "simulator_packages": package_versions(SIMULATOR_PACKAGES.get(p.protocol.adapter, ())),
            }
            for p in plans
        },
        "selection": {"tasks": request.tasks, "episodes_per_task": request.episodes_per_task},
        "expected_episodes": {p.protocol.name: len(p.episodes) for p in plans},
        "policy": policy,
        "render": request.render,
        "packages": packages,
        "git_commit": commit,
        "host": invocation["host"],
        "command": sys.argv,
        "updated_at": utc_now(),
        "invocation": invocation,
    }
