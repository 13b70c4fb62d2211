"""Simulator crashes and hangs do not stop a run: retried once, then recorded as errors.

The faults come from a test-only adapter (tests/parallel_fakes.py, registered for these tests only):
the worker process SIGKILLs itself, exits, or sleeps mid-episode.
"""

from __future__ import annotations

import json

import pytest

from mibot_eval.errors import UserError
from mibot_eval.run.planning import RunRequest
from mibot_eval.run.runner import execute
from tests.fakes import ScriptedPolicy
from tests.parallel_fakes import write_suite
from tests.parallel_helpers import outcome, records

pytest.importorskip("msgpack", reason="worker pipes speak msgpack: pip install 'mibot-eval[serve]'")


pytestmark = pytest.mark.usefixtures("fakesim")


def _run(tmp_path, checkpoint_dir, faults, name="run", **kw):
    suite = write_suite(tmp_path, name="fake", tasks=3, episodes=2, max_steps=12, faults=faults)
    request = RunRequest(checkpoint=str(checkpoint_dir), suites=[str(suite)],
                         results_dir=tmp_path / name, video="none", **kw)
    return execute(request, policy=ScriptedPolicy())


def test_crashes_and_hangs_are_retried_once_then_recorded_as_errors(tmp_path, checkpoint_dir) -> None:
    clean = _run(tmp_path, checkpoint_dir, {}, name="clean", workers=2)
    faults = {
        "fake/0/1": "step:crash_once",  # SIGKILL mid-episode on the first attempt only
        "fake/1/0": "step:crash",  # SIGKILL on every attempt
        "fake/1/1": "reset:exit_once",  # the process exits during reset, once
        "fake/2/0": "step:hang",  # hangs on every attempt: the watchdog kills it
        "fake/2/1": "step:raise",  # a Python exception: an error record at once, no retry
    }
    run_dir = _run(tmp_path, checkpoint_dir, faults, workers=2, episode_timeout=3)
    recs = records(run_dir)
    assert sorted(recs) == sorted(records(clean))  # every episode has exactly one record
    lines = (run_dir / "episodes.jsonl").read_text().splitlines()
    assert len(lines) == 6

    for key in ("fake/0/1", "fake/1/1"):  # retried on a fresh worker: same outcome as clean
        assert outcome({key: recs[key]}) == outcome({key: records(clean)[key]})
        assert recs[key]["metrics"]["attempts"] == 2
    assert "SIGKILL" in recs["fake/0/1"]["metrics"]["retried_after"][0]
    assert "exit code 3" in recs["fake/1/1"]["metrics"]["retried_after"][0]

    crash = recs["fake/1/0"]
    assert crash["status"] == "error" and crash["success"] is False
    assert "simulator process died (SIGKILL)" in crash["error"] and "attempt 2 of 2" in crash["error"]
    hang = recs["fake/2/0"]
    assert hang["status"] == "error" and "exceeded the 3 s time limit" in hang["error"]
    raised = recs["fake/2/1"]
    assert raised["status"] == "error" and "simulated simulator exception" in raised["error"]
    # an exception inside the episode: retried once on a rebuilt env (as in one process), then an error
    assert raised["metrics"]["attempts"] == 2
    assert "simulated simulator exception" in raised["metrics"]["retried_after"][0]
    assert recs["fake/0/0"]["status"] == "ok"

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["parallel"]["timeouts"] == 2 and manifest["parallel"]["crashes"] == 4

    # errors are finished episodes: a rerun does not run them again
    again = _run(tmp_path, checkpoint_dir, faults, workers=2, episode_timeout=3)
    assert len((again / "episodes.jsonl").read_text().splitlines()) == 6


def test_errors_are_reported_separately_from_failures(tmp_path, checkpoint_dir) -> None:
    from mibot_eval.results.store import read_records

    run_dir = _run(tmp_path, checkpoint_dir, {"fake/0/0": "step:crash"}, workers=1)
    statuses = [r["status"] for r in read_records(run_dir / "episodes.jsonl")]
    assert statuses.count("error") == 1 and statuses.count("ok") == 5


def test_a_run_of_consecutive_errors_stops_with_one_line(tmp_path, checkpoint_dir) -> None:
    faults = {f"fake/{t}/{i}": "reset:raise" for t in range(3) for i in range(2)}
    with pytest.raises(UserError, match="5 episodes in a row failed with errors"):
        _run(tmp_path, checkpoint_dir, faults, workers=1)
    assert len((tmp_path / "run").glob("*/episodes.jsonl").__next__().read_text().splitlines()) == 5
