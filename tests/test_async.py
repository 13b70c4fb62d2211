"""Async execution end to end: the tiny checkpoint (which accepts committed prefix actions) on the
real LIBERO simulator, through runner.execute, with and without prefixes and with measured delays."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("libero", reason="LIBERO is installed by `make setup`")
pytest.importorskip("transformers", reason="the model stack is installed by `make setup`")

from mibot_eval.run.planning import RunRequest  # noqa: E402
from mibot_eval.run.runner import execute  # noqa: E402

STEPS = 25


class RecordingPolicy:
    """Delegates to the real HFPolicy and keeps every request and chunk (env units: first 7 dims)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.supports_prefix = inner.supports_prefix
        self.calls: list[tuple[np.ndarray | None, np.ndarray]] = []

    def infer(self, requests):
        chunks = self.inner.infer(requests)
        for request, chunk in zip(requests, chunks, strict=True):
            self.calls.append((request.prefix, np.asarray(chunk)[:, :7]))
        return chunks

    def describe(self):
        return self.inner.describe()

    def check_robot_type(self, robot_type: str) -> None:
        self.inner.check_robot_type(robot_type)


@pytest.fixture(scope="module")
def hf_policy(tiny_checkpoint):
    from mibot_eval.policy.hf import HFPolicy

    return HFPolicy(tiny_checkpoint, device="cpu")


def _run(tmp_path, policy, **options):
    request = RunRequest(
        checkpoint="tiny", suites=["libero_spatial"], tasks=[0], episodes_per_task=1,
        results_dir=tmp_path / "results", max_steps=STEPS, video="none", execution="async",
        execution_options=options,
    )
    run_dir = execute(request, policy=policy)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (record,) = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    assert record["status"] == "ok", record["error"]
    return run_dir, manifest, record


def _check_fixed_delay_counts(metrics: dict, d: int, k: int = 10) -> None:
    # k = T = 10, d = 3: requests at 0, 7, 14, 21; chunks arrive at 10, 17, 24 from index 3
    assert metrics["request_steps"] == [0, 7, 14, 21]
    assert metrics["delay_steps"] == [0, d, d, d] and metrics["committed_steps"] == [0, d, d, d]
    assert metrics["request_outcomes"] == ["first", "switch", "switch", "switch"]
    assert metrics["chunk_switches"] == 3 and metrics["dropped_actions"] == 3 * d
    assert metrics["idle_steps"] == 0 and metrics["idle_switches"] == 0
    assert metrics["executed_actions"] == STEPS


def test_async_with_prefix(tmp_path, hf_policy) -> None:
    policy = RecordingPolicy(hf_policy)
    run_dir, manifest, record = _run(tmp_path, policy, delay_steps=3)
    assert run_dir.name == "tiny__libero__async__max25__delay_steps3"
    assert manifest["execution"] == {
        "mode": "async", "replan_steps": 10, "delay": "fixed", "delay_steps": 3,
        "control_hz": 20.0, "prefix": True,
    }
    assert manifest["policy"]["prefix_actions"] is True
    assert record["execution"]["prefix"] is True
    metrics = record["metrics"]
    _check_fixed_delay_counts(metrics, d=3)
    assert metrics["prefix_lengths"] == [0, 3, 3, 3]
    # the prefix reached the model: the tiny model holds it exactly at the chunk's first d steps,
    # and it is what the previous chunk had left in its window (indices 7..9)
    prefixes = [p for p, _ in policy.calls]
    chunks = [c for _, c in policy.calls]
    assert prefixes[0] is None
    for i in range(1, 4):
        assert prefixes[i].shape == (3, 7)
        np.testing.assert_allclose(chunks[i][:3], prefixes[i], atol=1e-4)
        np.testing.assert_allclose(prefixes[i], chunks[i - 1][7:10], atol=1e-6)
    latency = manifest["latency"]
    assert latency["chunk_switches"] == 3 and latency["idle_switch_fraction"] == 0.0
    assert latency["prefix_requests"] == 3 and latency["latency_ms"]["p50"] > 0


