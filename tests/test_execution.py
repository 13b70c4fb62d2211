"""The chunk scheduler, action by action: sync, async with fixed and measured delays, prefixes, resets.

Everything runs through the real episode loop (run_episode) with a fake adapter, a fake policy and a
fake clock: no simulator, no model. Chunk n (in request order, from 1) holds the action n*100 + i at
index i, so an executed action names its chunk and index; "H" is the hold action.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from mibot_eval.errors import UserError
from mibot_eval.run.episode import run_episode
from mibot_eval.run.scheduler import (
    ChunkScheduler,
    ExecutionConfig,
    delay_steps_for,
    make_execution_config,
)
from mibot_eval.types import EpisodeSpec, Observation, StepResult

HOLD = np.array([0, 0, 0, 0, 0, 0, -1.0])
SPEC = EpisodeSpec(suite="fake", task_id=0, task_name="fake", trial=0, seed=0)


def _chunk(tag: int, horizon: int = 10) -> np.ndarray:
    return np.array([[tag * 100 + i] * 7 for i in range(horizon)], dtype=np.float64)


def _tags(actions) -> list:
    return ["H" if np.array_equal(a, HOLD) else int(a[0]) for a in actions]


def _r(start: int, stop: int) -> list[int]:
    return list(range(start, stop))


# -- fakes ----------------------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class LoopAdapter:
    """Counts steps; its observation's state is the number of steps executed so far."""

    def __init__(self, reset_policy_after: tuple[int, ...] = ()) -> None:
        self.reset_policy_after = set(reset_policy_after)
        self.actions: list[np.ndarray] = []
        self.observed: list[bool] = []
        self.t = 0

    def _obs(self) -> Observation:
        return Observation(images={}, state=np.array([self.t], dtype=np.float32), instruction="x")

    def reset(self, spec: EpisodeSpec) -> Observation:
        self.t = 0
        return self._obs()

    def step(self, action: np.ndarray, observe: bool) -> StepResult:
        self.actions.append(np.asarray(action))
        self.observed.append(observe)
        reset = self.t in self.reset_policy_after
        self.t += 1
        # a new sub-goal comes with its observation (the scheduler re-queries at the next step)
        return StepResult(False, False, observation=self._obs() if observe or reset else None,
                          reset_policy=reset)

    def to_env_actions(self, chunk: np.ndarray) -> np.ndarray:
        return np.asarray(chunk)[:, :7].astype(np.float64)

    def video_frame(self):
        return None


class TaggedPolicy:
    """Chunk n = n*100 + index; each call takes the next latency on the fake clock."""

    def __init__(self, horizon: int, clock: FakeClock, latencies=(), supports_prefix=True) -> None:
        self.horizon, self.clock = horizon, clock
        self.latencies = list(latencies)
        self.supports_prefix = supports_prefix
        self.requests = []

    def infer(self, requests):
        (request,) = requests
        self.requests.append(request)
        n = len(self.requests)
        if self.latencies:
            self.clock.now += self.latencies[min(n, len(self.latencies)) - 1]
        chunk = np.repeat((n * 100 + np.arange(self.horizon, dtype=np.float64))[:, None], 32, axis=1)
        return [chunk.astype(np.float32)]

    def describe(self):
        return {"kind": "tagged"}


@dataclass
class Trace:
    actions: list
    request_steps: list[int]
    prefixes: list
    observed: list[bool]
    metrics: dict


def run(config: ExecutionConfig, steps: int, horizon: int = 10, latencies=(),
        supports_prefix: bool = True, reset_policy_after: tuple[int, ...] = ()) -> Trace:
    clock = FakeClock()
    adapter = LoopAdapter(reset_policy_after)
    policy = TaggedPolicy(horizon, clock, latencies, supports_prefix)
    scheduler = ChunkScheduler(config.with_prefix_support(supports_prefix), HOLD)
    result = run_episode(adapter, policy, SPEC, scheduler, "fake", steps, clock=clock)
    metrics = result.metrics
    # every request read the observation of the step it fired at (lazy rendering looked ahead right)
    seen = [int(r.observation.state[0]) for r in policy.requests]
    assert seen == metrics["request_steps"]
    if not reset_policy_after:  # and nothing was rendered that no request read
        rendered_for = {t + 1 for t, flag in enumerate(adapter.observed) if flag and t + 1 < steps}
        assert rendered_for == {s for s in metrics["request_steps"] if s > 0}
    prefixes = [None if r.prefix is None else _tags(r.prefix) for r in policy.requests]
    assert metrics["prefix_lengths"] == [len(p or []) for p in prefixes]
    assert metrics["executed_actions"] + metrics["idle_steps"] == steps
    assert metrics["idle_steps"] == sum(1 for a in _tags(adapter.actions) if a == "H")
    return Trace(_tags(adapter.actions), metrics["request_steps"], prefixes, adapter.observed, metrics)


