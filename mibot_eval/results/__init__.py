"""Recorded results: the durable store (store.py), statistics (stats.py; exact margin tests in exact.py,
intervals in intervals.py, one comparison's difference, interval and tests in differences.py), the run
summary every view reads (summary.py), the release's own outcomes (release_baseline.py,
release_compare.py) and reported numbers against them (reported.py), other models' published figures
(published.py), paired and sequential tests (paired.py, sequential.py and the sequential gate's rounds,
gate_rounds.py), and the views: report.py, leaderboard.py, html.py, gate.py, plan_gate.py,
robustness.py, latency_stats.py; commands.py wires them to the CLI.
May import: config, errors, types, suites' data helpers. report, leaderboard and html import summary
and never one another; nothing here imports the runner or a simulator.
"""
