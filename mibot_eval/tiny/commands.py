"""`mibot-eval tiny-checkpoint`: write the tiny offline checkpoint (argument parsing only)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tiny-checkpoint", help="write the tiny random-weight offline checkpoint",
                       description="Write a few-MB random-weight checkpoint with the released "
                       "checkpoints' remote-code interface (for offline tests and smoke runs).")
    p.add_argument("directory", type=Path, nargs="?", default=None,
                   help="where to write it (default: the cache used by CHECKPOINT=tiny)")
    p.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    p.set_defaults(handler=_cmd_tiny)


def _cmd_tiny(args: argparse.Namespace) -> int:
    from mibot_eval.tiny import ensure_tiny_checkpoint, write_tiny_checkpoint

    path = write_tiny_checkpoint(args.directory, seed=args.seed) if args.directory else (
        ensure_tiny_checkpoint()
    )
    print(path)
    return 0
