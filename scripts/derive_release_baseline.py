#!/usr/bin/env python3
"""Derive the release baseline (mibot_eval/data/release/*.json) from the Xiaomi-Robotics-0 eval logs.

    python scripts/derive_release_baseline.py [--logs PATH] [--out DIR] [--check]

--logs  the release's eval_logs/ folder (default: ../shared/reference/xiaomi-robotics-0/eval_logs
        beside this checkout); --out  where the JSON files go (default: mibot_eval/data/release);
--check derive in memory and compare with the files in --out: exit 1 when they differ.
Exit 2: the logs are inconsistent (a count that disagrees with a summary file, a duplicate or
missing episode index, an unparseable result line); nothing is written then.

What each log can give (see mibot_eval/data/release/README.md): LIBERO per-task success counts
(episodes are numbered in completion order), CALVIN per-sequence completed-subtask counts without
the sequence's identity (completion order), SimplerEnv every episode's outcome by its list index.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from mibot_eval.config import load_checkpoints, load_suite
from mibot_eval.suites.simpler_episodes import load_reference

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LOGS = REPO.parent / "shared" / "reference" / "xiaomi-robotics-0" / "eval_logs"
DEFAULT_OUT = REPO / "mibot_eval" / "data" / "release"
SOURCE = (
    "XiaomiRobotics/Xiaomi-Robotics-0 (github.com/XiaomiRobotics/Xiaomi-Robotics-0) at commit 3c297b2: "
    "the release's published evaluation logs; every 'log' and 'summary' path is relative to its eval_logs/ "
    "folder. Derived by scripts/derive_release_baseline.py."
)
LIBERO_SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10")
CALVIN_SUITES = {"calvin_abc": "calvin_abc_d", "calvin_abcd": "calvin_abcd_d"}  # log folder -> suite
SIMPLER_SUITES = {"simpler_google_vm": "fractal", "simpler_google_va": "fractal", "simpler_widowx": "bridge"}
CALVIN_CHAIN = 5
WIDTH = 110  # the project's line length

LIBERO_EPISODE = re.compile(
    r"^INFO:root:Task_id (\d+): Episode (\d+): (Success|Failure) \| "
    r"Current Success Rate: ([\d.]+)% \((\d+)/(\d+)\)$"
)
LIBERO_FINAL = re.compile(r"^INFO:root:Task (\d+) Success Rate: ([\d.]+)%$")
LIBERO_SUITE = re.compile(r"^INFO:root:Task suite: (\S+)$")
CALVIN_START = re.compile(r"Starting evaluation with rank=(\d+), world_size=(\d+), num_workers=\d+$")
CALVIN_BEGIN = re.compile(r"Rank (\d+): starting evaluation of (\d+) sequences\.$")
CALVIN_END = re.compile(r"Rank (\d+): finished evaluation of (\d+) sequences \(shared_results_len=(\d+)\)\.$")
CALVIN_SEQ = re.compile(
    r"Rank (\d+) finished local seq (\d+) with success=(\d+) \| "
    + r" \| ".join(rf"{k}/5: ([\d.]+)%" for k in range(1, CALVIN_CHAIN + 1))
    + r" \| with avg_len=([\d.]+)$"
)
SIMPLER_DATASET = re.compile(r"^Running dataset: (\S+) with (\d+) workers$")
SIMPLER_EPISODE = re.compile(
    r"^\[Worker (\d+) / (\d+)\] (\S+) - (\d+)/(\d+), success: (True|False), time elapsed: .*$"
)


class DerivationError(Exception):
    """The logs contradict themselves or their summary files."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise DerivationError(message)


def close(a: float, b: float, tolerance: float) -> bool:
    return abs(a - b) <= tolerance + 1e-9


def rel(path: Path, logs: Path) -> str:
    return path.relative_to(logs).as_posix()


def read_lines(path: Path) -> list[str]:
    require(path.is_file(), f"missing log file {path}")
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def numbered(folder: Path, pattern: str, number: Callable[[Path], int]) -> list[Path]:
    """Files matching `pattern`, sorted by their number, which must run 0..n-1."""
    files = sorted(folder.glob(pattern), key=number)
    require(bool(files), f"no {pattern} files in {folder}")
    require([number(f) for f in files] == list(range(len(files))),
            f"{folder}: {pattern} files are not numbered 0..{len(files) - 1}")
    return files


def checkpoint_of(suite: str) -> str:
    """The released checkpoint (checkpoints.yaml) evaluated on a suite."""
    names = [c.name for c in load_checkpoints().values() if suite in c.suites and not c.tiny]
    require(len(names) == 1, f"checkpoints.yaml: expected one released checkpoint for {suite}, got {names}")
    return names[0]


