"""Policies: the Policy protocol (base.py), the checkpoint through transformers (hf.py), the policy
server's client (remote.py), the official prompt (prompt.py), the release's per-request seed
(seed.py), and finding, fingerprinting and loading a checkpoint (checkpoint.py, load.py).
May import: config, types, errors, parallel.codec (the wire format). Never suites/, results/ or
the runner.
"""