def sync(k: int = 10) -> ExecutionConfig:
    return make_execution_config("sync", k, control_hz=20)


def fixed(d: int, k: int = 10, **kw) -> ExecutionConfig:
    return make_execution_config("async", k, control_hz=20, delay_steps=d, **kw)


# -- sync -----------------------------------------------------------------------------------------
def test_sync_executes_first_k_then_requeries() -> None:
    sched = ChunkScheduler(ExecutionConfig("sync", replan_steps=4), HOLD)
    executed, queries_at = [], []
    tag = 0
    for step in range(10):
        if sched.query_due():
            queries_at.append(step)
            tag += 1
            sched.submit(_chunk(tag), latency_s=0.01)
        action, idle = sched.next_action()
        assert not idle
        executed.append(int(action[0]))
        assert sched.observation_needed() == (step in (3, 7))
    assert queries_at == [0, 4, 8]
    assert executed == [100, 101, 102, 103, 200, 201, 202, 203, 300, 301]
    assert sched.stats.queries == 3 and sched.stats.executed == 10 and sched.stats.idle_steps == 0


def test_sync_chunk_shorter_than_k_and_reset() -> None:
    sched = ChunkScheduler(ExecutionConfig("sync", replan_steps=10), HOLD)
    sched.submit(_chunk(1, horizon=4), latency_s=0.0)
    assert [int(sched.next_action()[0][0]) for _ in range(4)] == [100, 101, 102, 103]
    assert sched.query_due()
    sched.submit(_chunk(2), 0.0)
    sched.reset()
    assert sched.query_due()
    action, idle = sched.next_action()
    assert idle and np.array_equal(action, HOLD) and sched.stats.idle_steps == 1


def test_sync_through_the_episode_loop() -> None:
    trace = run(sync(k=4), steps=10, horizon=10)
    assert trace.actions == _r(100, 104) + _r(200, 204) + [300, 301]
    assert trace.request_steps == [0, 4, 8] and trace.prefixes == [None] * 3
    assert trace.metrics["request_outcomes"] == ["first", "switch", "switch"]
    assert trace.metrics["delay_steps"] == [0, 0, 0] and trace.metrics["committed_steps"] == [0, 0, 0]
    assert trace.metrics["dropped_actions"] == 0 and trace.metrics["idle_switches"] == 0


# -- async, fixed delay ---------------------------------------------------------------------------
@pytest.mark.parametrize("k,horizon", [(10, 10), (4, 10), (10, 4), (3, 7)])
def test_async_zero_delay_is_sync_action_by_action(k: int, horizon: int) -> None:
    for resets in ((), (15,)):
        a = run(sync(k), steps=37, horizon=horizon, reset_policy_after=resets)
        b = run(fixed(0, k), steps=37, horizon=horizon, reset_policy_after=resets)
        assert a.actions == b.actions
        assert a.request_steps == b.request_steps
        assert a.observed == b.observed
        assert b.prefixes == [None] * len(b.prefixes)
        assert a.metrics == b.metrics
    e = min(k, horizon)
    trace = run(fixed(0, k), steps=3 * e, horizon=horizon)
    assert trace.actions == _r(100, 100 + e) + _r(200, 200 + e) + _r(300, 300 + e)
    assert trace.request_steps == [0, e, 2 * e]


def test_async_small_delay_drops_elapsed_actions_just_in_time() -> None:
    trace = run(fixed(3), steps=30)
    # the request fires when 3 window actions are left; the new chunk arrives as they run out and
    # starts at its index 3 (indices 0..2 elapsed during inference): k - d = 7 actions per chunk
    assert trace.actions == _r(100, 110) + _r(203, 210) + _r(303, 310) + _r(403, 409)
    assert trace.request_steps == [0, 7, 14, 21, 28]
    assert trace.prefixes == [None, _r(107, 110), _r(207, 210), _r(307, 310), _r(407, 410)]
    m = trace.metrics
    assert m["delay_steps"] == [0, 3, 3, 3, 3] and m["committed_steps"] == [0, 3, 3, 3, 3]
    assert m["request_outcomes"] == ["first", "switch", "switch", "switch", "pending"]
    assert m["chunk_switches"] == 3 and m["idle_switches"] == 0 and m["idle_steps"] == 0
    assert m["dropped_actions"] == 9 and m["superseded_actions"] == 0


