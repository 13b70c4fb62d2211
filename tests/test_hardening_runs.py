"""Full disks, read errors, malformed files, signals and dying workers never cost a result
(the hardening issue, items 1-10; each test names its item)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mibot_eval.cli import main
from mibot_eval.errors import StoreError
from mibot_eval.results.store import RunStore, read_records
from mibot_eval.results.views.report import report_run
from mibot_eval.run.planning import RunRequest
from mibot_eval.run.runner import execute
from tests.data.fixtures import libero_run, official, task_records, write_run
from tests.fakes import ScriptedPolicy
from tests.parallel_fakes import write_suite

ROOT = Path(__file__).resolve().parents[1]
REAL_FSYNC = os.fsync


def full_disk_after(n: int):
    """An os.fsync that fails with ENOSPC from its n-th call on (the disk filled up)."""
    real, calls = os.fsync, [0]

    def fsync(fd: int) -> None:
        calls[0] += 1
        if calls[0] >= n:
            raise OSError(28, "No space left on device")
        real(fd)

    return fsync


def _fake_run(tmp_path, fakesim_suite, **kw) -> RunRequest:
    (tmp_path / "ckpt").mkdir(exist_ok=True)
    (tmp_path / "ckpt" / "config.json").write_text('{"model_type": "mibot"}')
    return RunRequest(checkpoint=str(tmp_path / "ckpt"), suites=[str(fakesim_suite)], video="none",
                      results_dir=tmp_path / "results", run_name="r", progress=False, **kw)


def _lines(run_dir: Path) -> list[str]:
    return (run_dir / "episodes.jsonl").read_text().splitlines()


@pytest.mark.parametrize("workers", [None, 2])
def test_a_store_that_fails_mid_run_stops_it_with_one_line_and_loses_nothing(
        tmp_path, fakesim, monkeypatch, workers) -> None:
    """Items 1 and 2: never taken for a simulator crash, no episode counted that is not on disk,
    no partial line left; the rerun completes the run."""
    suite = write_suite(tmp_path, tasks=2, episodes=3, max_steps=6)
    request = _fake_run(tmp_path, suite, workers=workers)
    # the manifest takes one fsync, the first record the second; the second record's fails
    monkeypatch.setattr(os, "fsync", full_disk_after(3))
    with pytest.raises(StoreError, match=r"cannot write .*episodes\.jsonl \(No space left on device\);"
                                         r" the episodes finished so far are safe"):
        execute(request, policy=ScriptedPolicy())
    run_dir = tmp_path / "results" / "r"
    on_disk = _lines(run_dir)
    assert len(on_disk) == 1 and all(line.startswith("{") for line in on_disk)  # no torn line
    assert (run_dir / "episodes.jsonl").read_bytes().endswith(b"\n")
    monkeypatch.setattr(os, "fsync", REAL_FSYNC)
    execute(request, policy=ScriptedPolicy())
    keys = [json.loads(line)["key"] for line in _lines(run_dir)]
    assert sorted(keys) == sorted(f"fake/{t}/{i}" for t in range(2) for i in range(3))


def test_store_error_is_one_line_at_the_cli(tmp_path, capsys) -> None:
    """Item 2 at the command line: a read-only results folder -> exit 2 and one line."""
    run_dir = libero_run(tmp_path, "ro", {"libero_spatial": [5]}, episodes=5)
    (run_dir / "report.md").mkdir()  # the report cannot be written there
    assert main(["report", str(run_dir), "--no-leaderboard"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mibot-eval: error:")


def test_parallel_counters_accumulate_and_files_follow_the_umask(tmp_path, fakesim) -> None:
    """Item 5."""
    suite = write_suite(tmp_path, tasks=2, episodes=2, max_steps=6)
    execute(_fake_run(tmp_path, suite, workers=2, tasks=[0]), policy=ScriptedPolicy())
    execute(_fake_run(tmp_path, suite, workers=2, tasks=[0, 1]), policy=ScriptedPolicy())
    run_dir = tmp_path / "results" / "r"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    first, second = manifest["parallel_runs"]
    assert manifest["parallel"]["totals"]["batched_requests"] == (
        first["batched_requests"] + second["batched_requests"])
    mask = os.umask(0)
    os.umask(mask)
    for name in ("manifest.json", "episodes.jsonl"):
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == 0o666 & ~mask, name
    report_run(run_dir)
    for name in ("report.md", "report.csv"):
        assert stat.S_IMODE((run_dir / name).stat().st_mode) == 0o666 & ~mask, name


def test_a_worker_killed_while_starting_is_replaced(tmp_path, fakesim, monkeypatch) -> None:
    """Item 4: a start failure is a crash (replace, retry); only repeated ones stop the run."""
    from mibot_eval.run.backends import local

    spawn = local.LocalPool._spawn
    killed: list[int] = []

    def spawn_and_kill_the_first(self, slot):
        worker = spawn(self, slot)
        if not killed:
            worker.process.kill()
            killed.append(worker.process.pid)
        return worker

    monkeypatch.setattr(local.LocalPool, "_spawn", spawn_and_kill_the_first)
    suite = write_suite(tmp_path, tasks=2, episodes=2, max_steps=6)
    execute(_fake_run(tmp_path, suite, workers=2), policy=ScriptedPolicy())
    run_dir = tmp_path / "results" / "r"
    assert len(_lines(run_dir)) == 4 and killed
    assert json.loads((run_dir / "manifest.json").read_text())["parallel"]["start_failures"] == 1

    def spawn_and_kill_always(self, slot):
        worker = spawn(self, slot)
        worker.process.kill()
        return worker

    monkeypatch.setattr(local.LocalPool, "_spawn", spawn_and_kill_always)
    with pytest.raises(Exception, match="failed to start 3 times in a row"):
        execute(_fake_run(tmp_path / "b", write_suite(tmp_path / "b", tasks=1, episodes=1),
                          workers=1), policy=ScriptedPolicy())


def test_the_progress_bar_counts_errors_recorded_earlier(tmp_path) -> None:
    """Item 5: a resumed run's bar starts from the records on disk, errors included."""
    from mibot_eval.run.ledger import Ledger

    store = RunStore(tmp_path / "run")
    done = task_records("libero_spatial", 0, 2, 3, errors=2)
    ledger = Ledger(store, {}, 10, done, "s", progress=False)
    assert (ledger.successes, ledger.errors, ledger.bar.n) == (2, 2, 5)
    ledger.close()


