"""The `mibot-eval` command line: the top-level parser and `main`. Every sub-command lives in its own
file under mibot_eval/commands/ (registered there, in one place); `main` turns a UserError into one
line and exit 2, and an interrupt into "rerun to resume" (exit 130)."""

from __future__ import annotations

import argparse
import os
import sys

from mibot_eval import __version__, exit_codes
from mibot_eval.commands import register_all
from mibot_eval.errors import Interrupted, UserError

EPILOG = """examples:
  mibot-eval run --checkpoint tiny --suites libero_spatial --tasks 0 --episodes 1
  mibot-eval run --checkpoint Xiaomi-Robotics-0-LIBERO          # full official LIBERO protocol
  mibot-eval report results/tiny__libero__sync
  mibot-eval inspect libero_spatial 0 1 --json                  # scene, images, state, seed of one trial
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mibot-eval",
        description="Evaluate Xiaomi-Robotics-0 checkpoints on LIBERO, CALVIN and SimplerEnv with "
        "the official protocols, honest statistics and durable, resumable results.",
        epilog=f"{EPILOG}\n{exit_codes.help_line()}\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mibot-eval {__version__}")
    register_all(parser.add_subparsers(dest="command", metavar="COMMAND"))
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"mibot-eval: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Interrupted) as exc:
        print("mibot-eval: interrupted; finished episodes are saved, rerun to resume",
              file=sys.stderr)
        return exc.exit_code if isinstance(exc, Interrupted) else 130


if __name__ == "__main__":
    sys.exit(main())
