"""Bad input gives one clear line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mibot_eval.cli", *args],
        capture_output=True, text=True, env=full_env, cwd=cwd or ROOT, timeout=300,
    )


def _one_error_line(proc) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("mibot-eval: error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_help_lists_commands() -> None:
    proc = _cli("--help")
    assert proc.returncode == 0
    for command in ("run", "report", "leaderboard", "check", "tiny-checkpoint", "list"):
        assert command in proc.stdout
    run_help = _cli("run", "--help").stdout
    for flag in ("--checkpoint", "--suites", "--tasks", "--episodes", "--video", "--execution"):
        assert flag in run_help


def test_unknown_suite(tmp_path) -> None:
    line = _one_error_line(_cli("run", "--checkpoint", "tiny", "--suites", "libero_nope",
                                "--results", str(tmp_path)))
    assert "unknown suite 'libero_nope'" in line and "libero_spatial" in line


def test_unknown_checkpoint(tmp_path) -> None:
    line = _one_error_line(_cli("run", "--checkpoint", str(tmp_path / "missing"),
                                "--results", str(tmp_path)))
    assert f"no checkpoint folder '{tmp_path / 'missing'}'" in line and "has no 'missing'" in line
    line = _one_error_line(_cli("run", "--checkpoint", "nope", "--results", str(tmp_path)))
    assert "unknown checkpoint 'nope'" in line and "not a local folder" in line


@pytest.mark.skipif(shutil.which("true") is None, reason="posix only")
def test_released_checkpoint_not_cached_and_hub_unreachable(tmp_path) -> None:
    pytest.importorskip("libero")
    line = _one_error_line(_cli(
        "run", "--checkpoint", "Xiaomi-Robotics-0-LIBERO", "--results", str(tmp_path),
        env={"HF_HOME": str(tmp_path / "hf")},
    ))
    assert "XiaomiRobotics/Xiaomi-Robotics-0-LIBERO is not in the local Hugging Face cache" in line
    assert "make eval-libero CHECKPOINT=tiny EPISODES=1 TASKS=0" in line


def test_simulator_not_installed(tmp_path) -> None:
    fake = tmp_path / "shadow" / "libero"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'libero'\")\n")
    line = _one_error_line(_cli(
        "run", "--checkpoint", "tiny", "--results", str(tmp_path),
        env={"PYTHONPATH": f"{tmp_path / 'shadow'}{os.pathsep}{ROOT}"},
    ))
    assert "LIBERO simulator is not installed" in line and "make setup" in line


def _data_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the packaged data folder that this process reads instead (config.DATA_DIR)."""
    from mibot_eval import config

    home = tmp_path / "data"
    shutil.copytree(config.DATA_DIR, home, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(config, "DATA_DIR", home)
    return home


def _main_error_line(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """`mibot-eval ARGS` in this process: exit 2 and one error line, no traceback."""
    from mibot_eval.cli import main

    assert main(list(args)) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("mibot-eval: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_malformed_suite_yaml(tmp_path, monkeypatch, capsys) -> None:
    home = _data_copy(tmp_path, monkeypatch)
    (home / "suites" / "libero_spatial.yaml").write_text("name: libero_spatial\nmax_steps: [220\n")
    line = _main_error_line(capsys, "run", "--checkpoint", "tiny", "--suites", "libero_spatial",
                            "--results", str(tmp_path))
    assert "libero_spatial.yaml" in line and "malformed YAML" in line


def test_malformed_checkpoints_yaml(tmp_path, monkeypatch, capsys) -> None:
    home = _data_copy(tmp_path, monkeypatch)
    (home / "checkpoints.yaml").write_text("checkpoints: [unclosed\n")
    line = _main_error_line(capsys, "run", "--checkpoint", "tiny", "--results", str(tmp_path))
    assert "checkpoints.yaml" in line and "malformed YAML" in line


def test_task_out_of_range(tmp_path) -> None:
    pytest.importorskip("libero")
    line = _one_error_line(_cli("run", "--checkpoint", "tiny", "--suites", "libero_spatial",
                                "--tasks", "12", "--results", str(tmp_path)))
    assert "task id(s) [12] out of range" in line


def test_task_lists_and_ranges() -> None:
    from mibot_eval.commands.arg_types import int_list as _int_list

    assert _int_list("0,3,5") == [0, 3, 5]
    assert _int_list("0-3,7") == [0, 1, 2, 3, 7]
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        _int_list("3-1")
    with pytest.raises(argparse.ArgumentTypeError):
        _int_list("a")


def test_inspect_bad_input_is_one_line() -> None:
    assert "unknown suite 'nope'" in _one_error_line(_cli("inspect", "nope", "0", "0"))
    assert "calvin_env" in _one_error_line(_cli("inspect", "calvin_abc_d", "776", "0"))  # not installed
    if importlib.util.find_spec("libero") is not None:
        line = _one_error_line(_cli("inspect", "libero_spatial", "0", "50"))
        assert "no episode with task 0 and trial 50" in line
    help_text = _cli("inspect", "--help").stdout
    assert "--json" in help_text and "release seed" in help_text
