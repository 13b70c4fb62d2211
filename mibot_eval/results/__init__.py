"""Recorded results, split by job: the run folder on disk, the maths, measuring, and the views.

  store.py, records.py  the durable run folder: episodes.jsonl (one typed EpisodeRecord per line,
                        schema-versioned) and manifest.json, written atomically; lock.py the one
                        writer per folder; resume.py what a rerun may add to a folder
  numbers.py            how a measured number is written in every table
  stats/                the maths: intervals, exact tests, differences, paired and sequential tests,
                        Holm, bootstrap (no records, no files)
  measure/              records -> numbers: a run's summary, pooled runs and leaderboard rows, the
                        release's outcomes and the reported numbers, the gate's rows and verdicts
  views/                numbers -> text and files: the report, the leaderboard's CSVs, pivot, charts
                        and HTML page, the gate's, plan-gate's and robustness' renderings

Layers: stats imports nothing of the package; measure imports stats and the folder modules; views
import measure, stats and the folder modules; views/report.py, leaderboard.py and html.py never
import one another (views/publish.py composes them). May import: config, types, errors and the
suites' data helpers; nothing here imports run/, serving/, policy/ or a simulator.
"""
