"""`--workers N` on one machine: N spawned simulator processes, one batched policy in this process.

Each worker runs its episodes independently (the simulators never wait on each other); when one needs
actions it sends the observation here and waits for its chunk. This process gathers the waiting
requests into one policy call. A batch is sent to the policy as soon as one of these holds:
  * it has --batch-size observations;
  * every worker that is running an episode is waiting for actions (nobody else can add to the
    batch, so waiting longer only adds latency: with one worker, or in lockstep, there is no wait);
  * its oldest request has waited --batch-wait-ms.
With `--policy ws://...` the workers talk to the server directly and this process only dispatches.

Workers are spawned (not forked: no GL context or CUDA state is inherited); envs are created lazily
inside them and reused across the episodes of a task. This process is the only writer of the
results store. A watchdog kills a worker whose episode exceeds --episode-timeout; a crashed or killed
worker is replaced and its episode retried once (see dispatch.py).
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Any

from mibot_eval.errors import UserError
from mibot_eval.run import interrupts
from mibot_eval.run.backends.dispatch import Dispatch
from mibot_eval.run.backends.options import ParallelOptions
from mibot_eval.run.backends.worker import suite_payload, worker_main
from mibot_eval.serving import codec
from mibot_eval.types import EpisodeSpec, PolicyRequest

POLL_S = 0.5
STOP_GRACE_S = 5.0
MAX_START_FAILURES = 3  # a worker slot that dies before it is ready this many times stops the run


@dataclass
class _Worker:
    slot: int
    process: Any
    conn: Any
    generation: int
    ready: bool = False
    suites: set[str] = field(default_factory=set)
    spec: EpisodeSpec | None = None
    started: float = 0.0
    waiting: bool = False  # sent a request, waits for its chunk

    @property
    def key(self) -> tuple[int, int]:
        return (self.slot, self.generation)


@dataclass
class _Pending:
    worker: _Worker
    requests: list[PolicyRequest]
    since: float


class LocalPool:
    def __init__(self, plans: list[Any], policy: Any, options: ParallelOptions, dispatch: Dispatch,
                 render: str, fps: int) -> None:
        self.plans = {p.protocol.name: p for p in plans}
        self.policy, self.options, self.dispatch = policy, options, dispatch
        self.render, self.fps = render, fps
        self.remote = bool(options.policy_urls)
        self.ctx = multiprocessing.get_context("spawn")
        self.workers: list[_Worker] = []
        self.pending: list[_Pending] = []
        self.generation = 0
        self.stats = {"batches": 0, "batched_requests": 0, "max_batch": 0, "worker_restarts": 0,
                      "timeouts": 0, "crashes": 0, "start_failures": 0}
        self.start_failures: dict[int, int] = {}  # slot -> consecutive failures to start

    # -- workers ----------------------------------------------------------------------------------
    def _spawn(self, slot: int) -> _Worker:
        parent, child = self.ctx.Pipe(duplex=True)
        urls = self.options.policy_urls
        init = codec.pack({
            "policy_url": urls[slot % len(urls)] if urls else None,
            "supports_prefix": bool(getattr(self.policy, "supports_prefix", False)),
            "render_threads": max(1, (os.cpu_count() or 1) // max(1, self.options.workers)),
        })
        process = self.ctx.Process(target=worker_main, args=(child, init), daemon=True,
                                   name=f"mibot-sim-{slot}")
        process.start()
        child.close()
        self.generation += 1
        return _Worker(slot, process, parent, self.generation)

    def _send(self, worker: _Worker, message: dict[str, Any]) -> bool:
        try:
            worker.conn.send_bytes(codec.pack(message))
            return True
        except (BrokenPipeError, ConnectionResetError, OSError):
            return False

    def _assign(self, worker: _Worker) -> None:
        if not worker.ready or worker.spec is not None:
            return
        item = self.dispatch.next_for(worker.key)
        if item is None:
            return
        spec, video = item
        if spec.suite not in worker.suites:
            self._send(worker, {"type": "suite", **suite_payload(self.plans[spec.suite], self.render)})
            worker.suites.add(spec.suite)
        worker.spec, worker.started, worker.waiting = spec, time.monotonic(), False
        self._send(worker, {"type": "episode", "spec": codec.spec_to_wire(spec), "video": video,
                            "fps": self.fps})

    def _replace(self, worker: _Worker, reason: str) -> None:
        """The worker is gone or must go: kill it, retry its episode, start a fresh one."""
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=STOP_GRACE_S)
        worker.conn.close()
        self.pending = [p for p in self.pending if p.worker is not worker]
        if worker.ready:
            self.start_failures[worker.slot] = 0
        else:  # died before it said ready: start it again, unless it keeps failing
            self.start_failures[worker.slot] = self.start_failures.get(worker.slot, 0) + 1
            self.stats["start_failures"] += 1
            if self.start_failures[worker.slot] >= MAX_START_FAILURES:
                raise UserError(f"a simulator worker process failed to start {MAX_START_FAILURES} times "
                                f"in a row (last: {reason}); finished episodes are saved. Check that "
                                "the simulator imports in a plain `python -c` (e.g. `import libero`), "
                                "then rerun to resume")
        self.dispatch.lost(worker.key, worker.spec, reason)
        self.stats["worker_restarts"] += 1
        fresh = self._spawn(worker.slot)
        self.workers[self.workers.index(worker)] = fresh

    # -- messages ---------------------------------------------------------------------------------
    def _on_message(self, worker: _Worker, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "ready":
            worker.ready = True
        elif kind == "infer":
            requests = [codec.request_from_wire(item) for item in message["requests"]]
            worker.waiting = True
            self.pending.append(_Pending(worker, requests, time.monotonic()))
        elif kind == "result":
            worker.spec, worker.waiting = None, False
            self.dispatch.finished(message["result"], message.get("video"))
        elif kind == "fatal":
            raise UserError(message["error"])
        else:
            raise RuntimeError(f"unexpected message from a simulator worker: {kind!r}")

    def _exit_reason(self, worker: _Worker) -> str:
        worker.process.join(timeout=1.0)
        code = worker.process.exitcode
        if code is not None and code < 0:
            import signal

            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"simulator process died ({name})"
        return f"simulator process exited unexpectedly (exit code {code})"

    # -- batching ---------------------------------------------------------------------------------
    def _batch_due(self, now: float) -> bool:
        if not self.pending:
            return False
        if sum(len(p.requests) for p in self.pending) >= self.options.batch_size:
            return True
        if now - self.pending[0].since >= self.options.batch_wait_s:
            return True
        busy = [w for w in self.workers if w.spec is not None]
        return all(w.waiting for w in busy)

    def _flush(self) -> None:
        batch, size = [], 0
        while self.pending and (not batch or size + len(self.pending[0].requests)
                                <= self.options.batch_size):
            item = self.pending.pop(0)
            batch.append(item)
            size += len(item.requests)
        flat = [r for item in batch for r in item.requests]
        try:
            chunks = self.policy.infer(flat)
            replies = []
            start = 0
            for item in batch:
                part = chunks[start:start + len(item.requests)]
                start += len(item.requests)
                replies.append({"type": "chunks", "chunks": codec.chunks_to_wire(part)})
        except UserError as exc:
            replies = [{"type": "infer_error", "error": str(exc), "user_error": True}] * len(batch)
        except Exception as exc:  # noqa: BLE001 - the episodes get error records, the run goes on
            detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
            replies = [{"type": "infer_error", "error": detail, "user_error": False}] * len(batch)
        self.stats["batches"] += 1
        self.stats["batched_requests"] += len(flat)
        self.stats["max_batch"] = max(self.stats["max_batch"], len(flat))
        for item, reply in zip(batch, replies, strict=True):
            item.worker.waiting = False
            self._send(item.worker, reply)

    # -- main loop --------------------------------------------------------------------------------
    def run(self) -> None:
        count = min(self.options.workers, max(1, len(self.dispatch.queue)))
        self.workers = [self._spawn(slot) for slot in range(count)]
        try:
            while not self.dispatch.done:
                interrupts.check()  # Ctrl-C / SIGTERM: stop the workers, keep what is recorded
                self._cycle()
        finally:
            self._stop_all()

    def _cycle(self) -> None:
        now = time.monotonic()
        timeout = POLL_S
        if self.pending:
            timeout = min(timeout, max(0.0, self.pending[0].since + self.options.batch_wait_s - now))
        limit = self.options.episode_timeout_s
        if limit:
            for w in self.workers:
                if w.spec is not None:
                    timeout = min(timeout, max(0.0, w.started + limit - now))
        handles: dict[Any, _Worker] = {}
        for w in self.workers:
            handles[w.conn] = w
            handles[w.process.sentinel] = w
        for handle in wait(list(handles), timeout=timeout):
            worker = handles[handle]
            if worker not in self.workers:
                continue  # already replaced in this cycle
            if handle is worker.conn:
                try:
                    while worker.conn.poll():
                        self._on_message(worker, codec.unpack(worker.conn.recv_bytes()))
                except (EOFError, OSError):
                    self._lost(worker, self._exit_reason(worker))
            elif not worker.conn.poll():
                self._lost(worker, self._exit_reason(worker))
        now = time.monotonic()
        if limit:
            for w in list(self.workers):
                if w.spec is not None and now - w.started > limit:
                    self.stats["timeouts"] += 1
                    self._replace(w, f"episode exceeded the {limit:g} s time limit (worker killed)")
        while self._batch_due(time.monotonic()):
            self._flush()
        for w in self.workers:
            self._assign(w)

    def _lost(self, worker: _Worker, reason: str) -> None:
        self.stats["crashes"] += 1
        self._replace(worker, reason)

    def _stop_all(self) -> None:
        for w in self.workers:
            self._send(w, {"type": "stop"})
        deadline = time.monotonic() + STOP_GRACE_S
        for w in self.workers:
            w.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=STOP_GRACE_S)
            w.conn.close()


class LocalPoolBackend:
    """The Backend of `--workers N` (see the module docstring)."""

    name = "local"

    def __init__(self, policy: Any, options: ParallelOptions, render: str = "lazy") -> None:
        self.policy, self.options, self.render = policy, options, render

    def run(self, plans: Sequence[Any], todo: Sequence[EpisodeSpec], ledger: Any, videos: Any
            ) -> dict[str, Any]:
        """Run `todo` in worker processes; returns batching and restart statistics."""
        if self.options.policy_urls:  # the workers talk to the server(s); an idle connection here
            close = getattr(self.policy, "close", None)  # would make the server wait for it
            if close is not None:
                close()
        dispatch = Dispatch(list(todo), ledger, videos)
        pool = LocalPool(list(plans), self.policy, self.options, dispatch, render=self.render,
                         fps=videos.fps)
        if not dispatch.done:
            pool.run()
        stats: dict[str, Any] = dict(pool.stats)
        stats["steals"] = dispatch.queue.steals
        if stats["batches"]:
            stats["mean_batch"] = round(stats["batched_requests"] / stats["batches"], 3)
        return stats
