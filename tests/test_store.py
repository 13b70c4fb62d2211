"""Durable records: append + fsync, torn tails from kills, manifest identity on resume."""

from __future__ import annotations

import json

import pytest

from mibot_eval.errors import UserError
from mibot_eval.results.records import episode_record
from mibot_eval.results.store import RunStore
from mibot_eval.types import EpisodeResult, EpisodeSpec


def _result(trial: int, success: bool = True) -> EpisodeResult:
    spec = EpisodeSpec("libero_spatial", 0, "task", trial, 7, "do it")
    return EpisodeResult(spec, success, steps=12, timings={"total_s": 1.5})


def test_append_and_read_back(tmp_path) -> None:
    store = RunStore(tmp_path / "run")
    store.append(episode_record(_result(0), {"run": "r", "checkpoint": "tiny"}))
    store.append(episode_record(_result(1, False), {"run": "r", "checkpoint": "tiny"}))
    records = store.records()
    assert [r["key"] for r in records] == ["libero_spatial/0/0", "libero_spatial/0/1"]
    assert records[0]["success"] is True and records[1]["success"] is False
    assert records[0]["checkpoint"] == "tiny" and records[0]["trial"] == 0
    assert records[0]["timings"] == {"total_s": 1.5}
    assert store.finished_keys() == {"libero_spatial/0/0", "libero_spatial/0/1"}


def test_torn_tail_is_ignored_then_repaired(tmp_path) -> None:
    store = RunStore(tmp_path / "run")
    store.append(episode_record(_result(0), {}))
    with store.episodes_path.open("a") as stream:  # a kill in the middle of a write
        stream.write('{"key": "libero_spatial/0/1", "succ')
    assert store.finished_keys() == {"libero_spatial/0/0"}
    store.append(episode_record(_result(1), {}))
    lines = store.episodes_path.read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["libero_spatial/0/0", "libero_spatial/0/1"]


def test_manifest_refuses_a_different_checkpoint(tmp_path) -> None:
    store = RunStore(tmp_path / "run")
    base = {"checkpoint": {"hash": "a"}, "execution": {"mode": "sync"}, "suites": {}}
    store.open_manifest(base, identity_keys=("checkpoint", "execution"))
    store.open_manifest(base, identity_keys=("checkpoint", "execution"))
    assert store.read_manifest()["invocations"] == 2
    with pytest.raises(UserError, match="different checkpoint"):
        store.open_manifest({**base, "checkpoint": {"hash": "b"}}, ("checkpoint", "execution"))


def test_manifest_refuses_a_changed_suite_protocol(tmp_path) -> None:
    store = RunStore(tmp_path / "run")
    first = {"suites": {"libero_spatial": {"hash": "h1"}}}
    store.open_manifest(first, identity_keys=())
    store.open_manifest({"suites": {"libero_object": {"hash": "h2"}}}, identity_keys=())
    assert set(store.read_manifest()["suites"]) == {"libero_spatial", "libero_object"}
    with pytest.raises(UserError, match="another protocol"):
        store.open_manifest({"suites": {"libero_spatial": {"hash": "h3"}}}, identity_keys=())
