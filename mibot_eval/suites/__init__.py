"""Benchmarks: the suite adapters, the only code that touches a simulator (LIBERO, CALVIN,
SimplerEnv), and chatter.py (the simulators' own output, sent to the run's simulator.log).

base.py holds the adapter protocol and the registry; each adapter converts between its simulator and
the harness's Observation / action types and knows nothing of models, files or scheduling.
May import: config, types, errors, data files, the simulators. Never policy/, results/, serving/ or
run/.
"""