# -- reading records (items 6-10) -------------------------------------------------------------------
@pytest.mark.parametrize("line, problem", [
    (b"not json at all\n", "not JSON"),
    (b"[1, 2, 3]\n", "a JSON list, not a record"),
    (b"\xff\xfe\x00garbage\x80\n", "not JSON"),
    (b'{"key": "s/0/0", "success": "false"}\n', "'success' is 'false'"),
    (b'{"key": "s/0/0", "success": true, "status": "maybe"}\n', "'status' is 'maybe'"),
    (b'{"success": true}\n', "no 'key' field"),
])
def test_a_malformed_record_is_one_line_naming_file_and_line(tmp_path, capsys, line, problem) -> None:
    """Items 6 and 8 (a torn LAST line is still dropped silently)."""
    run_dir = libero_run(tmp_path, "bad", {"libero_spatial": [2]}, episodes=2)
    with (run_dir / "episodes.jsonl").open("ab") as stream:
        stream.write(line)
        stream.write(b'{"key": "libero_spatial/0/9", "succ')  # torn tail: ignored
    with pytest.raises(StoreError, match=rf"episodes\.jsonl:3: malformed episode record: .*{problem}"):
        list(read_records(run_dir / "episodes.jsonl"))
    for command in (["report", str(run_dir), "--no-leaderboard"], ["leaderboard", str(tmp_path)],
                    ["check", "--candidate", str(run_dir), "--baseline", "release"],
                    ["merge", str(run_dir), "-o", str(tmp_path / "merged")]):
        assert main(command) == 2, command
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "episodes.jsonl:3: malformed episode record" in err[0], (command, err)


