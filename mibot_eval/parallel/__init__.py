"""Throughput and scale: the `--workers N` backend (local simulator processes, batched inference),
the `--backend ray` backend, and the wire format shared with the policy server (`mibot-eval serve`).

Both backends implement mibot_eval.backend.Backend: the main (driver) process stays the single writer
(the Ledger); workers and actors run the same `job.run_job` as the in-process path, with a Policy
that forwards requests to the main process's batcher or to a policy server.
May import: config, types, errors, job, execution, policy (remote, codec users), serve (Ray replicas),
video, planning's data types. Never the runner.
"""