def test_async_without_prefix(tmp_path, hf_policy) -> None:
    policy = RecordingPolicy(hf_policy)
    run_dir, manifest, record = _run(tmp_path, policy, delay_steps=3, prefix=False)
    assert run_dir.name == "tiny__libero__async__max25__delay_steps3__prefixFalse"
    assert manifest["execution"]["prefix"] is False and record["execution"]["prefix"] is False
    _check_fixed_delay_counts(record["metrics"], d=3)
    assert record["metrics"]["prefix_lengths"] == [0, 0, 0, 0]
    assert all(p is None for p, _ in policy.calls)


def test_async_prefix_unsupported_is_recorded(tmp_path, hf_policy) -> None:
    policy = RecordingPolicy(hf_policy)
    policy.supports_prefix = False  # as with the released checkpoints
    _, manifest, record = _run(tmp_path, policy, delay="measured", control_hz=40)
    assert manifest["execution"]["prefix"] == "unsupported"
    assert manifest["execution"]["delay"] == "measured" and manifest["execution"]["control_hz"] == 40
    assert all(p is None for p, _ in policy.calls)
    m = record["metrics"]
    # measured: each request's delay is ceil(latency * 40 Hz), the blocking first one excepted
    assert m["delay_steps"][0] == 0
    for latency, delay in zip(m["latencies_s"][1:], m["delay_steps"][1:], strict=False):
        assert delay == math.ceil(latency * 40 - 1e-9) or abs(latency * 40 - round(latency * 40)) < 1e-3
    assert m["executed_actions"] + m["idle_steps"] == STEPS
    assert m["idle_switches"] == sum(
        d > c for d, c, o in zip(m["delay_steps"], m["committed_steps"], m["request_outcomes"],
                                 strict=True) if o == "switch"
    )


@pytest.mark.parametrize("delay", [1, 3, 5, 12])
def test_overlapped_inference_gives_the_same_episode_action_by_action(tmp_path, delay) -> None:
    """Inference in a background thread while the simulator runs the committed steps (fixed delay):
    the same requests (observations, seeds), the same executed actions and the same record."""
    import dataclasses
    import time as _time

    from mibot_eval.config import load_suite
    from mibot_eval.run.episode import run_episode
    from mibot_eval.run.scheduler import ChunkScheduler, make_execution_config
    from tests.fakes import RecordingPolicy
    from tests.parallel_fakes import FakeSimAdapter, write_suite

    class SlowRecording(RecordingPolicy):
        def infer(self, requests):
            _time.sleep(0.01)
            return super().infer(requests)

    protocol = load_suite(str(write_suite(tmp_path, tasks=1, episodes=1, max_steps=40, success_at=30)))
    config = make_execution_config("async", 5, control_hz=20.0, delay_steps=delay)
    runs = []
    for overlap in (False, True):
        adapter = FakeSimAdapter(protocol)
        policy = SlowRecording(horizon=8)
        sched = ChunkScheduler(dataclasses.replace(config, overlap=overlap), protocol.hold_action, "last")
        result = run_episode(adapter, policy, adapter.episodes()[0], sched, "libero_all", 40,
                             seed_rule=protocol.request_seed)
        runs.append((result, policy, sched))
    (plain, p_policy, p_sched), (fast, f_policy, f_sched) = runs
    assert f_policy.seen == p_policy.seen and f_policy.seeds == p_policy.seeds
    assert [e.action.tobytes() for e in f_sched.trace] == [e.action.tobytes() for e in p_sched.trace]
    strip = lambda m: {k: v for k, v in m.items() if k != "latencies_s"}  # noqa: E731
    assert strip(fast.metrics) == strip(plain.metrics)
    assert (fast.success, fast.steps) == (plain.success, plain.steps)
    assert f_sched.stats.queries == p_sched.stats.queries > 2
