"""The typed episode record and its schema version: what the Ledger writes is an EpisodeRecord with
`schema`, records written before the field existed read as schema 1 (they resume, report and
compare as before), and a record of a later schema is refused with one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_type_hints

import pytest

from mibot_eval.errors import StoreError
from mibot_eval.results.measure.gate import check_regression
from mibot_eval.results.records import RECORD_SCHEMA, EpisodeRecord, episode_record, schema_of
from mibot_eval.results.store import RunStore, read_records
from mibot_eval.results.views.gate import render_gate
from mibot_eval.results.views.report import report_run
from mibot_eval.run.ledger import Ledger
from mibot_eval.run.planning import RunRequest
from mibot_eval.run.runner import execute
from mibot_eval.types import EpisodeResult, EpisodeSpec
from tests.data.fixtures import copy_recorded
from tests.fakes import ScriptedPolicy
from tests.parallel_fakes import write_suite


def _without_schema(run_dir: Path) -> list[dict]:
    """Rewrite the folder's records as the oldest harness wrote them: no `schema` field."""
    path = run_dir / "episodes.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(r.pop("schema") == RECORD_SCHEMA for r in records)
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    return records


def test_the_record_type_names_every_field_the_ledger_writes() -> None:
    spec = EpisodeSpec("libero_spatial", 0, "task", 3, 7, "do it")
    context = {"run": "r", "checkpoint": "tiny", "checkpoint_id": "h", "benchmark": "libero",
               "robot_type": "libero_all", "protocol_hash": "p", "execution": {"mode": "sync"}}
    record = episode_record(EpisodeResult(spec, True, 12, metrics={"trace_sha": "x"}), context)
    fields = set(get_type_hints(EpisodeRecord))
    assert set(record) <= fields, set(record) - fields
    assert record["schema"] == RECORD_SCHEMA == schema_of(record) == 1
    assert schema_of({"key": "a", "success": True}) == 1  # written before the field existed


def test_old_records_without_the_version_report_and_compare_as_before(tmp_path) -> None:
    current = copy_recorded("libero_partial", tmp_path / "now")
    old = copy_recorded("libero_partial", tmp_path / "old")
    _without_schema(old)
    assert all(schema_of(r) == 1 and "schema" not in r for r in read_records(old / "episodes.jsonl"))
    assert report_run(old) == report_run(current)
    assert (old / "report.csv").read_text() == (current / "report.csv").read_text()
    result = check_regression(old, current, max_drop=5)
    tasks = [c for c in result.checks if c.scope == "task"]
    assert len(tasks) == 2 and all(c.test.startswith("paired") and c.n_candidate == 10 for c in tasks)
    assert all(c.note.startswith("discordant: 0 baseline-only, 0 candidate-only") for c in tasks)
    assert "RESULT:" in render_gate(result)


def test_old_records_resume_in_the_store(tmp_path) -> None:
    run_dir = copy_recorded("libero_partial", tmp_path / "results")
    old = _without_schema(run_dir)
    store = RunStore(run_dir)
    manifest = store.read_manifest()
    store.open_manifest({k: manifest[k] for k in ("run", "checkpoint", "execution", "suites")},
                        identity_keys=("checkpoint", "execution"))
    context = {k: old[0][k] for k in ("run", "checkpoint", "checkpoint_id", "benchmark", "protocol_hash",
                                      "execution")}
    ledger = Ledger(store, {"libero_spatial": context}, total=len(old) + 1, done=store.records(),
                    desc="resume", progress=False)
    spec = EpisodeSpec("libero_spatial", 0, "pick_up_the_black_bowl_on_the_plate", 10, 7, "do it")
    ledger.record(EpisodeResult(spec, True, 50))
    ledger.close()
    records = store.records()
    assert [r["key"] for r in records[:len(old)]] == [r["key"] for r in old]
    assert records[-1]["key"] == "libero_spatial/0/10" and records[-1]["schema"] == RECORD_SCHEMA
    assert store.read_manifest()["invocations"] == 2
    assert "| libero_spatial |" in report_run(run_dir)


@pytest.mark.usefixtures("fakesim")
def test_a_run_written_without_the_version_resumes_without_repeating_an_episode(
        tmp_path, checkpoint_dir) -> None:
    suite = write_suite(tmp_path, name="fake", tasks=2, episodes=2, max_steps=12)

    def run(episodes: int, policy: ScriptedPolicy) -> Path:
        request = RunRequest(checkpoint=str(checkpoint_dir), suites=[str(suite)], episodes_per_task=episodes,
                             results_dir=tmp_path / "results", run_name="run", video="none", workers=0,
                             progress=False)
        return execute(request, policy=policy)

    run_dir = run(1, ScriptedPolicy())
    old = _without_schema(run_dir)
    policy = ScriptedPolicy()
    run(2, policy)
    records = RunStore(run_dir).all_records()
    assert len(records) == 4 and len({r["key"] for r in records}) == 4  # two old, two new
    assert [schema_of(r) for r in records] == [1, 1, 1, 1]
    assert ["schema" in r for r in records] == [False, False, True, True]
    assert records[:2] == old
    assert len(policy.requests) > 0 and report_run(run_dir).count("| fake |") >= 1


def test_a_record_of_a_later_schema_is_refused_with_one_line(tmp_path) -> None:
    path = tmp_path / "episodes.jsonl"
    path.write_text(json.dumps({"key": "s/0/0", "success": True, "schema": RECORD_SCHEMA + 1}) + "\n")
    with pytest.raises(StoreError) as err:
        list(read_records(path))
    line = str(err.value)
    assert "\n" not in line and f"schema {RECORD_SCHEMA + 1}, written by a newer mibot-eval" in line
    path.write_text(json.dumps({"key": "s/0/0", "success": True, "schema": "1"}) + "\n")
    with pytest.raises(StoreError, match="'schema' is '1'"):
        list(read_records(path))
