"""`mibot-eval tiny-checkpoint`: write a generated random-weight checkpoint (argument parsing only).

Variants (mibot_eval/tiny/checkpoint.py): the tiny one (default), `--like-release` (as limited as the
released checkpoints: one int seed per forward, no prefix actions), and `--size release` (the release's
4.72B-parameter dimensions with random bf16 weights, about 9.4 GB, for measurements on a GPU machine):

    mibot-eval tiny-checkpoint /scratch/release-size --size release [--like-release]
    mibot-eval run --checkpoint /scratch/release-size --suites libero_spatial --tasks 0 --episodes 1
    mibot-eval latency-sweep --checkpoint /scratch/release-size --suites libero_spatial --max-delay 4

`--size release` is never written implicitly (no default folder) and never belongs in CI;
`--config-only` writes everything but the weights (a few MB) to inspect its config.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """\
release size on a GPU machine (random weights, so success is 0: what it measures is latency, memory
and replica scaling; the folder takes about 9.4 GB of disk, writing it about 4 GB of memory):
  mibot-eval tiny-checkpoint /scratch/release-size --size release
  mibot-eval run --checkpoint /scratch/release-size --suites libero_spatial --tasks 0 --episodes 1
  mibot-eval run --checkpoint /scratch/release-size --workers 8 --batch-size 8 ...   # batched
  mibot-eval serve /scratch/release-size --device cuda:0 --port 8765   # a replica; run --policy
  mibot-eval latency-sweep --checkpoint /scratch/release-size --suites libero_spatial --max-delay 4
add --like-release to serve it as the released checkpoints are served (one request per forward).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tiny-checkpoint", help="write the tiny random-weight offline checkpoint",
                       description="Write a random-weight checkpoint with the released checkpoints'\n"
                       "remote-code interface: a few MB by default (offline tests and smoke runs), or\n"
                       "the release's 4.72B-parameter dimensions (--size release, GPU measurements).",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("directory", type=Path, nargs="?", default=None,
                   help="where to write it (default: the cache used by CHECKPOINT=tiny; required "
                   "with --size release)")
    p.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    p.add_argument("--like-release", action="store_true",
                   help="as limited as the released checkpoints: one int seed per forward (the harness "
                   "then runs batch-1 forwards), no committed prefix actions, a module that bf16 "
                   "loading leaves in fp32; same weights, tokenizer and processor")
    p.add_argument("--size", choices=("tiny", "release"), default="tiny",
                   help="tiny (about 1.3 MB) or release: Qwen3-VL-4B + 16-layer DiT, 4.72B parameters "
                   "in bf16 safetensors shards (about 9.4 GB)")
    p.add_argument("--config-only", action="store_true",
                   help="write config, remote code, tokenizer and processor but no weights")
    p.set_defaults(handler=_cmd_tiny)


def _cmd_tiny(args: argparse.Namespace) -> int:
    from mibot_eval.errors import UserError
    from mibot_eval.tiny import ensure_tiny_checkpoint, write_tiny_checkpoint

    if args.directory is None and (args.size != "tiny" or args.config_only):
        raise UserError("--size release and --config-only need a DIRECTORY to write to")
    if args.directory is None:
        path = ensure_tiny_checkpoint(like_release=args.like_release)
    else:
        if args.size == "release" and not args.config_only:
            print(f"writing 4.72B random parameters to {args.directory} (about 9.4 GB) ...", file=sys.stderr)
        path = write_tiny_checkpoint(args.directory, seed=args.seed, like_release=args.like_release,
                                     size=args.size, weights=not args.config_only)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    shown = f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"
    print(f"{shown} ({size} bytes) in {path}", file=sys.stderr)
    print(path)
    return 0
