"""A researcher's own checkpoint (issue 19, finding 1): any hub id or local folder resolves, its suites
come from --suites or --like, a mistyped path or a malformed checkpoints.yaml entry is one clear line,
and unlisted checkpoints never share a run folder by accident (planning.checkpoint_label)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mibot_eval
from mibot_eval import config
from mibot_eval.config import CheckpointInfo, load_checkpoints, resolve_checkpoint
from mibot_eval.errors import UserError
from mibot_eval.run.planning import RunRequest, checkpoint_label, plan_suites
from tests.parallel_fakes import write_suite

ROOT = Path(__file__).resolve().parents[1]
LIBERO = load_checkpoints()["Xiaomi-Robotics-0-LIBERO"]


def _folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"model_type": "mibot"}')
    return path


def _one_line(exc: pytest.ExceptionInfo[UserError]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# -- what --checkpoint names ------------------------------------------------------------------------
def test_a_hub_id_not_in_checkpoints_yaml_resolves() -> None:
    """Finding 1: a new hub id used to be refused as an unknown checkpoint."""
    info = resolve_checkpoint("someone/my-finetune")
    assert info.repo == "someone/my-finetune" and info.name == "someone/my-finetune"
    assert not info.listed and info.path is None and info.suites == () and info.like is None
    assert info.origin == "hf:someone/my-finetune"


def test_listed_checkpoints_resolve_as_before() -> None:
    assert resolve_checkpoint("Xiaomi-Robotics-0-LIBERO") == LIBERO
    assert resolve_checkpoint("XiaomiRobotics/Xiaomi-Robotics-0-LIBERO") == LIBERO
    assert LIBERO.listed and LIBERO.origin is None


def test_like_inherits_suites_robot_type_and_reported_numbers(tmp_path) -> None:
    info = resolve_checkpoint("someone/my-finetune", like="Xiaomi-Robotics-0-LIBERO")
    assert info.suites == LIBERO.suites and info.robot_type == "libero_all"
    assert info.reported == LIBERO.reported and info.like == "Xiaomi-Robotics-0-LIBERO"
    assert info.inherited() == {"name": "Xiaomi-Robotics-0-LIBERO", "by": "--like",
                                "suites": list(LIBERO.suites), "robot_type": "libero_all",
                                "reported": LIBERO.reported}
    folder = _folder(tmp_path / "checkpoint-12000")
    local = resolve_checkpoint(str(folder), like="XiaomiRobotics/Xiaomi-Robotics-0-LIBERO")  # or its repo
    assert local.path == str(folder.resolve()) and local.like == "Xiaomi-Robotics-0-LIBERO"
    assert local.name == "checkpoint-12000" and not local.listed


def test_like_errors_are_one_line() -> None:
    with pytest.raises(UserError) as err:
        resolve_checkpoint("someone/my-finetune", like="Xiaomi-Robotics-0-LIBRO")
    assert "--like Xiaomi-Robotics-0-LIBRO: not in checkpoints.yaml" in _one_line(err)
    with pytest.raises(UserError) as err:
        resolve_checkpoint("tiny", like="Xiaomi-Robotics-0-LIBERO")
    assert "--like is for checkpoints not in checkpoints.yaml; 'tiny' is listed" in _one_line(err)


def test_a_local_copy_named_like_a_release_inherits_its_numbers(tmp_path) -> None:
    info = resolve_checkpoint(str(_folder(tmp_path / "Xiaomi-Robotics-0-LIBERO")))
    assert info.like == "Xiaomi-Robotics-0-LIBERO" and info.like_by == "folder name"
    assert info.reported == LIBERO.reported and not info.listed


def test_without_suites_or_like_an_unlisted_checkpoint_says_what_to_pass(tmp_path) -> None:
    request = RunRequest(checkpoint="someone/my-finetune", results_dir=tmp_path)
    with pytest.raises(UserError) as err:
        plan_suites(request, resolve_checkpoint("someone/my-finetune"))
    line = _one_line(err)
    assert "'someone/my-finetune' is not in checkpoints.yaml" in line
    assert "--suites" in line and "--like NAME" in line and "LIKE=" in line
    with pytest.raises(UserError, match="lists no suites in checkpoints.yaml; pass --suites"):
        plan_suites(request, resolve_checkpoint("Xiaomi-Robotics-0"))


@pytest.mark.parametrize("text, says", [
    ("runs/ckpt-1200", "runs has no 'ckpt-1200' (it holds checkpoint-1000, checkpoint-1200)"),
    ("./ckpt-1200", "has no 'ckpt-1200' (it holds runs)"),
    ("runs/checkpoint-1200/extra/", "runs/checkpoint-1200 has no 'extra'"),
    ("a/b/c", "has no 'a'"),
])
def test_a_mistyped_local_path_is_not_taken_for_a_hub_id(tmp_path, monkeypatch, text, says) -> None:
    _folder(tmp_path / "runs" / "checkpoint-1000")
    _folder(tmp_path / "runs" / "checkpoint-1200")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as err:
        resolve_checkpoint(text)
    line = _one_line(err)
    assert line.startswith(f"no checkpoint folder '{text}'") and says in line, line
    assert "a hub id is written owner/name" in line


def test_other_refusals_are_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights.safetensors").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    for text, says in [
        ("nope", "unknown checkpoint 'nope': not in checkpoints.yaml"),
        ("someone/my--finetune", "not a hub id (owner/name)"),  # "--" is not allowed in a repo id
        ("weights.safetensors", "a file, not a checkpoint folder"),
        ("empty", "not a checkpoint folder (no config.json in it)"),
    ]:
        with pytest.raises(UserError) as err:
            resolve_checkpoint(text)
        assert says in _one_line(err), text


@pytest.mark.parametrize("entry, says", [
    ("[1, 2]", "checkpoint 'mine' must be a mapping"),
    ("{repo: a/b, suits: [libero_spatial]}", "unknown field(s) suits"),
    ("{repo: a/b, suites: libero_spatial}", "'suites' must be a list of suite names"),
    ("{repo: a/b, reported: {libero_spatial: {success: high}}}", "'reported' must map suite"),
    ("{repo: a/b, reported: [98.8]}", "'reported' must map suite"),
    ("{repo: 12}", "'repo' must be a string"),
    ("{repo: not a hub id}", "'repo' must be a hub id owner/name"),
    ("{robot_type: libero_all}", "needs a 'repo'"),
    ("{tiny: 'yes'}", "'tiny' must be true or false"),
])
def test_a_malformed_checkpoints_entry_is_one_line(tmp_path, monkeypatch, capsys, entry, says) -> None:
    """Finding 1: a malformed entry used to end in a traceback (e.g. float('high'))."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "suites").symlink_to(config.DATA_DIR / "suites")
    (data / "checkpoints.yaml").write_text(f"checkpoints:\n  mine: {entry}\n")
    monkeypatch.setattr(config, "DATA_DIR", data)
    with pytest.raises(UserError) as err:
        resolve_checkpoint("someone/x")
    line = _one_line(err)
    assert "checkpoints.yaml: checkpoint 'mine'" in line and says in line, line
    from mibot_eval.cli import main

    assert main(["list"]) == 2
    assert capsys.readouterr().err.count("mibot-eval: error:") == 1


