"""`mibot-eval serve CHECKPOINT`: the policy over a WebSocket, msgpack + numpy, batched across clients.

Protocol (version 1; every frame is binary msgpack, arrays as in mibot_eval.parallel.codec):
  server -> client on connect   {"type": "hello", "protocol": 1, "max_message_bytes", "checkpoint",
                                 "policy", "robot_types", "supports_prefix", "batch_size"}
  client -> server              {"type": "infer", "id": N, "requests": [request, ...]}
                                 request = {"images": {label: uint8 HxWx3},
                                            "state": float64 (S,) (float32 accepted),
                                            "instruction": str, "robot_type": str,
                                            "prefix": null | float (P, D),
                                            "seed": null | int in [0, 2**32) (the client's
                                            release seed, passed to the model unchanged)}
  server -> client              {"type": "result", "id": N, "chunks": [float32 (T, D), ...]}
                                 {"type": "error", "id": N | null, "error": "..."}
A malformed, wrongly typed or out-of-range message gets an error reply and the connection stays
open; a message over the size bound is refused by the WebSocket layer while it arrives (close code
1009, "message too big"): the server never buffers it, and keeps serving everyone else.
GET /healthz (plain HTTP on the same port) answers JSON: status, checkpoint, clients, batches.

Batching: requests from all connections queue here; a batch goes to the policy when it holds
--batch-size observations, when every connected client is waiting for a reply, or when its oldest
request has waited --batch-wait-ms. Inference runs in a worker thread, so pings, health checks and
new connections are served during a long forward pass. Keepalive pings every 20 s with a generous
pong timeout: a client busy building its simulator (seconds of MuJoCo start-up) stays connected.
Nothing here unpickles or evaluates anything a client sends.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import http
import json
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

from mibot_eval.errors import UserError
from mibot_eval.parallel import codec

DEFAULT_PORT = 8765
DEFAULT_MAX_MESSAGE_MB = 16.0
PING_INTERVAL_S = 20.0
PING_TIMEOUT_S = 120.0
MAX_REQUESTS_PER_MESSAGE = 64


@dataclass
class _Job:
    connection: Any
    message_id: Any
    requests: list[Any]
    since: float
    future: asyncio.Future


class PolicyServer:
    """Serves one Policy to many clients; see the module docstring for the protocol."""

    def __init__(self, policy: Any, checkpoint: dict[str, Any], host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT, batch_size: int = 8, batch_wait_ms: float = 5.0,
                 max_message_bytes: int = int(DEFAULT_MAX_MESSAGE_MB * 2**20),
                 ping_interval: float | None = PING_INTERVAL_S,
                 ping_timeout: float | None = PING_TIMEOUT_S) -> None:
        self.policy, self.checkpoint = policy, checkpoint
        self.host, self.port = host, port
        self.batch_size, self.batch_wait_s = batch_size, batch_wait_ms / 1000.0
        self.max_message_bytes = max_message_bytes
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.robot_types = sorted(getattr(policy, "robot_types", None) or [])
        self.stats = {"connections": 0, "clients": 0, "requests": 0, "batches": 0, "errors": 0,
                      "max_batch": 0}
        self._queue: list[_Job] = []
        self._wakeup: asyncio.Event | None = None
        self._waiting: set[Any] = set()  # connections with a request queued or being inferred
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="policy")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    # -- protocol ---------------------------------------------------------------------------------
    def hello(self) -> dict[str, Any]:
        return {
            "type": "hello", "protocol": codec.PROTOCOL_VERSION,
            "max_message_bytes": self.max_message_bytes, "checkpoint": self.checkpoint,
            "policy": self.policy.describe(), "robot_types": self.robot_types,
            "supports_prefix": bool(getattr(self.policy, "supports_prefix", False)),
            "batch_size": self.batch_size,
        }

    def _parse(self, data: Any) -> tuple[Any, list[Any]]:
        """(message id, validated requests) of one frame; WireError carries the id when known."""
        if isinstance(data, str):
            raise codec.WireError("text frames are not accepted: send binary msgpack")
        message = codec.unpack(data)
        if not isinstance(message, dict):
            raise codec.WireError("a message must be a msgpack map")
        message_id = message.get("id")
        if message_id is not None and (isinstance(message_id, bool)
                                       or not isinstance(message_id, (int, str))):
            raise codec.WireError("'id' must be an integer or a string")
        try:
            if message.get("type") != "infer":
                raise codec.WireError(f"unknown message type {message.get('type')!r} (expected 'infer')")
            items = message.get("requests")
            if not isinstance(items, list) or not 0 < len(items) <= MAX_REQUESTS_PER_MESSAGE:
                raise codec.WireError(
                    f"'requests' must be a list of 1..{MAX_REQUESTS_PER_MESSAGE} requests")
            requests = [codec.request_from_wire(item) for item in items]
            for request in requests:
                if self.robot_types and request.robot_type not in self.robot_types:
                    raise codec.WireError(f"unknown robot_type {request.robot_type!r} "
                                          f"(served: {', '.join(self.robot_types)})")
        except codec.WireError as exc:
            exc.message_id = message_id  # type: ignore[attr-defined]
            raise
        return message_id, requests

    async def _handler(self, connection: Any) -> None:
        import websockets

        self.stats["connections"] += 1
        self.stats["clients"] += 1
        try:
            await connection.send(codec.pack(self.hello()))
            async for data in connection:
                try:
                    message_id, requests = self._parse(data)
                except codec.WireError as exc:
                    self.stats["errors"] += 1
                    await connection.send(codec.pack({
                        "type": "error", "id": getattr(exc, "message_id", None), "error": str(exc),
                    }))
                    continue
                reply = await self._submit(connection, message_id, requests)
                await connection.send(codec.pack(reply))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.stats["clients"] -= 1
            self._waiting.discard(connection)
            self._poke()

    async def _submit(self, connection: Any, message_id: Any, requests: list[Any]) -> dict[str, Any]:
        assert self._loop is not None
        future = self._loop.create_future()
        self._queue.append(_Job(connection, message_id, requests, time.monotonic(), future))
        self._waiting.add(connection)
        self._poke()
        try:
            return await future
        finally:
            self._waiting.discard(connection)

    def _poke(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    # -- batching ---------------------------------------------------------------------------------
    def _due(self) -> float | None:
        """0 when a batch should go now, else seconds until the oldest request's deadline."""
        if not self._queue:
            return None
        if sum(len(j.requests) for j in self._queue) >= self.batch_size:
            return 0.0
        if len(self._waiting) >= self.stats["clients"]:
            return 0.0  # every connected client is waiting: nobody can add to the batch
        return max(0.0, self._queue[0].since + self.batch_wait_s - time.monotonic())

    async def _batcher(self) -> None:
        assert self._wakeup is not None and self._loop is not None
        while True:
            delay = self._due()
            if delay is None or delay > 0:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=delay)
                except asyncio.TimeoutError:
                    pass
                continue
            batch, size = [], 0
            while self._queue and (not batch or size + len(self._queue[0].requests) <= self.batch_size):
                job = self._queue.pop(0)
                batch.append(job)
                size += len(job.requests)
            flat = [r for job in batch for r in job.requests]
            try:
                chunks = await self._loop.run_in_executor(self._executor, self.policy.infer, flat)
                start = 0
                for job in batch:
                    part = chunks[start:start + len(job.requests)]
                    start += len(job.requests)
                    reply = {"type": "result", "id": job.message_id,
                             "chunks": codec.chunks_to_wire(part)}
                    if not job.future.done():
                        job.future.set_result(reply)
            except Exception as exc:  # noqa: BLE001 - one bad batch must not stop the server
                detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
                self.stats["errors"] += 1
                for job in batch:
                    if not job.future.done():
                        job.future.set_result({"type": "error", "id": job.message_id,
                                               "error": f"inference failed: {detail}"})
            self.stats["batches"] += 1
            self.stats["requests"] += len(flat)
            self.stats["max_batch"] = max(self.stats["max_batch"], len(flat))

    def _health(self, connection: Any, request: Any) -> Any:
        if request.path.split("?")[0].rstrip("/") not in ("/healthz", "/health"):
            return None
        body = json.dumps({
            "status": "ok", "checkpoint": self.checkpoint.get("name"),
            "checkpoint_hash": self.checkpoint.get("hash"), "protocol": codec.PROTOCOL_VERSION,
            **self.stats,
            "mean_batch": round(self.stats["requests"] / self.stats["batches"], 3)
            if self.stats["batches"] else None,
        })
        response = connection.respond(http.HTTPStatus.OK, body + "\n")
        response.headers["Content-Type"] = "application/json"
        return response

    # -- lifecycle --------------------------------------------------------------------------------
    async def _start(self) -> None:
        from websockets.asyncio.server import serve

        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._stopped = asyncio.Event()
        self._server = await serve(
            self._handler, self.host, self.port, process_request=self._health,
            max_size=self.max_message_bytes, compression=None, ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout, max_queue=4,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._batch_task = asyncio.create_task(self._batcher())

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", None) else self.host
        host = f"[{host}]" if ":" in host else host
        return f"ws://{host}:{self.port}"

    def serve_forever(self, on_ready: Any = None) -> None:
        async def main() -> None:
            await self._start()
            if threading.current_thread() is threading.main_thread():
                import signal

                assert self._stopped is not None
                self._loop.add_signal_handler(signal.SIGTERM, self._stopped.set)  # graceful stop
            if on_ready is not None:
                on_ready(self)
            assert self._stopped is not None
            try:
                await self._stopped.wait()
            finally:
                self._batch_task.cancel()
                self._server.close()
                await self._server.wait_closed()

        asyncio.run(main())

    def start_in_thread(self) -> str:
        """Serve from a background thread (tests, Ray replicas, benchmarks); returns the URL."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            try:
                self.serve_forever(on_ready=lambda _server: ready.set())
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                errors.append(exc)
                ready.set()

        self._thread = threading.Thread(target=run, name="policy-server", daemon=True)
        self._thread.start()
        ready.wait(timeout=60)
        if errors:
            raise errors[0]
        return self.url

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._executor.shutdown(wait=False)


def make_server(checkpoint: str, device: str | None = None, **options: Any) -> PolicyServer:
    """Resolve and load a checkpoint as `run` does; the hello states its identity (name, hash)."""
    from mibot_eval.config import resolve_checkpoint
    from mibot_eval.policy.load import load_policy, local_identity

    resolved, identity = local_identity(resolve_checkpoint(checkpoint))
    policy = load_policy(resolved, device)
    return PolicyServer(policy, {**identity.as_manifest(), "path": str(resolved.path)}, **options)


# -- CLI ------------------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="serve a checkpoint's policy over a WebSocket (msgpack + numpy, batched)",
        description="Serve CHECKPOINT to `mibot-eval run --policy ws://HOST:PORT` clients: requests "
        "from all clients are batched into one forward pass. msgpack-encoded numpy arrays with "
        "validated dtypes and shapes, a bounded message size, GET /healthz. No authentication: "
        "bind to a trusted network only (default 127.0.0.1).",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="name from checkpoints.yaml, hub id, or local folder (as for run)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--batch-size", type=int, default=8, help="max observations per forward pass")
    p.add_argument("--batch-wait-ms", type=float, default=5.0,
                   help="longest wait for a batch to fill (default 5 ms)")
    p.add_argument("--max-message-mb", type=float, default=DEFAULT_MAX_MESSAGE_MB,
                   help=f"largest accepted message (default {DEFAULT_MAX_MESSAGE_MB:g} MiB)")
    p.set_defaults(handler=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be 0..65535, got {args.port}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not 0 <= args.batch_wait_ms <= 10_000:
        raise UserError(f"--batch-wait-ms must be in 0..10000, got {args.batch_wait_ms}")
    if not 0 < args.max_message_mb <= 1024:
        raise UserError(f"--max-message-mb must be in (0, 1024], got {args.max_message_mb}")
    server = make_server(args.checkpoint, args.device, host=args.host, port=args.port,
                         batch_size=args.batch_size, batch_wait_ms=args.batch_wait_ms,
                         max_message_bytes=int(args.max_message_mb * 2**20))

    def ready(srv: PolicyServer) -> None:
        http_url = srv.url.replace("ws://", "http://")
        print(f"serving {srv.checkpoint['name']} ({srv.checkpoint['hash']}) on {srv.url} "
              f"(health: {http_url}/healthz); Ctrl-C stops", flush=True)

    try:
        server.serve_forever(on_ready=ready)
    except OSError as exc:
        raise UserError(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}") from None
    except KeyboardInterrupt:
        print("stopped", flush=True)
    return 0
