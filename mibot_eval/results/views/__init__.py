"""Numbers -> text and files: what the user reads.

  report.py       a run's report.md / report.csv (and the release comparison section)
  leaderboard.py  the leaderboard's CSVs and markdown; pivot.py the headline pivot; charts.py PNGs
  html.py         the self-contained HTML leaderboard page
  gate.py, plan_gate.py, robustness.py, latency.py  the gate's result, plan-gate's answer, the
                  robustness report, the report's latency section
  tables.py       markdown tables and CSV cells; publish.py: what a finished run writes

May import: config, errors, results/ (the folder modules, numbers.py), results/stats/,
results/measure/. report.py, leaderboard.py and html.py never import one another.
"""