# -- run folders --------------------------------------------------------------------------------------
def test_run_folder_names_keep_unlisted_checkpoints_apart(tmp_path) -> None:
    """Two training runs' checkpoint-12000 folders, and a folder named like a hub repo, each get their
    own run folder: the folder name plus 8 hex digits of the absolute path's sha256."""
    one = _folder(tmp_path / "exp1" / "checkpoint-12000")
    two = _folder(tmp_path / "exp2" / "checkpoint-12000")
    labels = [checkpoint_label(resolve_checkpoint(str(p))) for p in (one, two)]
    for path, label in zip((one, two), labels, strict=True):
        assert label == f"checkpoint-12000-{hashlib.sha256(f'local:{path}'.encode()).hexdigest()[:8]}"
    assert labels[0] != labels[1]
    link = tmp_path / "latest"
    link.symlink_to(one)
    assert checkpoint_label(resolve_checkpoint(str(link))) == labels[0]  # the same folder
    assert checkpoint_label(resolve_checkpoint("someone/checkpoint-12000")) == "someone--checkpoint-12000"
    assert checkpoint_label(resolve_checkpoint("Xiaomi-Robotics-0-LIBERO")) == "Xiaomi-Robotics-0-LIBERO"
    assert checkpoint_label(resolve_checkpoint("tiny")) == "tiny"
    assert checkpoint_label(CheckpointInfo(name="step-12000")) == "step-12000"  # a policy object


# -- runs ---------------------------------------------------------------------------------------------
class ZeroPolicy:
    def infer(self, requests):
        return [np.zeros((10, 32), dtype=np.float32) for _ in requests]


def test_like_is_recorded_in_the_manifest_and_the_report_uses_its_numbers(tmp_path, fakesim) -> None:
    """--like: a local folder run with the suites of --suites and the robot type and reported numbers
    of the listed checkpoint; the manifest says what was inherited, the report compares with them."""
    from mibot_eval.results.measure.summary import load_run
    from mibot_eval.run.runner import execute

    suite = write_suite(tmp_path, tasks=1, episodes=1, max_steps=6)
    folder = _folder(tmp_path / "exp1" / "checkpoint-12000")
    run_dir = execute(RunRequest(checkpoint=str(folder), suites=[str(suite)], like="Xiaomi-Robotics-0-LIBERO",
                                 results_dir=tmp_path / "results", video="none", progress=False),
                      policy=ZeroPolicy())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["checkpoint"]["like"] == {
        "name": "Xiaomi-Robotics-0-LIBERO", "by": "--like", "suites": list(LIBERO.suites),
        "robot_type": "libero_all", "reported": LIBERO.reported}
    assert manifest["checkpoint"]["source"] == str(folder.resolve())
    assert manifest["suites"]["fake"]["robot_type"] == "libero_all"
    assert run_dir.name == checkpoint_label(resolve_checkpoint(str(folder))) + "__fakesim__sync"
    summary = load_run(run_dir)
    assert summary.reported == LIBERO.reported and summary.reported_source == "Xiaomi-Robotics-0-LIBERO"


