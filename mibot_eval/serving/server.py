"""`mibot-eval serve CHECKPOINT`: the policy over a WebSocket, msgpack + numpy, batched across clients.

Protocol (version 1; every frame is binary msgpack, arrays as in mibot_eval.serving.codec):
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

One client can make only its own requests fail:
  * at the door every request is checked against what the model accepts (the served policy's
    `validate_request`: state width, finite after the cast to the model dtype, image sides and aspect,
    no special tokens in instruction or view labels, prefix shape), and the msgpack decoder is bounded
    (array/map/string lengths, nesting) so a message cannot make the server build huge objects;
  * a batch that raises is retried message by message, so only the bad one gets the error; a reply
    never carries non-finite actions;
  * memory is bounded per connection (the WebSocket queue holds one frame) and globally (bytes of
    queued requests, number of connections): over the bound a request gets a "busy" error and a new
    connection an HTTP 503; queued requests of a connection that closed are dropped;
  * connections idle for --idle-timeout seconds are closed (clients reconnect on their next request).
Access: bind loopback (default). Browsers are refused (any `Origin` header, unless --allow-origin);
`--token-file` requires `Authorization: Bearer <token>` (compared in constant time) on every
connection and on /healthz; `mibot-eval run --policy ws://... --token-file F` sends it. The hello
names the checkpoint and its hash, never a path on the server.

Batching: requests from all connections queue here; a batch goes to the policy when it holds
--batch-size observations, when every connected client is waiting for a reply, or when its oldest
request has waited --batch-wait-ms. Inference runs in a worker thread, so pings, health checks and
new connections are served during a long forward pass. Keepalive pings every 20 s with a generous
pong timeout: a client busy building its simulator (seconds of MuJoCo start-up) stays connected.
Nothing here unpickles or evaluates anything a client sends.

Size (just over 400 lines): the wire protocol above and the one class that enforces it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import http
import json
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

from mibot_eval.serving import codec

DEFAULT_PORT = 8765
DEFAULT_MAX_MESSAGE_MB = 16.0
PING_INTERVAL_S = 20.0
PING_TIMEOUT_S = 120.0
MAX_REQUESTS_PER_MESSAGE = 64
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_MAX_QUEUED_MB = 256.0
DEFAULT_IDLE_TIMEOUT_S = 900.0
HELLO_CHECKPOINT_KEYS = ("name", "hash", "source", "revision")  # never a path on the server


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
                 ping_timeout: float | None = PING_TIMEOUT_S,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 max_queued_bytes: int = int(DEFAULT_MAX_QUEUED_MB * 2**20),
                 idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT_S,
                 allowed_origins: tuple[str, ...] = (), token: str | None = None) -> None:
        self.policy = policy
        self.checkpoint = {k: checkpoint.get(k) for k in HELLO_CHECKPOINT_KEYS if k in checkpoint}
        self.host, self.port = host, port
        self.max_connections, self.max_queued_bytes = max_connections, max_queued_bytes
        self.idle_timeout, self.allowed_origins, self.token = idle_timeout, allowed_origins, token
        self.queued_bytes = 0
        self.batch_size, self.batch_wait_s = batch_size, batch_wait_ms / 1000.0
        self.max_message_bytes = max_message_bytes
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.robot_types = sorted(getattr(policy, "robot_types", None) or [])
        self.stats = {"connections": 0, "clients": 0, "requests": 0, "batches": 0, "errors": 0,
                      "max_batch": 0, "refused_busy": 0, "dropped": 0, "idle_closed": 0}
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
        message = codec.unpack(data, codec.REQUEST_LIMITS)
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
            validate = getattr(self.policy, "validate_request", None)
            for index, request in enumerate(requests):
                if self.robot_types and request.robot_type not in self.robot_types:
                    raise codec.WireError(f"unknown robot_type {request.robot_type!r} "
                                          f"(served: {', '.join(self.robot_types)})")
                if validate is not None:
                    try:
                        validate(request)
                    except ValueError as exc:
                        raise codec.WireError(f"request {index}: {exc}") from None
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
            while True:
                try:
                    data = await asyncio.wait_for(connection.recv(), timeout=self.idle_timeout)
                except asyncio.TimeoutError:
                    self.stats["idle_closed"] += 1
                    await connection.close(code=1000, reason="idle timeout")
                    break
                size = len(data)
                try:
                    message_id, requests = self._parse(data)
                    if self.queued_bytes + size > self.max_queued_bytes:
                        self.stats["refused_busy"] += 1
                        raise codec.WireError(
                            f"server busy: {self.queued_bytes} bytes of requests queued (limit "
                            f"{self.max_queued_bytes}); retry later")
                except codec.WireError as exc:
                    self.stats["errors"] += 1
                    await connection.send(codec.pack({
                        "type": "error", "id": getattr(exc, "message_id", None), "error": str(exc),
                    }))
                    continue
                del data
                self.queued_bytes += size
                try:
                    reply = await self._submit(connection, message_id, requests)
                finally:
                    self.queued_bytes -= size
                if reply is None:  # the client left while its request waited: nothing to answer
                    break
                await connection.send(codec.pack(reply))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.stats["clients"] -= 1
            self._waiting.discard(connection)
            self._drop(connection)
            self._poke()

    def _drop(self, connection: Any) -> None:
        """Queued (not yet inferred) requests of a connection that closed: nobody waits for them."""
        mine = [job for job in self._queue if job.connection is connection]
        if mine:
            self._queue = [job for job in self._queue if job.connection is not connection]
            self.stats["dropped"] += sum(len(job.requests) for job in mine)
            for job in mine:
                if not job.future.done():
                    job.future.cancel()

    async def _submit(self, connection: Any, message_id: Any, requests: list[Any]
                      ) -> dict[str, Any] | None:
        """The reply to one message; None when the connection closed first (its queued work is
        dropped, so other clients do not wait for it)."""
        assert self._loop is not None
        future = self._loop.create_future()
        self._queue.append(_Job(connection, message_id, requests, time.monotonic(), future))
        self._waiting.add(connection)
        self._poke()
        closed = asyncio.ensure_future(connection.wait_closed())
        try:
            await asyncio.wait({future, closed}, return_when=asyncio.FIRST_COMPLETED)
            if future.done() and not future.cancelled():
                return future.result()
            self._drop(connection)
            return None
        finally:
            closed.cancel()
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
                replies = self._split(batch, chunks)
            except Exception:  # noqa: BLE001 - isolate: retry message by message, only the bad fails
                replies = [await self._infer_alone(job) for job in batch]
            for job, reply in zip(batch, replies, strict=True):
                if job.future.cancelled():
                    continue
                if reply["type"] == "error":
                    self.stats["errors"] += 1
                if not job.future.done():
                    job.future.set_result(reply)
            self.stats["batches"] += 1
            self.stats["requests"] += len(flat)
            self.stats["max_batch"] = max(self.stats["max_batch"], len(flat))

    def _split(self, batch: list[_Job], chunks: list[Any]) -> list[dict[str, Any]]:
        """One reply per job: its chunks, or an error if any of them is not finite."""
        replies, start = [], 0
        for job in batch:
            part = chunks[start:start + len(job.requests)]
            start += len(job.requests)
            if not all(np.all(np.isfinite(np.asarray(c, dtype=np.float64))) for c in part):
                replies.append({"type": "error", "id": job.message_id,
                                "error": "inference failed: the model returned non-finite actions"})
            else:
                replies.append({"type": "result", "id": job.message_id,
                                "chunks": codec.chunks_to_wire(part)})
        return replies

    async def _infer_alone(self, job: _Job) -> dict[str, Any]:
        assert self._loop is not None
        try:
            chunks = await self._loop.run_in_executor(self._executor, self.policy.infer, job.requests)
            return self._split([job], chunks)[0]
        except Exception as exc:  # noqa: BLE001 - this message's own failure
            detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
            return {"type": "error", "id": job.message_id, "error": f"inference failed: {detail}"}

    def _process_request(self, connection: Any, request: Any) -> Any:
        """HTTP before the WebSocket handshake: method, token, connection bound, /healthz."""
        if request.method != "GET":
            return self._plain(connection, http.HTTPStatus.METHOD_NOT_ALLOWED, "only GET\n")
        if self.token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                return self._plain(connection, http.HTTPStatus.UNAUTHORIZED, "token required\n")
        if request.path.split("?")[0].rstrip("/") in ("/healthz", "/health"):
            return self._health(connection)
        if self.stats["clients"] >= self.max_connections:
            return self._plain(connection, http.HTTPStatus.SERVICE_UNAVAILABLE,
                               f"too many connections (limit {self.max_connections})\n")
        return None

    @staticmethod
    def _plain(connection: Any, status: http.HTTPStatus, body: str, content_type: str = "text/plain"
               ) -> Any:
        response = connection.respond(status, body)
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = content_type
        return response

    def _health(self, connection: Any) -> Any:
        body = json.dumps({
            "status": "ok", "checkpoint": self.checkpoint.get("name"),
            "checkpoint_hash": self.checkpoint.get("hash"), "protocol": codec.PROTOCOL_VERSION,
            **self.stats,
            "mean_batch": round(self.stats["requests"] / self.stats["batches"], 3)
            if self.stats["batches"] else None,
        })
        return self._plain(connection, http.HTTPStatus.OK, body + "\n", "application/json")

    # -- lifecycle --------------------------------------------------------------------------------
    async def _start(self) -> None:
        from websockets.asyncio.server import serve

        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._stopped = asyncio.Event()
        self._server = await serve(
            self._handler, self.host, self.port, process_request=self._process_request,
            max_size=self.max_message_bytes, compression=None, ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout, max_queue=1, origins=[None, *self.allowed_origins],
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
    return PolicyServer(policy, identity.as_manifest(), **options)