# -- LIBERO -----------------------------------------------------------------------------------------
def libero_log(path: Path, suite: str, task_id: int) -> tuple[int, int]:
    """(successes, episodes) of one task's log, checked line by line against its running counts."""
    successes = episodes = 0
    final: float | None = None
    for line in read_lines(path):
        if (m := LIBERO_SUITE.match(line)) is not None:
            require(m.group(1) == suite, f"{path}: task suite {m.group(1)}, expected {suite}")
        elif (m := LIBERO_EPISODE.match(line)) is not None:
            require(int(m.group(1)) == task_id, f"{path}: a line of task {m.group(1)}: {line}")
            episodes += 1
            successes += m.group(3) == "Success"
            require(int(m.group(2)) == episodes, f"{path}: episode {m.group(2)} out of order: {line}")
            require((int(m.group(5)), int(m.group(6))) == (successes, episodes),
                    f"{path}: running count disagrees with the outcomes so far: {line}")
            require(close(float(m.group(4)), 100 * successes / episodes, 0.005), f"{path}: bad rate: {line}")
        elif (m := LIBERO_FINAL.match(line)) is not None:
            require(int(m.group(1)) == task_id, f"{path}: final line of task {m.group(1)}")
            final = float(m.group(2))
        else:
            require("Task_id" not in line and "Success Rate" not in line, f"{path}: unparsed line: {line}")
    require(episodes > 0 and final is not None, f"{path}: no episodes or no final success rate")
    require(close(final, 100 * successes / episodes, 0.005), f"{path}: final rate {final}% disagrees")
    return successes, episodes


def libero_suite(logs: Path, suite: str) -> dict[str, Any]:
    folder = logs / "libero" / suite
    summary = folder / "merged_results.json"
    merged = json.loads(summary.read_text())
    listed = {int(r["task_id"]): r for r in merged["individual_results"]}
    files = numbered(folder, "*_eval.log", lambda p: int(p.name.split("_")[0]))
    trials = load_suite(suite).episodes_per_task
    require(sorted(listed) == list(range(len(files))), f"{summary}: task ids differ from the log files")
    require(merged["summary"]["total_tasks"] == len(files), f"{summary}: total_tasks != {len(files)}")
    tasks: dict[str, Any] = {}
    for task_id, path in enumerate(files):
        successes, episodes = libero_log(path, suite, task_id)
        require(episodes == trials, f"{path}: {episodes} episodes, the protocol has {trials}")
        require(close(listed[task_id]["success_rate"], successes / episodes, 1e-9),
                f"{summary}: task {task_id} success_rate {listed[task_id]['success_rate']} "
                f"!= {successes}/{episodes} in {path.name}")
        tasks[str(task_id)] = {"instruction": listed[task_id]["instruction"], "log": rel(path, logs),
                               "successes": successes, "trials": episodes}
    total = sum(t["successes"] for t in tasks.values())
    require(close(merged["summary"]["overall_success_rate"], total / (trials * len(files)), 1e-9),
            f"{summary}: overall_success_rate disagrees with {total}/{trials * len(files)}")
    return {"checkpoint": checkpoint_of(suite), "summary": rel(summary, logs), "successes": total,
            "trials": trials * len(files), "trials_per_task": trials, "tasks": tasks}


def derive_libero(logs: Path) -> dict[str, Any]:
    return {"source": SOURCE, "suites": {s: libero_suite(logs, s) for s in LIBERO_SUITES}}


# -- CALVIN -----------------------------------------------------------------------------------------
def chain_rates(counts: Sequence[int]) -> list[float]:
    """Share of sequences with at least k completed subtasks, k = 1..5 (fractions)."""
    return [sum(c >= k for c in counts) / len(counts) for k in range(1, CALVIN_CHAIN + 1)]


def calvin_rank_log(path: Path, rank: int, world: int) -> list[int]:
    """One rank's completed-subtask counts in log (completion) order, checked against its running rates."""
    counts: list[int] = []
    planned = finished = None
    for line in read_lines(path):
        if (m := CALVIN_START.search(line)) is not None:
            require((int(m.group(1)), int(m.group(2))) == (rank, world), f"{path}: {line}")
        elif (m := CALVIN_BEGIN.search(line)) is not None:
            require(int(m.group(1)) == rank, f"{path}: {line}")
            planned = int(m.group(2))
        elif (m := CALVIN_END.search(line)) is not None:
            require(int(m.group(1)) == rank and m.group(2) == m.group(3), f"{path}: {line}")
            finished = int(m.group(2))
        elif (m := CALVIN_SEQ.search(line)) is not None:
            count = int(m.group(3))
            require(int(m.group(1)) == rank and int(m.group(2)) == len(counts),
                    f"{path}: out of order: {line}")
            require(0 <= count <= CALVIN_CHAIN, f"{path}: bad count: {line}")
            counts.append(count)
            logged = [float(m.group(4 + k)) for k in range(CALVIN_CHAIN)]
            require(all(close(a, 100 * b, 0.05) for a, b in zip(logged, chain_rates(counts), strict=True)),
                    f"{path}: running chain rates disagree with the counts so far: {line}")
            require(close(float(m.group(9)), sum(counts) / len(counts), 0.0005),
                    f"{path}: bad avg_len: {line}")
        else:
            require("finished local seq" not in line, f"{path}: unparsed line: {line}")
    require(planned is not None and planned == finished == len(counts),
            f"{path}: planned {planned}, finished {finished}, logged {len(counts)} sequences")
    return counts