def _evaluate_policy(tmp_path, suite, **kw):
    return mibot_eval.evaluate(ZeroPolicy(), suites=[str(suite)], results_dir=tmp_path / "results",
                               progress=False, **kw)


def test_a_policy_object_takes_like_and_its_name_is_never_fetched(tmp_path, fakesim) -> None:
    suite = write_suite(tmp_path, tasks=1, episodes=1, max_steps=6)
    summary = _evaluate_policy(tmp_path, suite, name="team/step-12000", like="Xiaomi-Robotics-0-LIBERO")
    assert summary.checkpoint == "step-12000" and summary.reported_source == "Xiaomi-Robotics-0-LIBERO"
    assert summary.manifest["checkpoint"]["like"]["name"] == "Xiaomi-Robotics-0-LIBERO"
    with pytest.raises(UserError, match="pass --suites a,b .* or --like NAME"):
        mibot_eval.evaluate(ZeroPolicy(), name="step-1", results_dir=tmp_path / "results", progress=False)


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("HF_HOME", "HF_HUB_CACHE")}
    return subprocess.run([sys.executable, "-m", "mibot_eval.cli", *args], capture_output=True, text=True,
                          env={**full, "HF_HUB_OFFLINE": "1", **(env or {})}, cwd=cwd, timeout=300)


def _error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("mibot-eval: error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_offline_a_new_hub_id_is_not_in_the_local_cache(tmp_path) -> None:
    """Done-means of issue 19: offline, `run --checkpoint some/new-id --suites libero_spatial` says the
    checkpoint is not in the local Hugging Face cache (not that it is unknown) and exits 2."""
    pytest.importorskip("libero", reason="LIBERO is installed by `make setup`")
    line = _error_line(_cli("run", "--checkpoint", "some/new-id", "--suites", "libero_spatial",
                            "--results", str(tmp_path / "results"), "--video", "none",
                            env={"HF_HOME": str(tmp_path / "hf")}))
    assert "checkpoint some/new-id is not in the local Hugging Face cache" in line
    assert str(tmp_path / "hf") in line and "HF_HUB_OFFLINE=1" in line and "unknown" not in line
    assert not (tmp_path / "results").exists()  # refused before any run folder (or ETA) was made
    line = _error_line(_cli("run", "--checkpoint", "some/new-id", "--results", str(tmp_path / "r")))
    assert "--suites" in line and "--like NAME" in line


def test_help_and_list_say_any_checkpoint_works() -> None:
    text = " ".join(_cli("run", "--help").stdout.split())
    assert "any hub id owner/name" in text and "needs --suites or --like" in text and "--like NAME" in text
    proc = _cli("list")
    assert proc.returncode == 0 and "any other hub id owner/name or local folder" in proc.stdout


def test_makefile_passes_like() -> None:
    make = (ROOT / "Makefile").read_text()
    assert "$(if $(LIKE),--like $(LIKE))" in make.split("RUN_FLAGS =", 1)[1].split("\n\n", 1)[0]
    proc = subprocess.run(["make", "-n", "eval-libero", "CHECKPOINT=someone/ft",
                           "LIKE=Xiaomi-Robotics-0-LIBERO", "VENV=.venv"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    if proc.returncode != 0:
        pytest.skip(f"make -n failed: {proc.stderr.strip()[:200]}")
    assert "--checkpoint someone/ft" in proc.stdout and "--like Xiaomi-Robotics-0-LIBERO" in proc.stdout


def test_suite_yaml_is_package_data() -> None:
    """Finding 2 (the dev tree's side; tests/test_installed.py installs a wheel): suites and
    checkpoints.yaml live inside the package, in one copy, and pyproject ships them."""
    package = Path(mibot_eval.__file__).resolve().parent
    assert config.suites_dir() == package / "data" / "suites"
    assert config.checkpoints_file() == package / "data" / "checkpoints.yaml"
    assert not (ROOT / "suites").exists() and not (ROOT / "checkpoints.yaml").exists()
    text = (ROOT / "pyproject.toml").read_text()
    assert '"mibot_eval.data" = ["checkpoints.yaml", "suites/*.yaml", "suites/*/*.yaml"]' in text
    suites = config.suites_dir()
    deeper = [p for p in suites.rglob("*.yaml") if len(p.relative_to(suites).parts) > 2]
    assert not deeper, f"suite YAMLs below suites/<group>/ are not package data: {deeper}"
