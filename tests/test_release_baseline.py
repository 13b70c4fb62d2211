"""The release baseline (mibot_eval/data/release): derived from the release's logs, measured by our stats."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from mibot_eval.config import AggregateRule, load_aggregates, load_suite
from mibot_eval.results.measure.release_baseline import load_release_baseline
from mibot_eval.results.measure.suites import SuiteStats, measure_aggregate, measure_suite
from mibot_eval.results.measure.summary import full_count
from mibot_eval.suites.simpler import SimplerAdapter
from tests.conftest import SHARED

REPO = Path(__file__).resolve().parents[1]
LOGS = SHARED / "reference" / "xiaomi-robotics-0" / "eval_logs"
SHIPPED = REPO / "mibot_eval" / "data" / "release"
FILES = ("libero.json", "calvin.json", "simplerenv.json")
LIBERO = ("libero_spatial", "libero_object", "libero_goal", "libero_10")
CALVIN = ("calvin_abc_d", "calvin_abcd_d")
SIMPLER = {"simpler_google_vm": "fractal", "simpler_google_va": "fractal", "simpler_widowx": "bridge"}
LIST_SIZES = {"fractal": 2856, "bridge": 576}
# The release's reported numbers (README tables; protocols.md), percent; CALVIN avg_len in tasks.
REPORTED: dict[tuple[str, str], float] = {
    ("libero_spatial", "success"): 98.8, ("libero_object", "success"): 100.0,
    ("libero_goal", "success"): 98.8, ("libero_10", "success"): 97.2, ("libero", "average"): 98.7,
    **{("calvin_abcd_d", f"chain_{k}"): v for k, v in enumerate((99.7, 98.0, 96.7, 94.2, 91.8), 1)},
    ("calvin_abcd_d", "avg_len"): 4.80,
    **{("calvin_abc_d", f"chain_{k}"): v for k, v in enumerate((100.0, 98.3, 96.0, 92.6, 88.1), 1)},
    ("calvin_abc_d", "avg_len"): 4.75,
    ("simpler_google_vm", "average"): 85.5, ("simpler_google_va", "average"): 74.7,
    ("simpler_widowx", "average"): 79.2,
}
REPORTED_TASKS = {
    "simpler_google_vm": {"pick_coke_can": 98.7, "move_near": 88.8, "open_drawer": 71.3, "close_drawer": 88.0,
                          "put_in_drawer": 75.0},
    "simpler_google_va": {"pick_coke_can": 88.2, "move_near": 76.8, "open_drawer": 57.7, "close_drawer": 76.7,
                          "put_in_drawer": 66.7},
    "simpler_widowx": {"put_carrot_on_plate": 62.5, "put_eggplant_in_basket": 83.3,
                       "put_spoon_on_towel": 95.8, "stack_green_on_yellow": 75.0},
}


class NoSimulator:
    """Enough of a backend to list SimplerEnv episodes (nothing is built)."""

    asset_dir = None


def rounds_to(value: float | None, reported: float, decimals: int) -> bool:
    """`value` rounds (half up, either way at the boundary) to `reported` at `decimals` places."""
    return value is not None and abs(value - reported) <= 0.5 * 10**-decimals + 1e-9


@pytest.fixture(scope="module")
def derive_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("derive_release_baseline", REPO / "scripts" /
                                                  "derive_release_baseline.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def measured() -> dict[str, SuiteStats]:
    baseline = load_release_baseline()
    chains = {r.suites[0]: r.length for r in load_aggregates() if r.rule == "chain_success"}
    return {s: measure_suite(s, baseline.records(s), chain_length=chains.get(s),
                             full=full_count(load_suite(s).as_dict())) for s in baseline.suites()}


def rules() -> list[AggregateRule]:
    return load_aggregates()


# -- derivation -------------------------------------------------------------------------------------
def test_shipped_files_equal_a_fresh_derivation(derive_script: ModuleType) -> None:
    files = derive_script.derive(LOGS)
    assert sorted(files) == sorted(FILES)
    for name, text in files.items():
        assert (SHIPPED / name).read_text(encoding="utf-8") == text, f"{name} is stale: rerun the script"
    assert derive_script.main(["--check", "--logs", str(LOGS), "--out", str(SHIPPED)]) == 0
    assert derive_script.DEFAULT_LOGS.resolve() == LOGS.resolve()  # the default is ../shared beside the repo


def test_check_reports_a_stale_file(derive_script: ModuleType, tmp_path: Path) -> None:
    for name in FILES:
        shutil.copy(SHIPPED / name, tmp_path / name)
    assert derive_script.main(["--check", "--logs", str(LOGS), "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "libero.json").read_text())
    data["suites"]["libero_goal"]["tasks"]["3"]["successes"] += 1
    (tmp_path / "libero.json").write_text(json.dumps(data))
    assert derive_script.main(["--check", "--logs", str(LOGS), "--out", str(tmp_path)]) == 1


def test_script_runs_from_the_command_line(tmp_path: Path) -> None:
    script = REPO / "scripts" / "derive_release_baseline.py"
    done = subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], capture_output=True,
                          text=True, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    assert all((tmp_path / n).read_bytes() == (SHIPPED / n).read_bytes() for n in FILES)


def tampered_logs(tmp_path: Path, relative: str, old: str, new: str | None) -> Path:
    """A writable copy of the logs with one edit: `old` replaced by `new` once (None: its line dropped)."""
    logs = tmp_path / "eval_logs"
    for source in LOGS.rglob("*"):
        if source.is_file():
            target = logs / source.relative_to(LOGS)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    path = logs / relative
    text = path.read_text()
    assert old in text
    if new is None:
        lines = text.splitlines(keepends=True)
        kept = [line for line in lines if old not in line]
        assert len(kept) == len(lines) - 1
        path.write_text("".join(kept))
    else:
        path.write_text(text.replace(old, new, 1))
    return logs


@pytest.mark.parametrize(("relative", "old", "new", "message"), [
    ("simplerenv/bridge/0_eval.log", " - 8/576,", " - 0/576,", "index 0 logged twice"),
    ("simplerenv/fractal/3_eval.log", " - 3/2856,", " - 11/2856,", "index 11 logged twice"),
    ("simplerenv/fractal/3_eval.log", " - 3/2856,", None, "1 list indices never logged: [3]"),
    ("simplerenv/bridge/5_eval.log", "put_carrot_on_plate - 29/576", "put_spoon_on_table_cloth - 29/576",
     "index 29 is bridge/put_carrot_on_plate"),
    ("simplerenv/fractal/all_results.csv", "visual_matching/move_near,213,", "visual_matching/move_near,212,",
     "213/240"),
    ("libero/libero_goal/merged_results.json", '"success_rate": 0.92', '"success_rate": 0.94',
     "success_rate"),
    ("libero/libero_10/0_eval.log", "Episode 19: Failure", "Episode 19: Success", "running count"),
    ("calvin/calvin_abc/results.json", '"avg_seq_len": 4.75', '"avg_seq_len": 4.76', "avg_seq_len"),
    ("calvin/calvin_abcd/rank_3_eval.log", "finished local seq 7 ", "finished local seq 8 ", "out of order"),
])
def test_inconsistent_logs_are_refused(
    derive_script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    relative: str, old: str, new: str | None, message: str,
) -> None:
    logs = tampered_logs(tmp_path, relative, old, new)
    out = tmp_path / "out"
    assert derive_script.main(["--logs", str(logs), "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


# -- LIBERO -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("suite", LIBERO)
def test_libero_counts_equal_merged_results(suite: str) -> None:
    baseline = load_release_baseline()
    merged = json.loads((LOGS / "libero" / suite / "merged_results.json").read_text())
    for entry in merged["individual_results"]:
        successes, trials = baseline.libero_task(suite, entry["task_id"]) or (None, None)
        assert trials == 50 and successes == round(entry["success_rate"] * 50)
        assert baseline.libero[suite].tasks[entry["task_id"]].instruction == entry["instruction"]
    assert baseline.libero_task(suite, 10) is None and baseline.libero_task("libero_90", 0) is None


@pytest.mark.parametrize("suite", LIBERO)
def test_libero_records_match_the_adapter(suite: str) -> None:
    pytest.importorskip("libero", reason="LIBERO is installed by `make setup`")
    from mibot_eval.suites.libero import LiberoAdapter

    specs = LiberoAdapter(load_suite(suite)).episodes()
    records = load_release_baseline().records(suite)
    assert [r["key"] for r in records] == [s.key for s in specs]
    assert [r["instruction"] for r in records] == [s.instruction for s in specs]  # same task order


# -- CALVIN -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("suite", "folder"),
                         [("calvin_abc_d", "calvin_abc"), ("calvin_abcd_d", "calvin_abcd")])
def test_calvin_counts_equal_results_json(suite: str, folder: str) -> None:
    completed = load_release_baseline().calvin_completed(suite)
    assert completed is not None and len(completed) == 1000
    result = json.loads((LOGS / "calvin" / folder / "results.json").read_text())["null"]
    assert sum(completed) / 1000 == pytest.approx(result["avg_seq_len"], abs=5e-4)
    for k in range(1, 6):
        assert sum(c >= k for c in completed) / 1000 == pytest.approx(result["chain_sr"][str(k)], abs=5e-4)
    first = (LOGS / "calvin" / folder / "rank_0_eval.log").read_text()
    assert f"finished local seq 0 with success={completed[0]} |" in first


@pytest.mark.parametrize("suite", CALVIN)
def test_calvin_records_cannot_pair_with_a_run(suite: str) -> None:
    records = load_release_baseline().records(suite)
    assert len({r["key"] for r in records}) == 1000
    assert all(r["task_id"] is None and r["metrics"]["sequence"] is None for r in records)
    assert not any(r["key"].split("/")[1].isdigit() for r in records)  # never SUITE/<sequence>/0
    assert all(r["success"] == (r["metrics"]["completed"] == 5) for r in records)


# -- SimplerEnv -------------------------------------------------------------------------------------
@pytest.mark.parametrize("dataset", sorted(LIST_SIZES))
def test_every_simpler_index_appears_exactly_once(dataset: str) -> None:
    baseline = load_release_baseline()
    assert sorted(baseline.simpler_lists[dataset].outcomes) == list(range(LIST_SIZES[dataset]))
    indices = Counter(r["metrics"]["reference_index"] for s, d in SIMPLER.items() if d == dataset
                      for r in baseline.records(s))
    assert sorted(indices) == list(range(LIST_SIZES[dataset])) and set(indices.values()) == {1}


@pytest.mark.parametrize("suite", sorted(SIMPLER))
def test_simpler_records_match_the_adapter(suite: str) -> None:
    adapter = SimplerAdapter(load_suite(suite), backend=NoSimulator())
    specs = adapter.episodes()
    records = load_release_baseline().records(suite)
    assert [r["key"] for r in records] == [s.key for s in specs]
    for record, spec in zip(records, specs, strict=True):
        assert record["task_id"] == spec.task_id and record["trial"] == spec.trial
        assert record["task_name"] == spec.task_name
        assert record["metrics"]["reference_index"] == adapter.episode_for(spec).reference_index
        assert record["metrics"]["repeat_of"] == adapter.repeat_of(spec)


@pytest.mark.parametrize("suite", sorted(SIMPLER))
def test_simpler_counts_equal_all_results_csv(suite: str) -> None:
    baseline = load_release_baseline()
    with (LOGS / "simplerenv" / SIMPLER[suite] / "all_results.csv").open(newline="") as stream:
        rows = {r["task_suite_name"]: r for r in csv.DictReader(stream)}
    for task in load_suite(suite).params["tasks"]:
        row = rows[task["source"]]
        expected = (int(row["success_episodes"]), int(row["total_episodes"]))
        assert baseline.simpler_task_counts(suite, task["name"]) == expected
    assert baseline.simpler_task_counts(suite, "no_such_task") is None


def test_simpler_outcome_follows_the_log_line() -> None:
    baseline = load_release_baseline()
    log = (LOGS / "simplerenv" / "fractal" / "0_eval.log").read_text()
    assert "visual_matching/pick_coke_can - 16/2856, success: True," in log
    assert baseline.simpler_outcome("simpler_google_vm", 16) is True
    assert baseline.simpler_outcome("simpler_google_va", 16) is None  # a VM episode
    assert baseline.simpler_outcome("simpler_google_vm", 2856) is None
    assert baseline.simpler_outcome("libero_10", 0) is None


def test_widowx_copies_agree() -> None:
    stats = measure_suite("simpler_widowx", load_release_baseline().records("simpler_widowx"))
    assert [len(t.units) for t in stats.tasks.values()] == [24, 24, 24, 24]
    assert stats.inconsistent_repeats == 0


# -- the reported numbers, through the harness's own statistics --------------------------------------
@pytest.mark.parametrize("rule", rules(), ids=lambda r: f"{r.key}.{r.name}")
def test_reported_aggregates_are_reproduced(rule: AggregateRule, measured: dict[str, SuiteStats]) -> None:
    estimates = measure_aggregate(rule, measured)
    assert estimates
    for estimate in estimates:
        reported = REPORTED[(rule.key, estimate.metric)]
        decimals = 2 if estimate.metric == "avg_len" else 1
        assert rounds_to(estimate.value, reported, decimals), (rule.key, estimate.metric, estimate.value)
        assert not estimate.partial


@pytest.mark.parametrize("suite", LIBERO)
def test_reported_libero_rates_are_reproduced(suite: str, measured: dict[str, SuiteStats]) -> None:
    assert rounds_to(measured[suite].rate.value, REPORTED[(suite, "success")], 1)


@pytest.mark.parametrize("suite", sorted(REPORTED_TASKS))
def test_reported_simpler_task_rates_are_reproduced(suite: str, measured: dict[str, SuiteStats]) -> None:
    by_name = {t.name: t.rate.value for t in measured[suite].tasks.values()}
    for name, reported in REPORTED_TASKS[suite].items():
        assert rounds_to(by_name[name], reported, 1), (suite, name, by_name[name])


# -- the loader ---------------------------------------------------------------------------------------
def test_records_are_fresh_copies() -> None:
    baseline = load_release_baseline()
    first = baseline.records("simpler_google_vm")
    first[0]["metrics"]["reference_index"] = -1
    assert baseline.records("simpler_google_vm")[0]["metrics"]["reference_index"] == 0
    with pytest.raises(Exception, match="no release baseline for suite 'libero_90'"):
        baseline.records("libero_90")


def test_loader_keeps_the_import_graph_one_way() -> None:
    code = ("import sys, mibot_eval.results.measure.release_baseline as m; m.load_release_baseline(); "
            "import json; print(json.dumps(sorted(n for n in sys.modules if n.startswith('mibot_eval.'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout))
    assert not {n for n in loaded if n.startswith("mibot_eval.results.views")}
    assert not loaded & {f"mibot_eval.results.measure.{m}" for m in ("leaderboard", "gate", "gate_rows")}
    source = (REPO / "mibot_eval" / "results" / "measure" / "release_baseline.py").read_text()
    assert "shared" not in source and "parents[" not in source  # package data only, never ../shared