@pytest.mark.parametrize("text", ["", "{not json", "[]", "\x00\x01"])
def test_an_empty_or_invalid_manifest_is_one_line(tmp_path, capsys, text) -> None:
    run_dir = libero_run(tmp_path, "m", {"libero_spatial": [2]}, episodes=2)
    (run_dir / "manifest.json").write_text(text)
    assert main(["report", str(run_dir), "--no-leaderboard"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.json: not a valid manifest" in err[0]


def test_a_run_without_manifest_gets_its_coverage_from_the_suite_yaml(tmp_path) -> None:
    """Item 7: 3 of 500 episodes is partial, never complete; an unknown protocol is unknown."""
    run_dir = libero_run(tmp_path, "nomanifest", {"libero_spatial": [3]}, episodes=3)
    (run_dir / "manifest.json").unlink()
    text = report_run(run_dir)
    assert "partial: 3/500 episodes (0.6% of the protocol)" in text and "status: **PARTIAL**" in text
    records = [json.loads(line) for line in _lines(run_dir)]
    (run_dir / "episodes.jsonl").write_text(
        "".join(json.dumps({**r, "protocol_hash": "0000000000000000"}) + "\n" for r in records))
    text = report_run(run_dir)
    assert "unknown coverage: 3 episodes" in text and "status: complete" not in text


def test_an_episode_recorded_twice_with_different_outcomes_is_named(tmp_path) -> None:
    """Item 9."""
    records = task_records("libero_spatial", 0, 2, 2)
    flipped = {**records[0], "success": False, "finished_at": "2030-01-01T00:00:00+00:00"}
    run_dir = write_run(tmp_path, "dup", "Xiaomi-Robotics-0-LIBERO",
                        {"libero_spatial": official("libero_spatial")}, [*records, flipped])
    text = report_run(run_dir)
    warning = "**warning**: episode libero_spatial/0/0 is recorded more than once with different outcomes"
    assert warning in text


def test_leaderboard_intervals_are_rounded_once(tmp_path) -> None:
    """Item 10: 180/181 = 99.4475%: the report prints 99.4, and so must the leaderboard (not 99.5)."""
    from mibot_eval.results.views.leaderboard import rebuild

    run_dir = libero_run(tmp_path, "r181", {"libero_spatial": [180]}, episodes=181)
    report = report_run(run_dir)
    assert "| libero_spatial | 99.4 |" in report
    rows, markdown = rebuild(tmp_path)
    assert "| libero_spatial | success | 99.4 |" in markdown
    csv_text = (tmp_path / "leaderboard.csv").read_text()
    assert ",99.45," in csv_text  # the CSV keeps two decimals


# -- signals (item 3) -------------------------------------------------------------------------------
def _start_cli(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "mibot_eval.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_records(path: Path, count: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and len(path.read_text().splitlines()) >= count:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError("no record in time")


def test_ctrl_c_during_a_libero_reset_stops_the_run_and_rerun_resumes(tmp_path) -> None:
    """Item 3: LIBERO's reset swallows KeyboardInterrupt; the harness stops anyway (rc 130)."""
    pytest.importorskip("libero", reason="LIBERO is installed by `make setup`")
    args = ("run", "--checkpoint", "tiny", "--suites", "libero_spatial", "--tasks", "0", "--episodes",
            "3", "--max-steps", "2", "--video", "none", "--results", str(tmp_path), "--run", "sig",
            "--no-report")
    proc = _start_cli(tmp_path, *args)
    records = tmp_path / "sig" / "episodes.jsonl"
    _wait_for_records(records, 1, proc, timeout=240)
    proc.send_signal(signal.SIGINT)  # the next episode is in its reset (seconds, in LIBERO's loop)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert time.monotonic() - sent < 30
    assert "interrupted; finished episodes are saved, rerun to resume" in err and "Traceback" not in err
    assert len(records.read_text().splitlines()) == 1
    done = _start_cli(tmp_path, *args)
    _, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    assert [json.loads(line)["trial"] for line in records.read_text().splitlines()] == [0, 1, 2]


def test_sigterm_with_workers_exits_143_and_workers_leave_quietly(tmp_path, fakesim) -> None:
    """Item 3 with --workers: SIGTERM to the main process; no worker traceback."""
    suite = write_suite(tmp_path, tasks=2, episodes=6, max_steps=40, step_sleep=0.05)
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); from tests.conftest import *; "
            "from mibot_eval.suites import base; from tests.parallel_fakes import ADAPTER_ENTRY; "
            "base.ADAPTERS['fakesim'] = ADAPTER_ENTRY; from mibot_eval.cli import main; "
            "from tests.fakes import ScriptedPolicy; import mibot_eval.policy.load as load; "
            "load.load_policy = lambda *a, **k: ScriptedPolicy(); sys.exit(main(sys.argv[1:]))"
            )
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text('{"model_type": "mibot"}')
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code, "run", "--checkpoint", str(tmp_path / "ckpt"),
                             "--suites", str(suite), "--workers", "2", "--video", "none", "--results",
                             str(tmp_path / "results"), "--run", "term", "--no-report"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    records = tmp_path / "results" / "term" / "episodes.jsonl"
    _wait_for_records(records, 1, proc, timeout=120)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "interrupted; finished episodes are saved" in err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    kept = len(records.read_text().splitlines())
    assert 1 <= kept < 12
