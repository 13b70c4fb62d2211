"""Asset checks for SimplerEnv episodes: refuse an episode whose files are not all on disk.

SAPIEN does not fail on a missing mesh: it logs an error and builds the object without it (an
invisible table, a robot link or an object that is not rendered, or, for a scene stage, no table
collision at all). So before an episode runs, the adapter checks:

1. before building the env: the episode's real-image overlay and scene stage (from its env kwargs);
2. while the env is built and reset: every file SAPIEN is asked to load (recorded by `LoadRecorder`),
   expanded to the files those reference (URDF meshes, OBJ material libraries, MTL textures,
   COLLADA images, glTF buffers and images);
3. when ManiSkill2_real2sim is a git checkout (as `make setup-simpler` leaves it): tracked files
   missing from the work tree (`git ls-files --deleted`) that share a loaded file's folder and name
   but not its extension; this catches a model whose preferred mesh (textured.obj, then .dae, then
   .glb) is missing and that ManiSkill2_real2sim silently replaces with the next one.
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

OVERLAY_MARKER = "ManiSkill2_real2sim/data/"
STAGES_SUBDIR = ("hab2_bench_assets", "stages")
# env robot name -> ManiSkill2_real2sim's default stage when scene_name is not given
DEFAULT_STAGES = {"google_robot_static": "google_pick_coke_can_1_v4", "widowx": "bridge_table_1_v1"}
TEXTURE_KEYS = ("map_kd", "map_ks", "map_ka", "map_ke", "map_ns", "map_d", "map_bump", "bump", "disp",
                "norm", "map_pr", "map_pm", "map_ps", "map_refl", "refl")


def overlay_path(raw: str | None, asset_dir: Path) -> str | None:
    """The release's overlay path (relative to its checkout) on the installed asset folder."""
    if raw is None:
        return None
    text = str(raw).replace("\\", "/")
    if OVERLAY_MARKER in text:
        return str(Path(asset_dir) / text.split(OVERLAY_MARKER, 1)[1])
    return text


def stage_path(env_kwargs: dict[str, Any], asset_dir: Path) -> Path | None:
    """The scene stage (.glb) an episode loads, or None for ManiSkill2_real2sim's "dummy" scenes."""
    scene = env_kwargs.get("scene_name")
    if scene is None:
        robot = str(env_kwargs.get("robot", ""))
        scene = next((v for k, v in DEFAULT_STAGES.items() if k in robot), None)
        if scene is None:
            return None
    if "dummy" in str(scene):
        return None
    return Path(asset_dir).joinpath(*STAGES_SUBDIR, f"{scene}.glb")


def static_requirements(env_kwargs: dict[str, Any], asset_dir: Path) -> list[Path]:
    """Files known from the env kwargs alone (checked before the env is built)."""
    paths = []
    overlay = env_kwargs.get("rgb_overlay_path")
    if overlay:
        paths.append(Path(overlay))
    stage = stage_path(env_kwargs, asset_dir)
    if stage is not None:
        paths.append(stage)
    return paths


# -- files referenced by other files --------------------------------------------------------------
def _local(base: Path, ref: str) -> Path | None:
    """A file reference resolved against the referencing file's folder (None: not a local file)."""
    ref = ref.strip().strip('"')
    if not ref or ref.startswith(("#", "data:", "package://")):
        return None
    if "://" in ref:
        if not ref.startswith("file://"):
            return None
        ref = ref[len("file://"):]
    path = Path(ref)
    return path if path.is_absolute() else base.parent / path


def _xml_root(path: Path) -> ET.Element | None:
    try:
        return ET.parse(path).getroot()
    except (ET.ParseError, OSError):
        return None