def calvin_suite(logs: Path, folder_name: str, suite: str) -> dict[str, Any]:
    folder = logs / "calvin" / folder_name
    files = numbered(folder, "rank_*_eval.log", lambda p: int(p.name.split("_")[1]))
    ranks = [{"completed": calvin_rank_log(path, rank, len(files)), "log": rel(path, logs), "rank": rank}
             for rank, path in enumerate(files)]
    counts = [c for r in ranks for c in r["completed"]]
    require(len(counts) == load_suite(suite).num_tasks, f"{folder}: {len(counts)} sequences logged")
    summary = folder / "results.json"
    results = json.loads(summary.read_text())
    require(list(results) == ["null"], f"{summary}: expected one entry 'null', got {list(results)}")
    result = results["null"]
    require(close(result["avg_seq_len"], sum(counts) / len(counts), 0.0005),
            f"{summary}: avg_seq_len {result['avg_seq_len']} != {sum(counts) / len(counts)}")
    for k, rate in enumerate(chain_rates(counts), start=1):
        require(close(result["chain_sr"][str(k)], rate, 0.0005), f"{summary}: chain_sr {k} disagrees: {rate}")
    histogram = Counter(counts)
    return {"checkpoint": checkpoint_of(suite), "ranks": ranks, "sequences": len(counts),
            "histogram": {str(k): histogram.get(k, 0) for k in range(CALVIN_CHAIN + 1)},
            "summary": rel(summary, logs),
            "summary_values": {"avg_seq_len": result["avg_seq_len"], "chain_sr": result["chain_sr"]}}


def derive_calvin(logs: Path) -> dict[str, Any]:
    return {"source": SOURCE,
            "suites": {suite: calvin_suite(logs, folder, suite) for folder, suite in CALVIN_SUITES.items()}}


# -- SimplerEnv -------------------------------------------------------------------------------------
def simpler_worker_log(path: Path, worker: int, dataset: str, names: Sequence[str]) -> dict[int, bool]:
    """Outcome per list index of one worker's log; each line's task must be that index's task."""
    outcomes: dict[int, bool] = {}
    for line in read_lines(path):
        if (m := SIMPLER_DATASET.match(line)) is not None:
            require(m.group(1) == dataset, f"{path}: {line}")
        elif (m := SIMPLER_EPISODE.match(line)) is not None:
            index, total = int(m.group(4)), int(m.group(5))
            require(int(m.group(1)) == worker, f"{path}: a line of worker {m.group(1)}: {line}")
            require(total == len(names) and 0 <= index < total, f"{path}: bad index or list size: {line}")
            require(m.group(3) == names[index],
                    f"{path}: index {index} is {names[index]} in the list: {line}")
            require(index not in outcomes, f"{path}: index {index} logged twice")
            outcomes[index] = m.group(6) == "True"
        else:
            require("success:" not in line, f"{path}: unparsed line: {line}")
    return outcomes


def simpler_outcomes(logs: Path, dataset: str, names: Sequence[str]) -> dict[int, bool]:
    folder = logs / "simplerenv" / dataset
    files = numbered(folder, "*_eval.log", lambda p: int(p.name.split("_")[0]))
    outcomes: dict[int, bool] = {}
    for worker, path in enumerate(files):
        part = simpler_worker_log(path, worker, dataset, names)
        twice = sorted(set(part) & set(outcomes))
        require(not twice, f"{folder}: indices logged by more than one worker: {twice[:10]}")
        outcomes.update(part)
    missing = sorted(set(range(len(names))) - set(outcomes))
    require(not missing, f"{folder}: {len(missing)} list indices never logged: {missing[:10]}")
    return outcomes


def check_simpler_summary(path: Path, dataset: str, tasks: dict[str, dict[str, Any]]) -> None:
    with path.open(newline="") as stream:
        rows = [r for r in csv.DictReader(stream) if r["dataset_name"] == dataset]
    found = {r["task_suite_name"]: r for r in rows}
    require(len(found) == len(rows) and set(found) == set(tasks),
            f"{path}: task_suite_names differ from the logs")
    for name, row in found.items():
        mine = (tasks[name]["successes"], tasks[name]["episodes"])
        require((int(row["success_episodes"]), int(row["total_episodes"])) == mine,
                f"{path}: {name} {row['success_episodes']}/{row['total_episodes']} != {mine[0]}/{mine[1]}")
        require(close(float(row["success_rate"]), mine[0] / mine[1], 1e-9), f"{path}: {name} success_rate")


