"""The chunk scheduler: the one place that decides which action runs at which control step.

Every suite runs through `ChunkScheduler`; `episode.run_episode` only follows its loop contract.

Terms
-----
k      replan_steps, from the suite YAML (10 LIBERO/CALVIN, 4 SimplerEnv).
T      length of a delivered chunk (env-unit actions, after the adapter's conversion).
e      min(k, T): a chunk's actions are never used beyond index e - 1 (as in the official clients).
t      control step index within the episode (0 = the first policy-driven step after the reset wait).

sync (default; the official protocol)
-------------------------------------
Execute chunk indices [0, e), then re-infer on the latest observation while the simulator waits.
No control step elapses during inference. This is exactly async below with d = 0 and no prefix
(the implementation shares one code path, so the two cannot drift apart).

async (real-time execution, simulated in control steps)
-------------------------------------------------------
Inference of a request issued at step t takes d control steps; the chunk arrives at step t + d and
its index i is the action meant for step t + i (the model saw the observation of step t).

* Window.  Each chunk has an execution window [s, e): s = 0 for the first chunk of an episode or after
  a reset, s = d for a chunk whose request took d steps. The first request of an episode (or after a
  reset) blocks like sync: the robot is at rest, nothing is committed, nothing elapses, no idle steps
  are counted for it (d = 0 for that request, whatever its latency).
* Expected delay d_hat.  --delay-steps N: d_hat = N.  --delay measured: d_hat = the last measured
  delay, 0 before the first measurement (the blocking first request already gives one).
  A measured delay is d = ceil(latency_s * control_hz) (control_hz: the suite's, or --control-hz).
* Request ("just in time").  At the start of step t, after any arrival due at t, a request fires when
  no request is in flight and the number r of un-executed actions left in the current window is
  <= d_hat (r = 0 when there is no chunk). It uses the latest observation, i.e. the one after step
  t - 1 (lazy rendering: `observation_needed()` looks one step ahead with exactly this rule).
  With a known delay (d = d_hat >= r) the new chunk arrives exactly when the window runs out.
  At most one request is in flight (one inference worker). So query_due() is asked again after a
  submit at the same step: right after a blocking first request whose window is not longer than
  d_hat (d_hat >= e), the next request fires at the same step on the same observation; otherwise
  one request per step at most.
* Committed actions / prefix.  At request time the robot is committed to the next d_hat actions it
  will execute while the request is inferred: the window's remaining actions, then hold actions if
  the window is shorter than d_hat. When the checkpoint accepts committed prefix actions (its model
  has `supports_prefix_actions`; the released ones do not) and prefix use is on, those d_hat actions
  (env units, shape (d_hat, action_dim)) are sent as PolicyRequest.prefix; d_hat = 0 sends none,
  and a prefix is cut to the chunk length T (the model's chunk cannot hold more; d_hat > T only
  happens when nothing is executable anyway).
  With a fixed delay they are exactly the actions executed during inference. With a measured delay
  they are the expected ones: if the real d is larger the robot also holds, if smaller the new chunk
  takes over before the last of them ran.
* Arrival.  d steps after the request the new chunk replaces the current one at once: its first d
  actions are dropped as elapsed (counted up to e) and execution continues from its index d up to
  e - 1, i.e. the window [d, e) of k - d actions when T >= k. If d >= e nothing of it is executable:
  its window is empty, so the next request fires at the same step and the robot holds throughout.
  If the previous window still had actions (only possible with a measured delay smaller than d_hat)
  they are superseded, never executed.
* Hold.  When the window has run out and the next chunk has not arrived, the robot holds: zero
  motion (the suite's `hold_action`) and, with `hold_gripper: last` (absolute grippers: LIBERO,
  CALVIN, WidowX), the last executed gripper command, as a real controller that receives no new
  command keeps its last one; `hold_gripper: hold_action` keeps the hold action's own gripper value
  (a relative gripper, Google Robot: 0 = no change). Each such step is an idle step. The same holds
  fill a prefix beyond the committed window. The robot idles max(0, d - r) steps per
  request (r at request time). With a fixed delay d: r = min(d, window length), so it idles exactly
  when a window is shorter than d, i.e. d > e - d (d > k / 2 when T >= k; Δtinf > Δtc).
* Reset.  `reset()` (new episode, or StepResult.reset_policy for a CALVIN subtask) drops the current
  chunk and any request in flight; the next request blocks again (s = 0).

Consequences checked by tests/test_execution.py: async with d = 0 issues the same requests at the
same steps and executes the same actions as sync; with 0 < d < e and T = k every chunk contributes
k - d actions with no idle step when d <= k / 2; with d = k or d > T only the first chunk's actions
run, then the robot holds.

Overlap (wall time only).  With a fixed delay d > 0 the chunk of a non-blocking request is not needed
before step t + d, so the episode loop may infer it in a background thread while the simulator
executes the committed steps: `submit_deferred()` at the request; after each `next_action()`,
`awaiting_chunk()` says when it must be there (one step before its arrival, so the lookahead of
`observation_needed()` stays exact), then `complete(chunk, latency)`. The requests, actions and
records are exactly those of `submit()`.

Per-request and per-switch facts go to `SchedulerStats.as_metrics()` (stored in each episode record);
a "chunk switch" is the arrival of a chunk that replaces an earlier one (not the blocking first
chunk). At each switch Δtc = r (committed window actions at request time) and Δtinf = d; the robot
idled for max(0, d - r) steps.

Size (about 490 lines, over the house's 400): a fifth of it is this docstring, the semantics the code
implements; the scheduler's one code path for sync and async is kept in one module on purpose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from mibot_eval.errors import UserError
from mibot_eval.run.motion import ChunkRecord, Executed, motion_metrics

MODES = ("sync", "async")
DELAY_SOURCES = ("fixed", "measured")
_OPTION_FLAGS = {
    "delay": "--delay",
    "delay_steps": "--delay-steps",
    "prefix": "--no-prefix",
}


@dataclass(frozen=True)
class ExecutionConfig:
    """How chunks are executed; recorded in every manifest and episode record.

    prefix: use committed-action prefixes when the checkpoint supports them (async only).
    prefix_supported: whether the loaded policy accepts a prefix (None until the runner knows).
    """

    mode: str = "sync"
    replan_steps: int = 10
    delay: str = "fixed"
    delay_steps: int | None = 0
    control_hz: float | None = None
    prefix: bool = True
    prefix_supported: bool | None = None
    overlap: bool = True  # async + fixed delay: infer while the simulator executes (results unchanged)

    @property
    def is_async(self) -> bool:
        return self.mode == "async"

    @property
    def measured(self) -> bool:
        return self.is_async and self.delay == "measured"

    @property
    def use_prefix(self) -> bool:
        return self.is_async and self.prefix and self.prefix_supported is True

    def prefix_status(self) -> bool | str:
        """True (prefixes sent), False (off, or sync) or "unsupported" (the checkpoint cannot)."""
        if not self.is_async or not self.prefix:
            return False
        if self.prefix_supported is None:
            return "unknown"  # not yet bound to a policy (the runner always binds it)
        return True if self.prefix_supported else "unsupported"

    def with_prefix_support(self, supported: bool) -> ExecutionConfig:
        return replace(self, prefix_supported=bool(supported))

    def as_dict(self) -> dict[str, Any]:
        if not self.is_async:
            return {"mode": self.mode, "replan_steps": self.replan_steps}
        data: dict[str, Any] = {
            "mode": self.mode,
            "replan_steps": self.replan_steps,
            "delay": self.delay,
            "control_hz": self.control_hz,
            "prefix": self.prefix_status(),
        }
        if self.delay == "fixed":
            data["delay_steps"] = self.delay_steps
        return data


def make_execution_config(
    mode: str, replan_steps: int, control_hz: float | None = None, **options: Any
) -> ExecutionConfig:
    """Build the config from the suite YAML and the CLI; one clear line for a bad combination.

    options (None = not given): delay ("fixed" | "measured"), delay_steps (int >= 0),
    prefix (bool; default True = use committed-action prefixes if the checkpoint supports them).
    control_hz is the suite's control frequency unless the user overrides it (--control-hz).
    """
    unknown = sorted(set(options) - set(_OPTION_FLAGS))
    if unknown:
        raise UserError(f"unknown execution option(s): {', '.join(unknown)}")
    given = {k: v for k, v in options.items() if v is not None}
    if mode not in MODES:
        raise UserError(f"execution mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not isinstance(replan_steps, int) or isinstance(replan_steps, bool) or replan_steps <= 0:
        raise UserError(f"replan_steps must be a positive integer, got {replan_steps!r}")
    if control_hz is not None:
        if isinstance(control_hz, bool) or not isinstance(control_hz, (int, float)) or not (
            math.isfinite(control_hz) and control_hz > 0
        ):
            raise UserError(f"control frequency must be a positive number of Hz, got {control_hz!r}")
        control_hz = float(control_hz)
    if mode == "sync":
        if given:
            flags = ", ".join(_OPTION_FLAGS[k] for k in sorted(given))
            raise UserError(f"{flags} only appl{'ies' if len(given) == 1 else 'y'} to "
                            "--execution async (sync is the official protocol: no delay, no prefix)")
        return ExecutionConfig(mode="sync", replan_steps=replan_steps, delay="fixed",
                               delay_steps=0, control_hz=control_hz, prefix=False)
    delay_steps = given.get("delay_steps")
    delay = given.get("delay", "fixed" if delay_steps is not None else None)
    if delay is None:
        raise UserError("async execution needs a delay: --delay-steps N (fixed, reproducible) "
                        "or --delay measured (wall time of each inference x control Hz)")
    if delay not in DELAY_SOURCES:
        raise UserError(f"--delay must be one of {', '.join(DELAY_SOURCES)}, got {delay!r}")
    if delay == "measured" and delay_steps is not None:
        raise UserError("--delay-steps and --delay measured exclude each other: pick one")
    if delay == "fixed":
        if delay_steps is None:
            raise UserError("--delay fixed needs --delay-steps N")
        if isinstance(delay_steps, bool) or not isinstance(delay_steps, int) or delay_steps < 0:
            raise UserError(f"--delay-steps must be an integer >= 0, got {delay_steps!r}")
    if delay == "measured" and control_hz is None:
        raise UserError("--delay measured needs a control frequency: set control_hz in the suite "
                        "YAML or pass --control-hz")
    prefix = given.get("prefix", True)
    if not isinstance(prefix, bool):
        raise UserError(f"prefix must be true or false, got {prefix!r}")
    return ExecutionConfig(
        mode="async", replan_steps=replan_steps, delay=delay,
        delay_steps=delay_steps if delay == "fixed" else None, control_hz=control_hz, prefix=prefix,
    )


def delay_steps_for(latency_s: float, control_hz: float) -> int:
    """Control steps that elapse during an inference of `latency_s`: ceil(latency_s * control_hz).

    A 1e-9 tolerance keeps float noise (0.1 s * 20 Hz = 2.0000000000000004) from adding a step.
    """
    return max(0, math.ceil(float(latency_s) * float(control_hz) - 1e-9))


@dataclass
class SchedulerStats:
    """What happened in one episode: per request (lists, in request order) and totals."""

    queries: int = 0
    executed: int = 0
    idle_steps: int = 0
    latencies_s: list[float] = field(default_factory=list)
    request_steps: list[int] = field(default_factory=list)  # control step at which each request fired
    delay_steps: list[int] = field(default_factory=list)  # steps until its chunk arrived (its d)
    committed_steps: list[int] = field(default_factory=list)  # window actions left at request (Δtc)
    prefix_lengths: list[int] = field(default_factory=list)  # actions sent as prefix (0 = none)
    outcomes: list[str] = field(default_factory=list)  # first | switch | discarded | pending
    chunk_switches: int = 0
    idle_switches: int = 0  # switches with d > committed (the robot held)
    dropped_actions: int = 0  # window actions of new chunks dropped as elapsed
    superseded_actions: int = 0  # window actions never run because a newer chunk arrived early
    discarded_requests: int = 0  # requests in flight dropped by a reset
    control_hz: float | None = None

    def as_metrics(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "executed_actions": self.executed,
            "idle_steps": self.idle_steps,
            "latencies_s": [round(x, 5) for x in self.latencies_s],
            "request_steps": list(self.request_steps),
            "delay_steps": list(self.delay_steps),
            "committed_steps": list(self.committed_steps),
            "prefix_lengths": list(self.prefix_lengths),
            "request_outcomes": list(self.outcomes),
            "chunk_switches": self.chunk_switches,
            "idle_switches": self.idle_switches,
            "dropped_actions": self.dropped_actions,
            "superseded_actions": self.superseded_actions,
            "discarded_requests": self.discarded_requests,
            "control_hz": self.control_hz,
        }


@dataclass
class _InFlight:
    chunk: np.ndarray | None  # None: deferred, not inferred yet
    request_step: int
    delay: int
    index: int  # position in the stats' per-request lists (= the chunk's number in the trace)


HOLD_GRIPPERS = ("last", "hold_action")


class ChunkScheduler:
    """Step-by-step action source for one episode (see the module docstring for the semantics).

    Loop contract (see episode.run_episode), once per control step:
        while query_due():                               # a request fires at this step
            chunk = infer(latest observation, prefix=prefix())
            submit(env_chunk, latency_s)                 # at most twice per step (see below)
        action, idle = next_action()                     # the action this step executes
        observe = observation_needed()                   # will the next step's query read this obs?
    reset() on a new episode or a new sub-goal.
    """

    def __init__(self, config: ExecutionConfig, hold_action: np.ndarray,
                 hold_gripper: str = "hold_action") -> None:
        if hold_gripper not in HOLD_GRIPPERS:
            raise UserError(f"hold_gripper must be one of {HOLD_GRIPPERS}, got {hold_gripper!r}")
        self.config = config
        self.hold_action = np.asarray(hold_action, dtype=np.float64)
        self.hold_gripper = hold_gripper
        self.stats = SchedulerStats(control_hz=config.control_hz)
        self.trace: list[Executed] = []  # every executed step (motion metrics)
        self.chunks: list[ChunkRecord] = []  # every submitted chunk, by request number
        self._last_gripper: float | None = None
        self._active = -1  # request number of the chunk being executed
        self._step = 0
        if config.is_async and config.delay == "fixed":
            self._d_hat = int(config.delay_steps or 0)
        else:
            self._d_hat = 0  # sync; or measured before the first measurement
        self._chunk: np.ndarray | None = None
        self._pos = 0
        self._end = 0
        self._in_flight: _InFlight | None = None
        self._fresh = True
        self._horizon = 0  # length of the last chunk submitted (caps the prefix)

    # -- state helpers --------------------------------------------------------------------------
    @property
    def step(self) -> int:
        """The control step the next `next_action()` executes."""
        return self._step

    @property
    def expected_delay(self) -> int:
        """d_hat: the delay the next request is timed for."""
        return self._d_hat

    def _window_end(self, chunk: np.ndarray) -> int:
        return min(self.config.replan_steps, len(chunk))

    def _remaining(self) -> int:
        return max(0, self._end - self._pos) if self._chunk is not None else 0

    def _arrives_by(self, step: int) -> bool:
        f = self._in_flight
        if f is not None and f.chunk is None and f.request_step + f.delay <= step:
            raise RuntimeError("a deferred chunk is due: complete() it first (see awaiting_chunk())")
        return f is not None and f.request_step + f.delay <= step

    def _advance(self) -> None:
        """Deliver the chunk in flight if it has arrived by the current step."""
        if not self._arrives_by(self._step):
            return
        f = self._in_flight
        assert f is not None
        self._in_flight = None
        stats = self.stats
        if stats.outcomes[f.index] == "pending":  # the blocking first request is not a switch
            stats.outcomes[f.index] = "switch"
            stats.chunk_switches += 1
            stats.superseded_actions += self._remaining()
            if f.delay > stats.committed_steps[f.index]:
                stats.idle_switches += 1
        end = self._window_end(f.chunk)
        stats.dropped_actions += min(f.delay, end)
        self._chunk, self._pos, self._end = f.chunk, f.delay, end
        self._active = f.index

    # -- loop contract --------------------------------------------------------------------------
    def reset(self) -> None:
        """Drop the current chunk and any request in flight (new episode or new sub-goal)."""
        if self._in_flight is not None:
            self.stats.outcomes[self._in_flight.index] = "discarded"
            self.stats.discarded_requests += 1
        self._in_flight = None
        self._chunk, self._pos, self._end = None, 0, 0
        self._fresh = True

    def query_due(self) -> bool:
        """Does a request fire at the current step (on the latest observation)?"""
        self._advance()
        return self._in_flight is None and self._remaining() <= self._d_hat

    def prefix(self) -> np.ndarray | None:
        """The d_hat actions committed while the next request is inferred, when prefixes are used.

        None in sync mode, with prefixes off or unsupported, for a blocking first request, or when
        d_hat = 0. At most T actions (the last chunk's length): a chunk cannot hold more.
        """
        self._advance()
        if not self.config.use_prefix or self._fresh or self._d_hat <= 0:
            return None
        n = min(self._d_hat, self._horizon)
        actions = [] if self._chunk is None else list(self._chunk[self._pos: self._end][:n])
        gripper = float(actions[-1][-1]) if actions else self._last_gripper
        actions += [self._hold(gripper)] * (n - len(actions))
        return np.stack(actions).astype(np.float64)

    def _hold(self, last_gripper: float | None) -> np.ndarray:
        """Zero motion; the gripper per hold_gripper (see the module docstring)."""
        hold = self.hold_action.copy()
        if self.hold_gripper == "last" and last_gripper is not None:
            hold[-1] = last_gripper
        return hold

    def can_defer(self) -> bool:
        """May the request firing now be inferred while the simulator runs (see Overlap)?"""
        return (self.config.is_async and self.config.overlap and self.config.delay == "fixed"
                and not self._fresh and int(self.config.delay_steps or 0) > 0)

    def submit_deferred(self) -> None:
        """Register the request firing now; its chunk comes later through `complete()`."""
        if not self.can_defer():
            raise RuntimeError("submit_deferred() needs async, a fixed delay > 0 and a chunk in place")
        self._register(None, 0.0)

    def awaiting_chunk(self) -> bool:
        """Call after next_action(), before observation_needed(): must the deferred chunk be completed
        now (it arrives at the next step, whose observation the lookahead decides)?"""
        f = self._in_flight
        return f is not None and f.chunk is None and f.request_step + f.delay <= self._step

    def complete(self, chunk: np.ndarray, latency_s: float) -> None:
        """The chunk of the deferred request, and how long it took."""
        f = self._in_flight
        if f is None or f.chunk is not None:
            raise RuntimeError("complete() without a deferred request")
        f.chunk = self._checked(chunk)
        self.stats.latencies_s[f.index] = float(latency_s)
        self.chunks[f.index] = ChunkRecord(f.request_step, f.chunk)
        self._horizon = len(f.chunk)

    @staticmethod
    def _checked(chunk: np.ndarray) -> np.ndarray:
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.ndim != 2 or len(chunk) == 0:
            raise ValueError(f"expected a non-empty (T, action_dim) chunk, got shape {chunk.shape}")
        return chunk

    def submit(self, chunk: np.ndarray, latency_s: float) -> None:
        """Hand over the chunk inferred for the request that fires at the current step."""
        self._register(self._checked(chunk), latency_s)

    def _register(self, chunk: np.ndarray | None, latency_s: float) -> None:
        self._advance()
        if self._in_flight is not None:
            raise RuntimeError("submit() while a request is in flight: call it only when query_due()")
        config, stats = self.config, self.stats
        prefix = self.prefix()
        if config.measured:
            assert config.control_hz is not None
            measured = delay_steps_for(latency_s, config.control_hz)
            delay = 0 if self._fresh else measured
            self._d_hat = measured
        elif config.is_async and not self._fresh:
            delay = int(config.delay_steps or 0)
        else:
            delay = 0
        stats.queries += 1
        stats.latencies_s.append(float(latency_s))
        stats.request_steps.append(self._step)
        stats.delay_steps.append(delay)
        stats.committed_steps.append(self._remaining())
        stats.prefix_lengths.append(0 if prefix is None else len(prefix))
        stats.outcomes.append("first" if self._fresh else "pending")
        self._in_flight = _InFlight(chunk, self._step, delay, len(stats.outcomes) - 1)
        self.chunks.append(ChunkRecord(self._step, chunk if chunk is not None else np.zeros((0, 0))))
        if chunk is not None:
            self._horizon = len(chunk)
        self._fresh = False
        self._advance()

    def next_action(self) -> tuple[np.ndarray, bool]:
        """The action executed at the current step, and whether it is a hold (idle) step."""
        self._advance()
        step = self._step
        self._step += 1
        if self._chunk is not None and self._pos < self._end:
            action = self._chunk[self._pos].copy()
            self.trace.append(Executed(step, action, self._active, self._pos))
            self._pos += 1
            self.stats.executed += 1
            self._last_gripper = float(action[-1])
            return action, False
        self.stats.idle_steps += 1
        hold = self._hold(self._last_gripper)
        self.trace.append(Executed(step, hold, None, None))
        return hold, True

    def motion_metrics(self, success_step: int | None) -> dict[str, Any]:
        """metrics.motion of the episode so far (see mibot_eval.run.motion)."""
        return motion_metrics(self.trace, self.chunks, success_step, self.config.control_hz)

    def observation_needed(self) -> bool:
        """Will a request fire at the next step (so this step's observation must be rendered)?

        Call after next_action(): looks ahead with exactly the rule of query_due(), including an
        arrival due at the next step.
        """
        in_flight, remaining = self._in_flight is not None, self._remaining()
        if self._arrives_by(self._step):
            f = self._in_flight
            assert f is not None
            in_flight, remaining = False, max(0, self._window_end(f.chunk) - f.delay)
        return not in_flight and remaining <= self._d_hat
