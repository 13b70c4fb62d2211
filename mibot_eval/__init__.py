"""mibot-eval: the evaluation harness for Xiaomi-Robotics-0 on LIBERO, CALVIN and SimplerEnv.

The house, from the top (each layer imports only the ones below it; tests/test_imports.py fails on
any import cycle):
  cli.py, results/commands.py   argument parsing; each command one call below
  api.py                        `evaluate(...)`: the Python API, which the CLI's `run` uses
  runner.py                     plans a run, resumes it, picks a Backend, writes the manifest
  backend.py, parallel/         Backends: in-process, local worker processes, Ray
  job.py, ledger.py             one episode job (wherever it runs); the single writer of results
  episode.py, execution.py      one episode's loop; the chunk scheduler
  planning.py                   the request and its suites' plans (data)
  suites/, policy/, results/    simulators, models, recorded results
  config.py, types.py, errors.py  typed YAML (data/: suites, checkpoints.yaml), the types at the
                                  seams, the user-facing error

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