def check_simpler_suites(dataset: str, names: Sequence[str]) -> None:
    """Every task_suite_name of the list is exactly one task of exactly one harness suite."""
    owners: Counter[str] = Counter()
    for suite, listed in SIMPLER_SUITES.items():
        if listed != dataset:
            continue
        protocol = load_suite(suite)
        require(protocol.params.get("episode_list") == dataset, f"{suite}: episode_list is not {dataset}")
        for task in protocol.params["tasks"]:
            owners[task["source"]] += 1
            require(int(task["episodes"]) == names.count(task["source"]),
                    f"{suite}: task {task['name']} lists {task['episodes']} episodes")
    require(set(owners) == set(names) and set(owners.values()) == {1},
            f"{dataset}: task_suite_names {sorted(set(names))} vs suite sources {dict(owners)}")


def simpler_list(logs: Path, dataset: str) -> dict[str, Any]:
    names = [str(e["task_suite_name"]) for e in load_reference(dataset)]
    check_simpler_suites(dataset, names)
    outcomes = simpler_outcomes(logs, dataset, names)
    tasks: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(names):
        task = tasks.setdefault(name, {"episodes": 0, "failed": [], "succeeded": [], "successes": 0})
        task["episodes"] += 1
        task["successes"] += outcomes[index]
        task["succeeded" if outcomes[index] else "failed"].append(index)
    summary = logs / "simplerenv" / dataset / "all_results.csv"
    check_simpler_summary(summary, dataset, tasks)
    return {"episodes": len(names), "log": f"simplerenv/{dataset}/<worker>_eval.log",
            "summary": rel(summary, logs), "task_suites": tasks}


def derive_simplerenv(logs: Path) -> dict[str, Any]:
    lists = {dataset: simpler_list(logs, dataset) for dataset in sorted(set(SIMPLER_SUITES.values()))}
    suites = {s: {"checkpoint": checkpoint_of(s), "list": d} for s, d in SIMPLER_SUITES.items()}
    return {"lists": lists, "source": SOURCE, "suites": suites}


# -- output -----------------------------------------------------------------------------------------
def _scalar(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _wrap(items: Sequence[str], pad: str) -> str:
    lines, line = [], ""
    for item in items:
        if line and len(pad) + len(line) + len(item) + 5 > WIDTH:  # pad, indent, ", ", trailing ","
            lines.append(line + ",")
            line = ""
        line = f"{line}, {item}" if line else item
    lines.append(line)
    return "[\n" + "\n".join(pad + "  " + text for text in lines) + "\n" + pad + "]"


def render(value: Any, pad: str = "") -> str:
    """Indented JSON, keys sorted; lists and short mappings of scalars on one line (lists wrapped)."""
    if isinstance(value, dict) and value and not any(isinstance(v, (dict, list)) for v in value.values()):
        flat = "{" + ", ".join(f"{_scalar(str(k))}: {_scalar(value[k])}" for k in sorted(value)) + "}"
        if len(pad) + len(flat) < WIDTH - 30:
            return flat
    if isinstance(value, dict) and value:
        items = [f'{pad}  {_scalar(str(k))}: {render(value[k], pad + "  ")}' for k in sorted(value)]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(pad + "  " + render(v, pad + "  ") for v in value) + "\n" + pad + "]"
    if isinstance(value, list):
        flat = "[" + ", ".join(_scalar(v) for v in value) + "]"
        return flat if len(pad) + len(flat) < WIDTH - 30 else _wrap([_scalar(v) for v in value], pad)
    return _scalar(value)


def derive(logs: Path) -> dict[str, str]:
    """File name -> text of every derived file."""
    data = {"libero.json": derive_libero(logs), "calvin.json": derive_calvin(logs),
            "simplerenv.json": derive_simplerenv(logs)}
    return {name: render(value) + "\n" for name, value in data.items()}


def differing(files: dict[str, str], out: Path) -> list[str]:
    return [name for name, text in files.items()
            if not (out / name).is_file() or (out / name).read_text(encoding="utf-8") != text]


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=Path, default=DEFAULT_LOGS, help="the release's eval_logs/ folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of the derived JSON files")
    parser.add_argument("--check", action="store_true", help="exit 1 if the files in --out differ")
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        files = derive(args.logs.resolve())
    except (DerivationError, OSError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        stale = differing(files, args.out)
        for name in stale:
            print(f"{args.out / name} differs from a fresh derivation", file=sys.stderr)
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text, encoding="utf-8")
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
