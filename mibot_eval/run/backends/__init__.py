"""Backends: how a run's episode jobs get executed (base.py: the Backend protocol).

  inprocess.py   this process, one episode after another (the default on a small machine)
  local.py       `--workers N` simulator processes (worker.py), batched inference in this process
  ray.py         `--backend ray`: simulator actors across a Ray cluster, policy server replicas
  dispatch.py    what the local and Ray backends share: who runs what, retries, videos, recording
  work_queue.py  which simulator runs which episodes (trial ranges; shards' partition)
  options.py     the throughput options, checked once; sizing.py: `--workers auto`

Every backend runs each job through run/job.py and hands each finished episode to the Ledger (the
main process stays the single writer); workers and actors reach the policy through the main
process's batcher or a policy server (serving/). May import: config, types, errors, run/ (planning's
data, job, scheduler, ledger, video, interrupts), suites/ (the adapter registry), policy/, serving/,
results/ (the store). Never the runner.
"""
