"""Records -> numbers: everything measured from episode records, for the views and the gate.

  suites.py            one suite's tasks, rates, coverage and timings; the aggregation rules
  summary.py           a run folder measured (RunSummary), what the reported numbers compare with
  pooling.py           several runs' episodes pooled by (checkpoint, suite, protocol, execution)
  leaderboard.py       the leaderboard's typed rows (LeaderboardRow) and long table
  release_baseline.py  the release's own logged outcomes as records; release_compare.py a run
                       against them task by task; reported.py a number against a reported figure
  published.py         the benchmark headlines and other models' published figures
  pairs.py             matched episodes of two runs; gate_rounds.py the sequential gate's rounds
  gate.py, gate_rows.py  the regression gate's verdicts and rows; plan_gate.py its sizing
  robustness.py        LIBERO-PRO variants against their clean suites
  latency.py           a run's execution and latency facts

May import: config, types, errors, results/ (the folder modules, numbers.py), results/stats/, the
suites' data helpers. Never results/views/.
"""
