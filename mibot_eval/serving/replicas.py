"""`--replicas R`: R policy instances on this machine's device, each in its own process, so R forwards
at batch 1 run concurrently (the released checkpoints take one noise seed per forward, so batch 1 is
what fidelity requires and throughput comes from concurrency instead).

Each replica is a private policy server (mibot_eval.serving.server, loopback, an ephemeral port, a random
shared token) in a spawned process holding one model; the simulator workers talk to them
round-robin (`--workers N`, worker i -> replica i mod R), through the same validated wire format as
`--policy ws://...`. Records equal a single replica's: every forward is per-request deterministic.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

from mibot_eval.errors import UserError

START_TIMEOUT_S = 600.0  # loading a 4.7B checkpoint can take minutes


def _replica_main(conn: Any, checkpoint: str | None, factory: str | None, device: str | None,
                  token: str, batch_size: int, batch_wait_ms: float) -> None:
    """A replica process: load the policy, serve it on loopback, report the URL (or the error)."""
    from mibot_eval.serving.process_env import prepare_process_env

    prepare_process_env()
    try:
        from mibot_eval.serving.server import PolicyServer, make_server

        options = dict(host="127.0.0.1", port=0, batch_size=batch_size, batch_wait_ms=batch_wait_ms,
                       token=token)
        if factory is not None:
            module, _, attr = factory.partition(":")
            policy = getattr(importlib.import_module(module), attr)()
            server = PolicyServer(policy, {"name": checkpoint or attr, "hash": f"factory:{factory}"},
                                  **options)
        else:
            assert checkpoint is not None
            server = make_server(checkpoint, device, **options)

        def ready(srv: Any) -> None:
            conn.send({"url": srv.url})

        server.serve_forever(on_ready=ready)
    except BaseException as exc:  # noqa: BLE001 - reported to the main process as one line
        conn.send({"error": f"{type(exc).__name__}: {exc}"})


class ReplicaServers:
    """Context manager: R replica processes; `urls` are their loopback addresses, `token_file` the
    shared token the workers read (via $MIBOT_EVAL_TOKEN_FILE)."""

    def __init__(self, replicas: int, checkpoint: str | None = None, device: str | None = None,
                 batch_size: int = 1, batch_wait_ms: float = 0.0, factory: str | None = None) -> None:
        if replicas < 1:
            raise UserError(f"--replicas must be >= 1, got {replicas}")
        self.replicas, self.checkpoint, self.device, self.factory = replicas, checkpoint, device, factory
        self.batch_size, self.batch_wait_ms = batch_size, batch_wait_ms
        self.urls: list[str] = []
        self.processes: list[Any] = []
        self.token = secrets.token_hex(16)
        self._token_dir: Any = None
        self.token_file: Path | None = None

    def __enter__(self) -> ReplicaServers:
        ctx = multiprocessing.get_context("spawn")
        self._token_dir = tempfile.TemporaryDirectory(prefix="mibot-replicas-")
        self.token_file = Path(self._token_dir.name) / "token"
        self.token_file.write_text(self.token + "\n")
        os.chmod(self.token_file, 0o600)
        pipes = []
        try:
            for i in range(self.replicas):
                parent, child = ctx.Pipe(duplex=False)
                process = ctx.Process(target=_replica_main, daemon=True, name=f"mibot-replica-{i}",
                                      args=(child, self.checkpoint, self.factory, self.device, self.token,
                                            self.batch_size, self.batch_wait_ms))
                process.start()
                child.close()
                self.processes.append(process)
                pipes.append(parent)
            for i, pipe in enumerate(pipes):
                if not pipe.poll(START_TIMEOUT_S):
                    raise UserError(f"policy replica {i} did not start within {START_TIMEOUT_S:g} s")
                reply = pipe.recv()
                if "error" in reply:
                    raise UserError(f"policy replica {i} failed to start: {reply['error']}")
                self.urls.append(reply["url"])
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        if self._token_dir is not None:
            self._token_dir.cleanup()
