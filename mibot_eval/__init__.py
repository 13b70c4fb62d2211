"""mibot-eval: the evaluation harness for Xiaomi-Robotics-0 on LIBERO, CALVIN and SimplerEnv.

The house, from the top (each room imports only rooms below it; tests/test_imports.py holds the table
of which room may import which, and fails on any other import or an import cycle):
  cli.py, commands/     the `mibot-eval` parser; one module per sub-command, registered in one place
  api.py                `evaluate(...)`: the Python API, which the CLI's `run` uses
  run/                  planning, the runner, one episode and its chunk scheduler, the ledger (the one
                        writer), backends/ (in-process, local workers, Ray), shards, the gate's hook
  serving/              the policy server, its client, the wire codec, policy replicas
  results/              the run folder (typed records, store, lock); stats/ (maths), measure/
                        (records -> numbers), views/ (report, leaderboard, charts, HTML)
  suites/, policy/      the simulators' adapters; the model (loading, identity, prompt, seed)
  tiny/                 the offline stand-in checkpoint
  config.py, types.py, errors.py, exit_codes.py   typed YAML (data/: suites, checkpoints.yaml), the
                        types at the seams, the user-facing error, the exit codes

`evaluate` is imported lazily so that `import mibot_eval.config` stays cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "evaluate"]


def __getattr__(name: str) -> Any:
    if name == "evaluate":
        from mibot_eval.api import evaluate

        return evaluate
    raise AttributeError(f"module 'mibot_eval' has no attribute {name!r}")
