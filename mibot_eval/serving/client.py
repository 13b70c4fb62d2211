"""A Policy served by `mibot-eval serve` (see mibot_eval.serving.server for the protocol): `--policy ws://...`.

Synchronous client (websockets' threaded client: its background thread answers keepalive pings
while the simulator is busy). It connects lazily, reads the server's hello (checkpoint identity,
robot types, prefix support, message bound), refuses to send a message over the server's bound,
and reconnects once if the connection dropped (requests are idempotent: the model's noise seed is
derived from the request). Nothing received is unpickled: replies are msgpack with validated arrays,
decoded with bounds. A server started with --token-file needs the same token: `token_file` here, or
the file named by $MIBOT_EVAL_TOKEN_FILE (how `run --token-file` reaches worker processes and actors).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from mibot_eval.errors import UserError
from mibot_eval.serving import codec
from mibot_eval.types import PolicyRequest

OPEN_TIMEOUT_S = 30.0
REPLY_TIMEOUT_S = 1800.0  # a slow model on CPU; the server answers pings meanwhile
PING_INTERVAL_S = 20.0
PING_TIMEOUT_S = 120.0
MAX_REPLY_BYTES = 64 * 2**20
TOKEN_FILE_ENV = "MIBOT_EVAL_TOKEN_FILE"


def parse_policy_urls(text: str | None) -> tuple[str, ...]:
    """`--policy` text: comma-separated ws:// (or wss://) URLs; one clear line for a bad one."""
    if not text:
        return ()
    urls = tuple(u.strip() for u in text.split(",") if u.strip())
    for url in urls:
        parsed = urlparse(url)
        if parsed.scheme not in ("ws", "wss") or not parsed.hostname:
            raise UserError(f"--policy must be ws://HOST:PORT (or wss://), got {url!r}")
        try:
            parsed.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise UserError(f"--policy has a bad port: {url!r}") from None
    return urls


def read_token(path: str | Path | None) -> str | None:
    """The shared token in a file (first line, stripped); None without a file."""
    if path is None:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip().splitlines()
    except OSError as exc:
        raise UserError(f"cannot read the token file {path} ({exc.strerror or exc})") from None
    if not token or not token[0].strip():
        raise UserError(f"the token file {path} is empty")
    return token[0].strip()


class RemotePolicyError(RuntimeError):
    """The server replied with an error (the episode becomes an error record)."""