def test_async_delay_longer_than_half_window_idles() -> None:
    trace = run(fixed(6), steps=24)
    H = "H"
    assert trace.actions == (
        _r(100, 110) + _r(206, 210) + [H, H] + _r(306, 310) + [H, H] + [406, 407]
    )
    assert trace.request_steps == [0, 4, 10, 16, 22]
    assert trace.prefixes == [
        None, _r(104, 110), _r(206, 210) + [H, H], _r(306, 310) + [H, H], _r(406, 410) + [H, H],
    ]
    m = trace.metrics
    assert m["committed_steps"] == [0, 6, 4, 4, 4] and m["delay_steps"] == [0, 6, 6, 6, 6]
    assert m["idle_steps"] == 4 and m["chunk_switches"] == 3 and m["idle_switches"] == 2
    assert m["dropped_actions"] == 18


def test_async_delay_equal_to_k_runs_only_the_first_chunk() -> None:
    trace = run(fixed(10), steps=25)
    assert trace.actions == _r(100, 110) + ["H"] * 15
    # the blocking first chunk's window is not longer than d: the next request fires at once
    assert trace.request_steps == [0, 0, 10, 20]
    assert trace.prefixes == [None, _r(100, 110), ["H"] * 10, ["H"] * 10]
    m = trace.metrics
    assert m["delay_steps"] == [0, 10, 10, 10] and m["committed_steps"] == [0, 10, 0, 0]
    assert m["request_outcomes"] == ["first", "switch", "switch", "pending"]
    assert m["idle_steps"] == 15 and m["idle_switches"] == 1 and m["dropped_actions"] == 20


def test_async_delay_beyond_chunk_length_holds() -> None:
    trace = run(fixed(8), steps=20, horizon=6)  # T = 6 < k = 10 < ... d = 8 > T
    assert trace.actions == _r(100, 106) + ["H"] * 14
    assert trace.request_steps == [0, 0, 8, 16]
    # the committed actions are 8 long, but a prefix cannot exceed the chunk length T = 6
    assert trace.prefixes == [None, _r(100, 106), ["H"] * 6, ["H"] * 6]
    m = trace.metrics
    assert m["committed_steps"] == [0, 6, 0, 0] and m["idle_switches"] == 2
    assert m["dropped_actions"] == 12 and m["idle_steps"] == 14


def test_async_chunk_longer_than_k_uses_only_the_first_k() -> None:
    trace = run(fixed(2, k=4), steps=12, horizon=10)
    assert trace.actions == _r(100, 104) + [202, 203, 302, 303, 402, 403, 502, 503]
    assert trace.request_steps == [0, 2, 4, 6, 8, 10]


# -- prefixes -------------------------------------------------------------------------------------
def test_prefix_unsupported_or_off_sends_none_and_changes_nothing_else() -> None:
    with_prefix = run(fixed(3), steps=30)
    unsupported = run(fixed(3), steps=30, supports_prefix=False)
    off = run(fixed(3, prefix=False), steps=30)
    for trace in (unsupported, off):
        assert trace.prefixes == [None] * 5
        assert trace.actions == with_prefix.actions
        assert trace.request_steps == with_prefix.request_steps
    assert fixed(3).with_prefix_support(True).as_dict()["prefix"] is True
    assert fixed(3).with_prefix_support(False).as_dict()["prefix"] == "unsupported"
    assert fixed(3, prefix=False).with_prefix_support(True).as_dict()["prefix"] is False


# -- measured delay -------------------------------------------------------------------------------
def test_delay_steps_for() -> None:
    assert delay_steps_for(0.0, 20) == 0
    assert delay_steps_for(0.1, 20) == 2  # 2.0000000000000004 is not 3 steps
    assert delay_steps_for(0.1001, 20) == 3
    assert delay_steps_for(0.08, 10) == 1


def test_measured_delay_with_fake_clock() -> None:
    config = make_execution_config("async", 10, control_hz=20, delay="measured")
    # 0.12 s -> 3 steps (d_hat for the 2nd request), 0.1 -> 2, 0.2 -> 4, 0.05 -> 1
    trace = run(config, steps=26, latencies=[0.12, 0.1, 0.2, 0.05])
    assert trace.actions == (
        _r(100, 109)        # request at 7 timed for d_hat = 3, but it took 2: 109 superseded
        + _r(202, 210)      # from index 2; request at 15 timed for d_hat = 2 takes 4 steps
        + ["H", "H"]        # the window ran out 2 steps before the chunk arrived
        + [304, 305, 306]   # request at 21 timed for d_hat = 4 takes 1 step: 307..309 superseded
        + _r(401, 405)
    )
    m = trace.metrics
    assert trace.request_steps == [0, 7, 15, 21]
    assert m["delay_steps"] == [0, 2, 4, 1] and m["committed_steps"] == [0, 3, 2, 4]
    assert m["latencies_s"] == [0.12, 0.1, 0.2, 0.05]
    assert trace.prefixes == [None, _r(107, 110), [208, 209], _r(306, 310)]
    assert m["idle_steps"] == 2 and m["idle_switches"] == 1 and m["chunk_switches"] == 3
    assert m["superseded_actions"] == 4 and m["dropped_actions"] == 7
    assert m["control_hz"] == 20


