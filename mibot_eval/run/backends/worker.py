"""The simulator side of a parallel run: one process (or Ray actor) that runs episodes.

`WorkerCore` keeps one adapter per suite, created lazily in the worker (so envs and GL contexts are
born there) and reused across episodes, and runs each episode with `job.run_job`: the same
run_episode + ChunkScheduler as the single-process path. Its Policy forwards every request, either
to the main process's batcher (`PipePolicy`, msgpack over a multiprocessing pipe) or to a policy
server (`RemotePolicy`).

`worker_main` is the entry point of a spawned worker process: it speaks the pipe protocol below.

main -> worker   {"type": "suite", ...suite_payload}    before the suite's first episode here
                 {"type": "episode", "spec", "video", "fps"}
                 {"type": "chunks", "chunks"} | {"type": "infer_error", "error", "user_error"}
                 {"type": "stop"}
worker -> main   {"type": "ready", "pid"}
                 {"type": "infer", "requests"}          (then waits for chunks)
                 {"type": "result", "result", "video"}  (video: MP4 bytes it may keep, or None)
                 {"type": "fatal", "error"}             a UserError: the run must stop
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from mibot_eval.config import SuiteProtocol
from mibot_eval.errors import UserError
from mibot_eval.run.job import run_shipped_video
from mibot_eval.run.scheduler import ExecutionConfig
from mibot_eval.serving import codec
from mibot_eval.serving.process_env import prepare_process_env
from mibot_eval.types import PolicyRequest


def limit_torch_threads() -> None:
    """torch threads to 1 if something imported torch here (workers do not need it)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def suite_payload(plan: Any, render: str) -> dict[str, Any]:
    """What a worker needs to rebuild a suite's adapter and scheduler (plain data only)."""
    from mibot_eval.suites.base import ADAPTERS

    protocol = plan.protocol
    module, cls = ADAPTERS[protocol.adapter]  # the caller's registry (tests register fakes there)
    data = {**protocol.as_dict(), "source": protocol.source}
    return {
        "name": protocol.name, "protocol": data, "adapter": [module, cls],
        "execution": asdict(plan.execution), "robot_type": plan.robot_type, "render": render,
    }


class _Suite:
    def __init__(self, payload: dict[str, Any]) -> None:
        self.protocol = SuiteProtocol.from_dict(payload["protocol"])
        self.execution = ExecutionConfig(**payload["execution"])
        self.robot_type = str(payload["robot_type"])
        self.render = str(payload["render"])
        self.module, self.cls = payload["adapter"]
        self.adapter: Any = None

    def get_adapter(self) -> Any:
        if self.adapter is None:
            cls = getattr(importlib.import_module(self.module), self.cls)
            self.adapter = cls(self.protocol, render=self.render)
            limit_torch_threads()
        return self.adapter


class WorkerCore:
    """Runs episodes of any suite it was told about; adapters (and envs) live as long as it does."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.suites: dict[str, _Suite] = {}

    def add_suite(self, payload: dict[str, Any]) -> None:
        if payload["name"] not in self.suites:
            self.suites[payload["name"]] = _Suite(payload)

    def run(self, spec_wire: dict[str, Any], video: str = "none", fps: int = 20
            ) -> tuple[dict[str, Any], bytes | None]:
        """One episode; returns its result (wire form) and, when it may be kept, its MP4 bytes."""
        spec = codec.spec_from_wire(spec_wire)
        suite = self.suites[spec.suite]
        result, data = run_shipped_video(suite.get_adapter(), self.policy, spec, suite.execution,
                                         suite.protocol, suite.robot_type, video, fps)
        return codec.result_to_wire(result), data

    def close(self) -> None:
        for suite in self.suites.values():
            if suite.adapter is not None:
                suite.adapter.close()
        close = getattr(self.policy, "close", None)
        if close is not None:
            close()


class MainProcessGone(BaseException):
    """The pipe to the main process broke: it died or stopped; the worker exits quietly.
    (A BaseException: no episode-level handler may take it for a failed episode.)"""


def _send(conn: Any, message: dict[str, Any]) -> None:
    try:
        conn.send_bytes(codec.pack(message))
    except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
        raise MainProcessGone from None


def _receive(conn: Any) -> Any:
    try:
        return codec.unpack(conn.recv_bytes())
    except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
        raise MainProcessGone from None


class PipePolicy:
    """The Policy of a worker process: each request goes to the main process's batcher."""

    def __init__(self, conn: Any, supports_prefix: bool) -> None:
        self.conn = conn
        self.supports_prefix = supports_prefix

    def infer(self, requests: Sequence[PolicyRequest]) -> list[np.ndarray]:
        wire = [codec.request_to_wire(r) for r in requests]
        _send(self.conn, {"type": "infer", "requests": wire})
        reply = _receive(self.conn)
        if reply.get("type") == "infer_error":
            if reply.get("user_error"):
                raise UserError(reply["error"])
            raise RuntimeError(f"policy: {reply['error']}")
        return codec.chunks_from_wire(reply.get("chunks"), len(requests))

    def describe(self) -> dict[str, Any]:
        return {"kind": "pipe"}


def worker_main(conn: Any, init: bytes) -> None:
    """Entry point of a spawned simulator process (see the module docstring for the protocol)."""
    config = codec.unpack(init)
    prepare_process_env(int(config.get("render_threads") or 1))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if config.get("policy_url"):
        from mibot_eval.serving.client import RemotePolicy

        policy: Any = RemotePolicy(config["policy_url"])
    else:
        policy = PipePolicy(conn, bool(config.get("supports_prefix")))
    core = WorkerCore(policy)
    try:
        _send(conn, {"type": "ready", "pid": os.getpid()})
        while True:
            message = _receive(conn)
            kind = message.get("type")
            if kind == "stop":
                break
            if kind == "suite":
                core.add_suite(message)
            elif kind == "episode":
                try:
                    result, video = core.run(message["spec"], message.get("video", "none"),
                                             int(message.get("fps", 20)))
                except UserError as exc:
                    _send(conn, {"type": "fatal", "error": str(exc)})
                    continue
                _send(conn, {"type": "result", "result": result, "video": video})
    except MainProcessGone:
        pass  # the main process stopped or died: nothing to report to, exit quietly
    finally:
        try:
            core.close()
        except Exception:  # noqa: BLE001 - closing envs at exit must not mask the real exit
            pass
