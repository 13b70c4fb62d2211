"""SimplerEnv prerequisites: missing simulator, missing Vulkan, missing assets -> one clear refusal."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mibot_eval.config import load_suite
from mibot_eval.errors import UserError
from mibot_eval.suites import simpler_backend
from mibot_eval.suites.simpler import SimplerAdapter
from mibot_eval.suites.simpler_assets import (
    LoadRecorder,
    git_deleted_files,
    missing_files,
    overlay_path,
    referenced_files,
    stage_path,
)
from mibot_eval.suites.simpler_backend import (
    check_render_device,
    check_vulkan_loader,
    require_simulator,
    vulkan_icd_files,
)
from tests.simpler_standin import StandinBackend, StandinLoader, make_assets

ROOT = Path(__file__).resolve().parents[1]


def _adapter(tmp_path, skip=(), deleted=None):
    protocol = load_suite("simpler_google_vm")
    listing = SimplerAdapter(protocol, backend=StandinBackend(tmp_path))
    asset_dir = make_assets(tmp_path, [e for task in listing._tasks for e in task], skip=skip)
    backend = StandinBackend(asset_dir, deleted=deleted)
    return SimplerAdapter(protocol, backend=backend), backend


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# -- assets ---------------------------------------------------------------------------------------
def test_missing_stage_is_refused_before_the_env_is_built(tmp_path) -> None:
    adapter, backend = _adapter(tmp_path, skip=("google_pick_coke_can_1_v4",))
    spec = adapter.episodes(tasks=[0], episodes_per_task=1)[0]
    with pytest.raises(UserError) as exc:
        adapter.reset(spec)
    text = _one_line(exc)
    assert text.startswith("simpler_google_vm/0/0 (pick_coke_can) needs simulator assets that are missing")
    assert "data/hab2_bench_assets/stages/google_pick_coke_can_1_v4.glb" in text
    assert "make setup-simpler" in text
    assert backend.built == []
    # other tasks with their assets present still run
    adapter.reset(adapter.episodes(tasks=[2], episodes_per_task=1)[0])


def test_missing_overlay_is_refused(tmp_path) -> None:
    adapter, backend = _adapter(tmp_path, skip=("open_drawer_b1.png",))
    specs = adapter.episodes(tasks=[2])
    needs_b1 = next(
        s for s in specs if adapter.episode_for(s).env_kwargs["rgb_overlay_path"].endswith("b1.png")
    )
    with pytest.raises(UserError, match="real_inpainting/open_drawer_b1.png"):
        adapter.reset(needs_b1)
    assert backend.built == []


def test_missing_mesh_loaded_by_the_simulator_is_refused(tmp_path) -> None:
    """SAPIEN logs a missing mesh and carries on; the recorded load catches it before any step."""
    StandinLoader.errors.clear()
    adapter, backend = _adapter(tmp_path, skip=("GraspSingleOpenedCokeCanInScene",))
    spec = adapter.episodes(tasks=[0], episodes_per_task=1)[0]
    with pytest.raises(UserError, match="models/GraspSingleOpenedCokeCanInScene/textured.obj"):
        adapter.reset(spec)
    assert len(backend.built) == 1 and backend.envs[-1].unwrapped.closed
    assert StandinLoader.errors  # the stand-in, like SAPIEN, only logged it
    assert adapter._env is None


def test_missing_texture_referenced_by_a_mesh_is_refused(tmp_path) -> None:
    adapter, backend = _adapter(tmp_path)
    model = backend.asset_dir / "custom" / "models" / "GraspSingleOpenedCokeCanInScene"
    (model / "textured.obj").write_text("mtllib textured.mtl\nv 0 0 0\n")
    (model / "textured.mtl").write_text("newmtl m\nmap_Kd -bm 1.0 coke_label.png\n")
    with pytest.raises(UserError, match="coke_label.png"):
        adapter.reset(adapter.episodes(tasks=[0], episodes_per_task=1)[0])


def test_tracked_file_missing_next_to_a_loaded_one_is_refused(tmp_path) -> None:
    """A model whose preferred mesh is gone would silently load a fallback from the same folder."""
    protocol_dir = tmp_path / "a"
    adapter, backend = _adapter(protocol_dir)
    dae = (backend.asset_dir / "custom" / "models" / "GraspSingleOpenedCokeCanInScene" / "textured.dae")
    other = backend.asset_dir / "hab2_bench_assets" / "stages" / "some_other_stage.glb"
    backend.deleted = {dae.resolve(), other.resolve()}
    with pytest.raises(UserError, match="textured.dae"):
        adapter.reset(adapter.episodes(tasks=[0], episodes_per_task=1)[0])
    # another file missing from a folder the episode loads from (the stages) is not this episode's
    adapter.reset(adapter.episodes(tasks=[1], episodes_per_task=1)[0])


def test_referenced_files(tmp_path) -> None:
    urdf = tmp_path / "robot" / "r.urdf"
    urdf.parent.mkdir()
    urdf.write_text('<robot name="r"><link name="a"><visual><geometry><mesh filename="meshes/a.obj"/>'
                    '</geometry></visual><collision><geometry><box size="1 1 1"/></geometry></collision>'
                    '</link><link name="b"><visual><geometry><mesh filename="package://x/b.stl"/>'
                    "</geometry></visual></link></robot>")
    assert referenced_files(urdf) == [tmp_path / "robot" / "meshes" / "a.obj"]
    dae = tmp_path / "m.dae"
    dae.write_text('<COLLADA xmlns="http://www.collada.org/2005/11/COLLADASchema"><library_images>'
                   '<image id="i"><init_from>tex.jpg</init_from></image></library_images>'
                   "<library_effects><effect><surface><init_from>i</init_from></surface></effect>"
                   "</library_effects></COLLADA>")
    assert referenced_files(dae) == [tmp_path / "tex.jpg"]
    gltf = tmp_path / "s.gltf"
    gltf.write_text('{"buffers": [{"uri": "s.bin"}], "images": [{"uri": "data:image/png;base64,AA"}]}')
    assert referenced_files(gltf) == [tmp_path / "s.bin"]
    assert missing_files([urdf, dae]) == [tmp_path / "robot" / "meshes" / "a.obj", tmp_path / "tex.jpg"]


def test_paths_from_env_kwargs(tmp_path) -> None:
    raw = "eval_simplerenv/SimplerEnv/ManiSkill2_real2sim/data/real_inpainting/bridge_sink.png"
    assert overlay_path(raw, tmp_path) == str(tmp_path / "real_inpainting" / "bridge_sink.png")
    assert overlay_path(None, tmp_path) is None
    assert stage_path({"scene_name": "dummy_drawer"}, tmp_path) is None
    assert stage_path({"scene_name": "bridge_table_1_v2"}, tmp_path) == (
        tmp_path / "hab2_bench_assets" / "stages" / "bridge_table_1_v2.glb"
    )
    assert stage_path({"robot": "widowx"}, tmp_path).name == "bridge_table_1_v1.glb"


def test_load_recorder_restores_the_loader(tmp_path) -> None:
    original = StandinLoader.load_file
    with pytest.raises(RuntimeError):
        with LoadRecorder([(StandinLoader, "load_file")]) as recorder:
            StandinLoader().load_file(str(tmp_path / "a.glb"))
            StandinLoader().load_file(filename=str(tmp_path / "b.obj"))
            raise RuntimeError("build failed")
    assert StandinLoader.load_file is original
    assert recorder.paths == [str(tmp_path / "a.glb"), str(tmp_path / "b.obj")]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_deleted_files(tmp_path) -> None:
    repo = tmp_path / "ms2"
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "a.glb").write_text("a")
    (repo / "data" / "b.glb").write_text("b")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    (repo / "data" / "b.glb").unlink()
    assert git_deleted_files(repo) == {(repo / "data" / "b.glb").resolve()}
    assert git_deleted_files(tmp_path) is None  # not a checkout


# -- simulator and Vulkan -------------------------------------------------------------------------
def test_missing_simulator(monkeypatch) -> None:
    with pytest.raises(UserError) as exc:
        require_simulator(find_spec=lambda name: None if name != "sapien" else object())
    assert _one_line(exc) == (
        "SimplerEnv is not installed (missing: mani_skill2_real2sim, simpler_env); run `make "
        "setup-simpler` (SimplerEnv + ManiSkill2_real2sim at pinned commits, sapien==2.2.2, numpy<2)"
    )
    # the adapter checks up front, when it is built
    monkeypatch.setattr(simpler_backend, "SIMULATOR_MODULES", ("mibot_no_such_simulator_module",))
    with pytest.raises(UserError, match="SimplerEnv is not installed"):
        SimplerAdapter(load_suite("simpler_widowx"))


def test_missing_vulkan_loader() -> None:
    def no_library(name):
        raise OSError(f"{name}: cannot open shared object file")

    with pytest.raises(UserError) as exc:
        check_vulkan_loader(load_library=no_library)
    text = _one_line(exc)
    assert text.startswith("Vulkan is not available (libvulkan.so.1 not found)")
    assert "apt-get install libvulkan1" in text and "NVIDIA" in text
    check_vulkan_loader(load_library=lambda name: object())


def _refuse():
    raise RuntimeError("Cannot find a suitable rendering device")


def test_missing_vulkan_driver(tmp_path) -> None:
    empty = tmp_path / "icd.d"
    empty.mkdir()
    icds = vulkan_icd_files(environ={}, dirs=[str(empty)])
    assert icds == []
    with pytest.raises(UserError) as exc:
        check_render_device(_refuse, icds, icd_dirs=[str(empty)])
    assert _one_line(exc).startswith(
        "no Vulkan driver found (SAPIEN: Cannot find a suitable rendering device; "
        f"no ICD manifest in {empty})"
    )
    (empty / "nvidia_icd.json").write_text("{}")
    assert vulkan_icd_files(environ={}, dirs=[str(empty)]) == [empty / "nvidia_icd.json"]
    explicit = tmp_path / "lvp.json"
    explicit.write_text("{}")
    assert vulkan_icd_files({"VK_ICD_FILENAMES": str(explicit)}, []) == [explicit]
    check_render_device(lambda: object(), [])  # a renderer that works is enough, manifests or not


def test_no_usable_vulkan_device(tmp_path) -> None:
    with pytest.raises(UserError) as exc:
        check_render_device(_refuse, [tmp_path / "lvp_icd.x86_64.json"])
    text = _one_line(exc)
    assert text.startswith("SAPIEN found no usable Vulkan device (Cannot find a suitable rendering device)")
    assert "llvmpipe" in text


@pytest.mark.skipif(
    any(__import__("importlib").util.find_spec(m) for m in ("sapien", "mani_skill2_real2sim")),
    reason="SimplerEnv is installed here",
)
def test_cli_without_simulator_prints_one_line(tmp_path) -> None:
    checkpoint = tmp_path / "Xiaomi-Robotics-0-SimplerEnv-WidowX"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text('{"model_type": "mibot"}')
    proc = subprocess.run(
        [sys.executable, "-m", "mibot_eval.cli", "run", "--checkpoint", str(checkpoint),
         "--suites", "simpler_widowx", "--results", str(tmp_path / "results")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("mibot-eval: error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "SimplerEnv is not installed" in lines[0] and "make setup-simpler" in lines[0]
