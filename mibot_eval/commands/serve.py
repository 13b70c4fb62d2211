"""`mibot-eval serve CHECKPOINT`: the policy server (mibot_eval/serving/server.py) from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from mibot_eval.errors import UserError
from mibot_eval.serving.client import read_token
from mibot_eval.serving.server import (
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_MESSAGE_MB,
    DEFAULT_MAX_QUEUED_MB,
    DEFAULT_PORT,
    PolicyServer,
    make_server,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="serve a checkpoint's policy over a WebSocket (msgpack + numpy, batched)",
        description="Serve CHECKPOINT to `mibot-eval run --policy ws://HOST:PORT` clients: requests "
        "from all clients are batched into one forward pass. msgpack-encoded numpy arrays with "
        "validated dtypes and shapes, bounded messages, queues and connections, GET /healthz. "
        "Binds 127.0.0.1 by default; refuses browsers; --token-file requires a shared token.",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="name from checkpoints.yaml, hub id, or local folder (as for run)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--batch-size", type=int, default=1,
                   help="max observations per forward pass (default 1: a client's records do not "
                   "depend on timing; above 1, requests of several clients share a forward, which for "
                   "checkpoints that seed per sample differs from batch 1 in the last bits)")
    p.add_argument("--batch-wait-ms", type=float, default=5.0,
                   help="longest wait for a batch to fill (default 5 ms)")
    p.add_argument("--max-message-mb", type=float, default=DEFAULT_MAX_MESSAGE_MB,
                   help=f"largest accepted message (default {DEFAULT_MAX_MESSAGE_MB:g} MiB)")
    p.add_argument("--max-queued-mb", type=float, default=DEFAULT_MAX_QUEUED_MB,
                   help="bytes of requests queued over all clients before new ones are refused as "
                   f"busy (default {DEFAULT_MAX_QUEUED_MB:g} MiB)")
    p.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS,
                   help=f"concurrent clients (default {DEFAULT_MAX_CONNECTIONS}); more get HTTP 503")
    p.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT_S, metavar="S",
                   help=f"close a client idle for S seconds (default {DEFAULT_IDLE_TIMEOUT_S:g}; 0: never)")
    p.add_argument("--token-file", type=Path, default=None, metavar="FILE",
                   help="require `Authorization: Bearer <token>` (the file's first line) from every "
                   "client; pass the same file to `mibot-eval run --policy ... --token-file`")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="accept browser connections from ORIGIN (default: refuse any Origin header)")
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
    if not args.max_message_mb <= args.max_queued_mb <= 1 << 20:
        raise UserError("--max-queued-mb must be at least --max-message-mb")
    if args.max_connections < 1 or args.idle_timeout < 0:
        raise UserError("--max-connections must be >= 1 and --idle-timeout >= 0")
    server = make_server(args.checkpoint, args.device, host=args.host, port=args.port,
                         batch_size=args.batch_size, batch_wait_ms=args.batch_wait_ms,
                         max_message_bytes=int(args.max_message_mb * 2**20),
                         max_queued_bytes=int(args.max_queued_mb * 2**20),
                         max_connections=args.max_connections,
                         idle_timeout=args.idle_timeout or None,
                         allowed_origins=tuple(args.allow_origin), token=read_token(args.token_file))

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
