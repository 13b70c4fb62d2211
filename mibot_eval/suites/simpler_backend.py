"""The real SimplerEnv simulator behind the adapter, and the up-front checks for it.

SimplerEnv and its ManiSkill2_real2sim fork are not on PyPI: `make setup-simpler`
(scripts/setup_simpler.sh) installs them at the commits the Xiaomi-Robotics-0 release evaluated with.
SAPIEN renders with Vulkan, so a missing loader, driver or usable device is reported before any
episode starts, each as one line saying what to install.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import os
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mibot_eval.errors import UserError
from mibot_eval.suites.simpler_assets import LoadRecorder, git_deleted_files

SETUP_HINT = (
    "run `make setup-simpler` (SimplerEnv + ManiSkill2_real2sim at pinned commits, sapien==2.2.2, numpy<2)"
)
SIMULATOR_MODULES = ("sapien", "mani_skill2_real2sim", "simpler_env")
VULKAN_LOADERS = ("libvulkan.so.1", "libvulkan.so")
ICD_DIRS = (
    "/usr/share/vulkan/icd.d",
    "/usr/local/share/vulkan/icd.d",
    "/etc/vulkan/icd.d",
)
INSTALL_VULKAN = (
    "install the Vulkan loader and a driver: on NVIDIA GPUs the driver's Vulkan ICD (nvidia_icd.json, "
    "part of the NVIDIA driver; in containers expose it with NVIDIA_DRIVER_CAPABILITIES=all), plus "
    "`apt-get install libvulkan1 vulkan-tools`; check with `vulkaninfo --summary`"
)
# the SAPIEN loader calls whose file argument the asset check records (ActorBuilder and its subclasses)
RECORDED_BUILDER_METHODS = (
    "add_visual_from_file",
    "add_collision_from_file",
    "add_multiple_collisions_from_file",
    "add_nonconvex_collision_from_file",
)
RECORDED_URDF_METHODS = ("load", "load_kinematic", "load_file_as_articulation_builder")


def require_simulator(find_spec: Callable[[str], Any] = importlib.util.find_spec) -> None:
    """SimplerEnv, ManiSkill2_real2sim and SAPIEN must be importable (checked without importing)."""
    missing = [name for name in SIMULATOR_MODULES if find_spec(name) is None]
    if missing:
        raise UserError(f"SimplerEnv is not installed (missing: {', '.join(missing)}); {SETUP_HINT}")


def vulkan_icd_files(
    environ: Mapping[str, str] = os.environ, dirs: Iterable[str] = ICD_DIRS
) -> list[Path]:
    """Vulkan driver manifests the loader would consider (explicit lists first, then the usual folders)."""
    for key in ("VK_DRIVER_FILES", "VK_ICD_FILENAMES"):
        if environ.get(key):
            return [Path(p) for p in environ[key].split(os.pathsep) if p and Path(p).is_file()]
    folders = list(dirs)
    for base in (environ.get("XDG_DATA_DIRS") or "").split(os.pathsep):
        if base:
            folders.append(os.path.join(base, "vulkan", "icd.d"))
    found: list[Path] = []
    for folder in folders:
        path = Path(folder)
        if path.is_dir():
            found += sorted(path.glob("*.json"))
    return found


def check_vulkan_loader(load_library: Callable[[str], Any] = ctypes.CDLL) -> None:
    """The Vulkan loader library must be present (SAPIEN links against it)."""
    for name in VULKAN_LOADERS:
        try:
            load_library(name)
            return
        except OSError:
            continue
    raise UserError(
        "Vulkan is not available (libvulkan.so.1 not found); SimplerEnv renders with it: "
        f"{INSTALL_VULKAN}"
    )


def check_render_device(make_renderer: Callable[[], Any], icd_files: Sequence[Path],
                        icd_dirs: Iterable[str] = ICD_DIRS) -> None:
    """SAPIEN must find a Vulkan device it can render with (it refuses CPU-only Mesa llvmpipe).

    Creating SAPIEN's renderer is the test; the driver manifests found only choose the message.
    """
    try:
        renderer = make_renderer()
    except RuntimeError as exc:
        if not icd_files:
            raise UserError(
                f"no Vulkan driver found (SAPIEN: {exc}; no ICD manifest in {', '.join(icd_dirs)}): "
                f"{INSTALL_VULKAN}"
            ) from None
        raise UserError(
            f"SAPIEN found no usable Vulkan device ({exc}); it needs a GPU Vulkan driver (CPU-only Mesa "
            f"llvmpipe lacks a feature SAPIEN 2.2.2 requires): {INSTALL_VULKAN}"
        ) from None
    del renderer


def import_simulator() -> tuple[Any, Any, Callable[..., Any]]:
    """(sapien.core, mani_skill2_real2sim, build_maniskill2_env), or one clear line."""
    try:
        import sapien.core as sapien
    except ModuleNotFoundError as exc:
        if exc.name == "pkg_resources":
            raise UserError(
                "sapien 2.2.2 imports pkg_resources, which setuptools>=81 no longer ships: "
                "pip install 'setuptools<81' (make setup-simpler pins it)"
            ) from None
        raise UserError(f"SimplerEnv is not installed ({exc}); {SETUP_HINT}") from None
    except ImportError as exc:
        if "vulkan" in str(exc).lower():
            raise UserError(f"Vulkan is not available ({exc}): {INSTALL_VULKAN}") from None
        raise UserError(f"SAPIEN does not load ({exc}); {SETUP_HINT}") from None
    try:
        import mani_skill2_real2sim
        import mani_skill2_real2sim.envs  # noqa: F401 - registers the environments
        from simpler_env.utils.env.env_builder import build_maniskill2_env
    except ImportError as exc:
        raise UserError(f"SimplerEnv does not load ({exc}); {SETUP_HINT}") from None
    return sapien, mani_skill2_real2sim, build_maniskill2_env


def _git_commit(path: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


class SimulatorBackend:
    """SimplerEnv's own env builder (the release's `build_maniskill2_env`), after the checks above."""

    name = "simpler_env"

    def __init__(self) -> None:
        require_simulator()
        check_vulkan_loader()
        self._sapien, ms2, self._build = import_simulator()
        check_render_device(lambda: self._sapien.SapienRenderer(offscreen_only=True), vulkan_icd_files())
        self.asset_dir = Path(ms2.ASSET_DIR).resolve()
        self.ms2_root = Path(ms2.__file__).resolve().parents[1]
        simpler_env = importlib.import_module("simpler_env")
        self.simpler_root = Path(simpler_env.__file__).resolve().parents[1]
        self._deleted = git_deleted_files(self.ms2_root)

    def make_env(self, env_kwargs: dict[str, Any]) -> Any:
        return self._build(**env_kwargs)

    def recorder(self) -> LoadRecorder:
        targets = [(self._sapien.ActorBuilder, m) for m in RECORDED_BUILDER_METHODS]
        targets += [(self._sapien.URDFLoader, m) for m in RECORDED_URDF_METHODS]
        return LoadRecorder(targets)

    def deleted_files(self) -> set[Path] | None:
        return self._deleted

    def describe(self) -> dict[str, Any]:
        from importlib.metadata import PackageNotFoundError, version

        def pkg(name: str) -> str | None:
            try:
                return version(name)
            except PackageNotFoundError:
                return None

        return {
            "sapien": pkg("sapien"),
            "simpler_env_commit": _git_commit(self.simpler_root),
            "mani_skill2_real2sim_commit": _git_commit(self.ms2_root),
            "asset_dir": str(self.asset_dir),
        }