def test_measured_delay_uses_control_hz_override() -> None:
    config = make_execution_config("async", 10, control_hz=10, delay="measured")
    trace = run(config, steps=12, latencies=[0.25])  # 2.5 steps at 10 Hz -> 3
    assert trace.request_steps == [0, 7] and trace.metrics["delay_steps"] == [0, 3]
    assert trace.actions == _r(100, 110) + [203, 204]


# -- resets ---------------------------------------------------------------------------------------
def test_reset_drops_the_chunk_in_flight() -> None:
    trace = run(fixed(3), steps=22, reset_policy_after=(8,))
    # request at 7 (chunk 2) is in flight when step 8 reports a new sub-goal: chunk 2 never runs,
    # chunk 1's last action is dropped, and the next request blocks (no prefix, starts at index 0)
    assert trace.actions == _r(100, 109) + _r(300, 310) + [403, 404, 405]
    assert trace.request_steps == [0, 7, 9, 16]
    assert trace.prefixes == [None, _r(107, 110), None, _r(307, 310)]
    m = trace.metrics
    assert m["request_outcomes"] == ["first", "discarded", "first", "switch"]
    assert m["discarded_requests"] == 1 and m["chunk_switches"] == 1 and m["idle_steps"] == 0


def test_submit_while_in_flight_is_a_bug() -> None:
    sched = ChunkScheduler(fixed(3), HOLD)
    sched.submit(_chunk(1), 0.0)
    for _ in range(7):
        sched.next_action()
    assert sched.query_due()
    sched.submit(_chunk(2), 0.0)
    with pytest.raises(RuntimeError, match="in flight"):
        sched.submit(_chunk(3), 0.0)


# -- configuration --------------------------------------------------------------------------------
def test_config_dicts() -> None:
    assert sync().as_dict() == {"mode": "sync", "replan_steps": 10}
    assert fixed(3).with_prefix_support(True).as_dict() == {
        "mode": "async", "replan_steps": 10, "delay": "fixed", "delay_steps": 3,
        "control_hz": 20.0, "prefix": True,
    }
    measured = make_execution_config("async", 4, control_hz=5, delay="measured")
    assert measured.with_prefix_support(False).as_dict() == {
        "mode": "async", "replan_steps": 4, "delay": "measured", "control_hz": 5.0,
        "prefix": "unsupported",
    }


@pytest.mark.parametrize("mode,options,message", [
    ("sync", {"delay_steps": 2}, "--delay-steps only applies to --execution async"),
    ("sync", {"delay": "measured", "prefix": False}, "--delay, --no-prefix only apply"),
    ("async", {}, "async execution needs a delay"),
    ("async", {"delay": "measured", "delay_steps": 2}, "exclude each other"),
    ("async", {"delay": "fixed"}, "--delay fixed needs --delay-steps"),
    ("async", {"delay": "soon"}, "--delay must be one of fixed, measured"),
    ("async", {"delay_steps": -1}, "integer >= 0"),
    ("async", {"delay_steps": 1.5}, "integer >= 0"),
    ("async", {"delay_steps": 1, "prefix": "yes"}, "prefix must be true or false"),
    ("async", {"delay_steps": 1, "speed": 2}, "unknown execution option"),
    ("turbo", {}, "execution mode must be one of sync, async"),
])
def test_inconsistent_options_are_refused(mode, options, message) -> None:
    with pytest.raises(UserError, match=message):
        make_execution_config(mode, 10, control_hz=20, **options)


def test_bad_control_hz_is_refused() -> None:
    with pytest.raises(UserError, match="control frequency must be a positive"):
        make_execution_config("async", 10, control_hz=0, delay="measured")
    with pytest.raises(UserError, match="needs a control frequency"):
        make_execution_config("async", 10, control_hz=None, delay="measured")
    assert make_execution_config("sync", 10, control_hz=20, delay_steps=None).mode == "sync"
