"""The user's path (issue 19, findings 1 and 2): an installed wheel, run from another folder, lists the
suites and runs an episode; a hub id that checkpoints.yaml does not list runs from the local Hugging
Face cache, offline.

Both build nothing online: the wheel is built with the project venv's setuptools (--no-build-isolation)
and installed with --no-deps --no-index into a fresh venv that sees the project venv's packages
through a .pth line (a line added to sys.path: the dev tree's editable-install hook in that folder is
not run, so the installed copy is the only mibot_eval there is). Each runs one short LIBERO episode.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import mibot_eval

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(mibot_eval.__file__).resolve().parent
EPISODE = ["--suites", "libero_spatial", "--tasks", "0", "--episodes", "1", "--max-steps", "20",
           "--video", "none"]


def _env(**extra: str) -> dict[str, str]:
    """The test process's environment without anything that points at the dev tree, offline."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "HF_HOME", "HF_HUB_CACHE", "VIRTUAL_ENV")}
    return {**env, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra}


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _source_copy(dest: Path) -> Path:
    """What a git clone holds for a build (the package, pyproject, README), away from the checkout."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(ROOT / "mibot_eval", dest / "mibot_eval",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the built wheel installed; returns the venv folder."""
    tmp = tmp_path_factory.mktemp("installed")
    source = _source_copy(tmp / "src")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "--quiet", "--wheel-dir", str(tmp / "wheels"), str(source)], cwd=tmp, env=_env())
    (wheel,) = (tmp / "wheels").glob("mibot_eval-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp, env=_env())
    python = venv / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=tmp, env=_env()).stdout.strip())
    ours = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}  # torch, LIBERO, ... (no wheel)
    (purelib / "_project_packages.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
          "--quiet", str(wheel)], cwd=tmp, env=_env())
    return venv


def test_the_installed_package_is_the_one_imported(installed, tmp_path) -> None:
    code = ("import mibot_eval, importlib.metadata as m; print(mibot_eval.__file__); "
            "print(m.version('mibot-eval'))")
    out = _run([str(installed / "bin" / "python"), "-c", code], cwd=tmp_path, env=_env()).stdout.split()
    assert Path(out[0]).is_relative_to(installed) and out[1] == mibot_eval.__version__
    package = Path(out[0]).parent
    source = sorted(p.relative_to(PACKAGE) for p in (PACKAGE / "data").rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts)
    shipped = sorted(p.relative_to(package) for p in (package / "data").rglob("*") if p.is_file())
    assert shipped == source  # every suite, family file and checkpoints.yaml ships, nothing else
    for rel in source:
        assert (package / rel).read_bytes() == (PACKAGE / rel).read_bytes(), rel


def test_installed_tool_lists_suites_and_runs_an_episode_from_another_folder(installed, tmp_path) -> None:
    """Finding 2: `pip install` then `mibot-eval list` printed no suites and `run` failed with
    `checkpoints.yaml: file not found`."""
    pytest.importorskip("libero", reason="LIBERO is installed by `make setup`")
    tool = str(installed / "bin" / "mibot-eval")
    listing = _run([tool, "list"], cwd=tmp_path, env=_env()).stdout
    suites, checkpoints = listing.split("checkpoints:")
    for suite in ("libero_spatial", "libero_10", "calvin_abc_d", "simpler_widowx", "libero_spatial_lan"):
        assert f"\n  {suite} " in suites, suite
    for name in ("Xiaomi-Robotics-0-LIBERO", "tiny"):
        assert f"\n  {name} " in checkpoints, name
    _run([tool, "run", "--checkpoint", "tiny", *EPISODE, "--results", "results", "--no-report"],
         cwd=tmp_path, env=_env())
    run_dir = tmp_path / "results" / "tiny__libero__sync__max20"
    (record,) = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    assert record["status"] == "ok" and record["steps"] == 20 and record["key"] == "libero_spatial/0/0"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["git_commit"] is None  # an installed copy is no checkout
    assert Path(manifest["suites"]["libero_spatial"]["source"]).is_relative_to(installed)


def _fake_hub_cache(cache: Path, repo: str, checkpoint: Path, commit: str) -> Path:
    """The Hugging Face hub cache layout holding one snapshot of `checkpoint` as `repo`."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / commit
    shutil.copytree(checkpoint, snapshot, ignore=shutil.ignore_patterns(".*", "__pycache__"))
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    return snapshot


def test_a_hub_id_not_in_checkpoints_yaml_runs_from_the_local_cache(tmp_path, tiny_checkpoint) -> None:
    """Finding 1: `run --checkpoint someone/my-finetune` was refused as unknown; now it resolves from
    the local Hugging Face cache (offline) and --like gives it the listed checkpoint's numbers."""
    pytest.importorskip("libero", reason="LIBERO is installed by `make setup`")
    from mibot_eval.policy.checkpoint import fingerprint

    commit = hashlib.sha1(b"someone/tiny-finetune").hexdigest()
    snapshot = _fake_hub_cache(tmp_path / "hub", "someone/tiny-finetune", tiny_checkpoint, commit)
    env = _env(HF_HUB_CACHE=str(tmp_path / "hub"), HF_HOME=str(tmp_path / "hf"))
    proc = _run([sys.executable, "-m", "mibot_eval.cli", "run", "--checkpoint", "someone/tiny-finetune",
                 "--like", "Xiaomi-Robotics-0-LIBERO", *EPISODE, "--results", "results"],
                cwd=tmp_path, env=env)
    run_dir = tmp_path / "results" / "someone--tiny-finetune__libero__sync__max20"
    (record,) = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    assert record["status"] == "ok" and record["steps"] == 20
    assert record["checkpoint"] == "someone/tiny-finetune" and record["robot_type"] == "libero_all"
    checkpoint = json.loads((run_dir / "manifest.json").read_text())["checkpoint"]
    assert checkpoint["source"] == "hf:someone/tiny-finetune" and checkpoint["revision"] == commit
    assert checkpoint["hash"] == fingerprint(snapshot) == fingerprint(tiny_checkpoint)
    assert checkpoint["like"]["name"] == "Xiaomi-Robotics-0-LIBERO" and checkpoint["like"]["by"] == "--like"
    assert "| libero_spatial | success | 98.8 | 500 | 0.0 |" in proc.stdout  # the inherited number, release n
