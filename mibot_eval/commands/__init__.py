"""The CLI's sub-commands: one module per `mibot-eval COMMAND` (its arguments and a thin handler that
calls into the packages below), all registered here, in `SUBCOMMANDS` order (the order of
`mibot-eval --help`). Handlers return an exit code (mibot_eval/exit_codes.py) and raise UserError
for bad input (printed by cli.py as one line, exit 2). arg_types.py: argparse value types they share.

Heavy imports (simulators, torch, pandas) happen inside the handlers, so `mibot-eval --help` stays
fast. May import every package of mibot_eval (api, run, results, serving, policy, suites, tiny,
config); nothing imports commands/ but cli.py.
"""

from __future__ import annotations

import argparse

from mibot_eval.commands import (
    check,
    inspect_episode,
    latency_sweep,
    leaderboard,
    listing,
    merge,
    plan_gate,
    report,
    robustness,
    run,
    serve,
    tiny_checkpoint,
)

SUBCOMMANDS = (run, listing, tiny_checkpoint, latency_sweep, report, leaderboard, check, plan_gate,
               robustness, serve, merge, inspect_episode)


def register_all(subparsers: argparse._SubParsersAction) -> None:
    """Add every sub-command to the `mibot-eval` parser."""
    for command in SUBCOMMANDS:
        command.register(subparsers)