def _strip(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def referenced_files(path: Path) -> list[Path]:
    """Files that `path` itself points to (only for the formats SAPIEN loads here)."""
    suffix = path.suffix.lower()
    refs: list[str] = []
    if suffix == ".urdf":
        root = _xml_root(path)
        if root is not None:
            refs = [el.get("filename", "") for el in root.iter() if _strip(el.tag) == "mesh"]
    elif suffix == ".obj":
        refs = _directive_args(path, ("mtllib",))
    elif suffix == ".mtl":
        refs = _directive_args(path, TEXTURE_KEYS, last_token=True)
    elif suffix == ".dae":
        root = _xml_root(path)
        if root is not None:
            refs = [
                (child.text or "")
                for image in root.iter()
                if _strip(image.tag) == "image"
                for child in image.iter()
                if _strip(child.tag) in ("init_from", "ref")
            ]
    elif suffix == ".gltf":
        import json

        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        refs = [item.get("uri", "") for key in ("buffers", "images") for item in data.get(key, [])]
    found = (_local(path, ref) for ref in refs)
    return [p for p in found if p is not None]


def _directive_args(path: Path, keys: Sequence[str], last_token: bool = False) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    refs = []
    for line in lines:
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and parts[0].lower() in keys:
            arg = parts[1].strip()
            # texture options (-bm 1.0 ...) come before the file name
            refs.append(arg.split()[-1] if last_token else arg)
    return refs


def missing_files(paths: Iterable[Path | str]) -> list[Path]:
    """Files among `paths` and everything they reference (recursively) that do not exist."""
    missing: list[Path] = []
    seen: set[Path] = set()
    todo = [Path(p) for p in paths]
    while todo:
        path = todo.pop(0)
        key = Path(str(path))
        if key in seen:
            continue
        seen.add(key)
        if not path.is_file():
            missing.append(path)
            continue
        todo.extend(referenced_files(path))
    return missing


# -- recording what the simulator loads -----------------------------------------------------------
class LoadRecorder:
    """While active, records the file argument of the given loader methods (patched on their class).

    targets: (class, method name) pairs; the file is the first positional argument or `filename`.
    """

    def __init__(self, targets: Sequence[tuple[Any, str]]) -> None:
        self.targets = list(targets)
        self.paths: list[str] = []
        self._saved: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> LoadRecorder:
        for owner, name in self.targets:
            original = getattr(owner, name)
            self._saved.append((owner, name, original))
            setattr(owner, name, self._wrap(original))
        return self

    def __exit__(self, *exc: object) -> None:
        while self._saved:
            owner, name, original = self._saved.pop()
            setattr(owner, name, original)

    def _wrap(self, original: Any) -> Any:
        paths = self.paths

        def recording(obj: Any, *args: Any, **kwargs: Any) -> Any:
            filename = args[0] if args else kwargs.get("filename")
            if filename is not None:
                paths.append(str(filename))
            return original(obj, *args, **kwargs)

        return recording


# -- git checkouts --------------------------------------------------------------------------------
def git_deleted_files(root: Path) -> set[Path] | None:
    """Tracked files missing from the work tree of the git checkout at `root` (None: not a checkout)."""
    root = Path(root)
    if not (root / ".git").exists() or shutil.which("git") is None:
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "--deleted", "-z"],
            capture_output=True, check=True, timeout=60,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    return {(root / name).resolve() for name in out.decode("utf-8", "replace").split("\0") if name}


def missing_siblings(loaded: Iterable[Path | str], deleted: set[Path]) -> list[Path]:
    """Deleted tracked files with the name of a loaded file but another extension, in its folder:
    ManiSkill2_real2sim loads a model's textured.obj, else textured.dae, else textured.glb, so a
    missing preferred mesh is silently replaced by a fallback (a different-looking object)."""
    stems = {(p.parent, p.stem) for p in (Path(x).resolve() for x in loaded)}
    return sorted(p for p in deleted if (p.parent, p.stem) in stems)


def describe_missing(paths: Sequence[Path], root: Path | None = None, limit: int = 3) -> str:
    """`a, b, c (and N more)`, relative to `root` when possible."""
    def show(p: Path) -> str:
        if root is not None:
            try:
                return str(Path(p).resolve().relative_to(Path(root).resolve()))
            except ValueError:
                pass
        return str(p)

    names = [show(p) for p in paths[:limit]]
    more = f" (and {len(paths) - limit} more)" if len(paths) > limit else ""
    return ", ".join(names) + more