class RemotePolicy:
    def __init__(self, url: str, reply_timeout: float = REPLY_TIMEOUT_S,
                 ping_interval: float | None = PING_INTERVAL_S,
                 ping_timeout: float | None = PING_TIMEOUT_S, token_file: str | Path | None = None) -> None:
        urls = parse_policy_urls(url)
        if len(urls) != 1:
            raise UserError(f"expected one ws://HOST:PORT policy server, got {url!r}")
        self.url = urls[0]
        self.token = read_token(token_file or os.environ.get(TOKEN_FILE_ENV) or None)
        self.reply_timeout = reply_timeout
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self._conn: Any = None
        self._hello: dict[str, Any] | None = None
        self._ids = itertools.count(1)

    # -- connection -------------------------------------------------------------------------------
    def _connect(self) -> Any:
        if self._conn is not None:
            return self._conn
        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        try:
            conn = connect(self.url, open_timeout=OPEN_TIMEOUT_S, compression=None,
                           max_size=MAX_REPLY_BYTES, ping_interval=self.ping_interval,
                           ping_timeout=self.ping_timeout, proxy=None, additional_headers=headers,
                           legacy=True)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 401:
                raise UserError(f"the policy server at {self.url} requires a token: pass the file it was "
                                "started with (`--token-file FILE`)" if not self.token else
                                f"the policy server at {self.url} refused the token") from None
            raise UserError(f"the policy server at {self.url} refused the connection (HTTP {status}: "
                            f"{exc.response.body.decode(errors='replace').strip()[:200]})") from None
        except (OSError, TimeoutError) as exc:
            raise UserError(f"cannot reach the policy server at {self.url} ({exc}); "
                            "start it with `mibot-eval serve CHECKPOINT --host ... --port ...`") from None
        except Exception as exc:  # noqa: BLE001 - handshake refused, not a websocket server, ...
            raise UserError(f"{self.url} is not a mibot-eval policy server ({exc})") from None
        try:
            hello = codec.unpack(conn.recv(timeout=OPEN_TIMEOUT_S), codec.REPLY_LIMITS)
        except Exception as exc:  # noqa: BLE001
            conn.close()
            raise UserError(f"{self.url} did not send a mibot-eval hello ({exc})") from None
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            conn.close()
            raise UserError(f"{self.url} is not a mibot-eval policy server")
        if hello.get("protocol") != codec.PROTOCOL_VERSION:
            conn.close()
            raise UserError(f"{self.url} speaks protocol {hello.get('protocol')}, this client "
                            f"{codec.PROTOCOL_VERSION}: use the same mibot-eval version on both sides")
        self._conn, self._hello = conn, hello
        return conn

    @property
    def hello(self) -> dict[str, Any]:
        """The server's hello (connects once; kept after `close`)."""
        if self._hello is None:
            self._connect()
        assert self._hello is not None
        return self._hello

    def close(self) -> None:
        """Drop the connection (reconnects on the next request)."""
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - closing a dead socket
                pass
        self._conn = None

    def __enter__(self) -> RemotePolicy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- Policy -----------------------------------------------------------------------------------
    @property
    def supports_prefix(self) -> bool:
        return bool(self.hello.get("supports_prefix"))

    def describe(self) -> dict[str, Any]:
        return {"kind": "remote", "url": self.url, "server": self.hello.get("policy")}

    def checkpoint_identity(self) -> dict[str, Any]:
        return dict(self.hello.get("checkpoint") or {})

    def check_robot_type(self, robot_type: str) -> None:
        served = self.hello.get("robot_types") or []
        if served and robot_type not in served:
            raise UserError(f"the policy server at {self.url} has no robot type '{robot_type}' "
                            f"(it has: {', '.join(served)})")

    def infer(self, requests: Sequence[PolicyRequest]) -> list[np.ndarray]:
        if not requests:
            return []
        message_id = next(self._ids)
        payload = codec.pack({"type": "infer", "id": message_id,
                              "requests": [codec.request_to_wire(r) for r in requests]})
        limit = int(self.hello.get("max_message_bytes") or 0)
        if limit and len(payload) > limit:
            raise RemotePolicyError(f"request of {len(payload)} bytes exceeds the server's message "
                                    f"limit of {limit} bytes (serve --max-message-mb)")
        from websockets import ConnectionClosed

        for attempt in (1, 2):
            conn = self._connect()
            try:
                conn.send(payload)
                reply = codec.unpack(conn.recv(timeout=self.reply_timeout), codec.REPLY_LIMITS)
                break
            except ConnectionClosed as exc:
                self.close()
                code = getattr(exc.rcvd, "code", None)
                if code == 1009:
                    raise RemotePolicyError("the policy server refused the request: message too big"
                                            ) from None
                if attempt == 2:
                    raise RemotePolicyError(f"lost the connection to {self.url} ({exc})") from None
            except TimeoutError:
                self.close()
                raise RemotePolicyError(f"no reply from {self.url} within {self.reply_timeout:g} s"
                                        ) from None
        if not isinstance(reply, dict):
            raise RemotePolicyError("malformed reply from the policy server")
        if reply.get("type") == "error":
            raise RemotePolicyError(f"policy server: {reply.get('error')}")
        if reply.get("type") != "result" or reply.get("id") != message_id:
            raise RemotePolicyError("unexpected reply from the policy server")
        return codec.chunks_from_wire(reply.get("chunks"), len(requests))
