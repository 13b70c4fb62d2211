"""Running an evaluation: from a request to durable episode records.

  planning.py    the request, its suites' plans (plain data) and the run folder's name
  runner.py      plans a run, resumes what is recorded, picks the policy and a Backend, writes the
                 manifest (manifest.py)
  backends/      how episode jobs are executed: in this process, local worker processes, Ray
  job.py         one episode job wherever it runs (retry rule, trace hash, video); episode.py runs
                 its loop, scheduler.py the chunk scheduler (sync / async execution), motion.py
                 measures how the robot moved, video.py keeps episode MP4s
  ledger.py      the single writer of a run's records; gating.py its sequential gate's hook
                 (`run --gate-against`); shard.py deterministic shards and `merge`
  interrupts.py  Ctrl-C / SIGTERM become a clean stop at the next step

May import: config, types, errors, suites/, policy/, serving/, results/ (the store, the measures the
manifest and the gate need), tiny/. Nothing below imports it (api.py and commands/ do).
"""
