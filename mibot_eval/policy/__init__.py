"""The model side: the Policy protocol (base.py), the checkpoint through transformers (hf.py), the
official prompt (prompt.py), the release's per-request seed (seed.py), finding, fingerprinting and
loading a checkpoint (checkpoint.py, load.py) and what identifies a policy object (identity.py).

May import: config, types, errors, tiny/ (the offline checkpoint). Never suites/, results/, serving/
or run/ (the policy server's client is serving/client.py).
"""
