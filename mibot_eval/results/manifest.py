"""What a run manifest records about the software: package versions and the git commit."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess

from mibot_eval.config import project_root

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


def git_commit() -> str | None:
    """HEAD of the harness checkout, with '+dirty' when it has uncommitted changes."""
    root = project_root()
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
