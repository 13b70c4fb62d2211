"""Throughput and scale: simulator worker processes with batched inference (`--workers`), Ray
clusters (`--backend ray`), and the wire format shared with the policy server (`mibot-eval serve`).

The main (driver) process stays the single writer of the results store; workers run the same
`runner.run_one` (run_episode + ChunkScheduler) as the single-process path, with a Policy that
forwards requests to the main process's batcher or to a policy server.
"""
