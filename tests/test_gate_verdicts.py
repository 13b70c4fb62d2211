"""Issue 20 ("An honest gate"): three verdicts with what the run could see, and items 6-10; issue 19
finding 8 (`check --reference NAME`). Runs are built from synthetic records, as in test_gate.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom, binomtest

from mibot_eval import exit_codes
from mibot_eval.cli import main
from mibot_eval.results.measure.gate import check_regression
from mibot_eval.results.measure.gate_rounds import ORDER, encode_units
from mibot_eval.results.measure.release_compare import release_rows
from mibot_eval.results.measure.reported import EXACT_FIGURE, difference_to_reported, release_reference
from mibot_eval.results.measure.suites import rate_estimate
from mibot_eval.results.measure.summary import load_run
from mibot_eval.results.stats import differences
from mibot_eval.results.stats.exact import unpaired_probability, unpaired_region
from mibot_eval.results.stats.paired import Pair, PairCounts
from mibot_eval.results.stats.rates import Rate, wilson_interval
from tests.data.fixtures import libero_run, official, task_records, write_run

LIBERO = ("libero_spatial", "libero_object", "libero_goal", "libero_10")


def _check(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["check", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _outcome_run(results: Path, name: str, outcomes: dict[str, dict[int, list[bool]]],
                 checkpoint: str = "Xiaomi-Robotics-0-LIBERO", manifest: dict | None = None) -> Path:
    """A LIBERO run from per-trial outcomes (suite -> task -> [success of trial 0, 1, ...]) with the
    official protocols and 50 trials per task asked for."""
    records = [task_records(suite, task, int(ok), 1, first_trial=trial)[0]
               for suite, tasks in outcomes.items() for task, trials in tasks.items()
               for trial, ok in enumerate(trials)]
    run = write_run(results, name, checkpoint, {s: official(s) for s in outcomes}, records,
                    selection={"tasks": None, "episodes_per_task": None},
                    expected={s: 500 for s in outcomes})
    if manifest:
        path = run / "manifest.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **manifest}, indent=2))
    return run


def _faithful_pair(seed: int) -> tuple[dict, dict]:
    """A full LIBERO baseline near the release's rates (98.4%) and a rerun whose outcome differs on 6
    of each suite's 500 episodes, 3 each way (a faithful rerun of the same checkpoint)."""
    rng = np.random.default_rng(seed)
    base, cand = {}, {}
    for suite in LIBERO:
        b = np.ones(500, dtype=bool)
        b[rng.choice(500, 8, replace=False)] = False
        c = b.copy()
        c[rng.choice(np.flatnonzero(b), 3, replace=False)] = False
        c[rng.choice(np.flatnonzero(~b), 3, replace=False)] = True
        base[suite] = {t: list(map(bool, b[50 * t:50 * t + 50])) for t in range(10)}
        cand[suite] = {t: list(map(bool, c[50 * t:50 * t + 50])) for t in range(10)}
    return base, cand


# -- done means: the three verdicts and their exit codes ---------------------------------------------
def test_a_large_faithful_rerun_is_not_worse(tmp_path, capsys) -> None:
    base, cand = _faithful_pair(0)
    base_dir, cand_dir = _outcome_run(tmp_path, "base", base), _outcome_run(tmp_path, "cand", cand)
    code, out, _ = _check(capsys, "--candidate", str(cand_dir), "--baseline", str(base_dir))
    assert code == exit_codes.OK == 0, out
    assert "RESULT: NOT WORSE" in out
    result = check_regression(cand_dir, base_dir)
    headline = [c for c in result.checks if c.headline and c.tested]
    assert len(headline) == 5 and all(c.verdict == "not_worse" for c in headline)  # 4 suites + average
    average = next(c for c in headline if c.scope == "aggregate")
    assert average.difference is not None and average.difference.interval == "MOVER (Tango terms)"
    # every tested row carries its interval and detectable drop
    assert all(c.difference.low is not None and c.detectable is not None for c in result.checks if c.tested)


def test_an_underpowered_run_is_inconclusive_with_its_detectable_drop(tmp_path, capsys) -> None:
    base, cand = _faithful_pair(1)
    few = {s: {t: v[:4] for t, v in tasks.items()} for s, tasks in base.items() if s == "libero_spatial"}
    few_cand = {s: {t: v[:4] for t, v in tasks.items()} for s, tasks in cand.items() if s == "libero_spatial"}
    base_dir, cand_dir = _outcome_run(tmp_path, "base", few), _outcome_run(tmp_path, "cand", few_cand)
    code, out, _ = _check(capsys, "--candidate", str(cand_dir), "--baseline", str(base_dir))
    assert code == exit_codes.INCONCLUSIVE == 3, out
    line = next(x for x in out.splitlines() if x.startswith("RESULT: INCONCLUSIVE"))
    assert "libero_spatial success" in line and "margin 3.0, detectable drop" in line and "at n 40" in line


def test_a_clear_regression_is_regressed(tmp_path, capsys) -> None:
    base, cand = _faithful_pair(2)
    for t in range(10):  # the candidate fails the first 15 trials of every libero_goal task
        cand["libero_goal"][t][:15] = [False] * 15
    base_dir, cand_dir = _outcome_run(tmp_path, "base", base), _outcome_run(tmp_path, "cand", cand)
    code, out, _ = _check(capsys, "--candidate", str(cand_dir), "--baseline", str(base_dir))
    assert code == exit_codes.REGRESSED == 1
    assert "RESULT: REGRESSED" in out and "libero_goal success" in out and "libero average" in out


# -- item 6: reported numbers with the release's n --------------------------------------------------
def test_reported_numbers_are_compared_with_the_release_n_or_said_to_be_exact() -> None:
    spatial = rate_estimate("libero_spatial", "success", Rate(480, 500))
    reference = release_reference("Xiaomi-Robotics-0-LIBERO", "libero_spatial", "success", 98.8)
    assert reference is not None and reference.rate == Rate(494, 500)  # the release's logs
    difference, ref = difference_to_reported(spatial, "Xiaomi-Robotics-0-LIBERO", "libero_spatial",
                                             "success", 98.8, margin=3.0)
    assert ref is not None and ref.rate == reference.rate and difference.test == differences.UNPAIRED_EXACT
    # a figure the logs do not hold (here: another checkpoint's name): taken as exact, exact binomial
    assert release_reference("my-finetune", "libero_spatial", "success", 98.8) is None
    difference, ref = difference_to_reported(spatial, "my-finetune", "libero_spatial", "success", 98.8,
                                             margin=3.0)
    assert ref is None and difference.test == differences.FIXED_BINOMIAL
    assert difference.p_regressed == pytest.approx(binomtest(480, 500, 0.958, alternative="less").pvalue)
    assert "taken as exact" in EXACT_FIGURE


def test_the_consistent_column_flags_few_faithful_reproductions() -> None:
    """A faithful rerun of libero_spatial (both runs of 500 at the same true rate) is called
    inconsistent with the reported number at most 5% of the time two-sample (exact enumeration);
    the old check, "reported inside the run's Wilson interval", flagged it 17% of the time."""
    n, p = 500, 0.988
    rates = np.array([p])
    size = sum(float(unpaired_probability(n, n, unpaired_region(n, n, 0.0, 0.025, tail), tail, 0.0,
                                           rates)[0]) for tail in (True, False))
    assert size <= 0.05
    x = np.arange(n + 1)
    weights = binom.pmf(x, n, p)
    likely = x[weights > 1e-12]
    old = 0.0
    for x1 in likely:
        low, high = wilson_interval(int(x1), n)
        outside = (likely / n < low - 1e-9) | (likely / n > high + 1e-9)
        old += weights[x1] * float(weights[likely][outside].sum())
    assert old > 0.15


# -- item 7: the release comparison is Holm-adjusted ------------------------------------------------
def test_release_differs_is_holm_adjusted(tmp_path) -> None:
    counts = [50, 50, 44, 50, 49, 49, 50, 47, 49, 50]  # the release: 50 / 50 on task 2
    run = libero_run(tmp_path, "r", {"libero_spatial": counts})
    row = next(r for r in release_rows(load_run(run)) if r.item.startswith("2 "))
    assert row.p_value is not None and row.p_value < 0.05  # alone it would be flagged
    assert row.p_adjusted is not None and row.p_adjusted >= 0.05 and not row.differs


# -- item 8: partial baselines and old sequential verdicts -------------------------------------------
def test_unmatched_candidate_episodes_are_compared_unpaired(tmp_path, capsys) -> None:
    """Baseline 10 trials per task (a partial run), candidate 50, whose 40 unmatched trials all fail
    on 5 tasks: regressed (paired on the 10 matched pairs alone it passed silently)."""
    base = {"libero_spatial": {t: [True] * 10 for t in range(10)}}
    cand = {"libero_spatial": {t: [True] * 10 + [t >= 5] * 40 for t in range(10)}}
    base_dir, cand_dir = _outcome_run(tmp_path, "base", base), _outcome_run(tmp_path, "cand", cand)
    code, out, _ = _check(capsys, "--candidate", str(cand_dir), "--baseline", str(base_dir))
    assert code == 1
    assert "40 candidate episode(s) without a baseline counterpart: compared unpaired" in out
    assert "400 candidate episode(s) without a baseline counterpart" in out  # the suite row


def _sequential_manifest(base: Path, recorded: int) -> dict:
    """The gate entry a LIBERO run stopped by `run --gate-against` records (its rounds: trial j of
    every task in round j)."""
    units = [f"libero_spatial/{t}/{j}" for t in range(10) for j in range(50)]
    return {"gate": {"decision": "regressed", "verdict": "regressed", "baseline": str(base),
                     "matched_suites": ["libero_spatial"], "order": ORDER, "units": encode_units(units),
                     "alpha": 0.05, "max_drop_pp": 0.0, "planned_episodes": 500, "decided_at": 9,
                     "recorded_episodes": recorded, "stopped_early": True}}


def test_an_old_sequential_verdict_decides_only_while_the_run_is_stopped(tmp_path, capsys) -> None:
    base = {"libero_spatial": {t: [True] * 50 for t in range(10)}}
    base_dir = _outcome_run(tmp_path, "base", base)
    # stopped early after 30 failures (round-robin: trial 0..2 of every task)
    stopped = {"libero_spatial": {t: [False] * 3 for t in range(10)}}
    stopped_dir = _outcome_run(tmp_path, "stopped", stopped, manifest=_sequential_manifest(base_dir, 30))
    code, out, _ = _check(capsys, "--candidate", str(stopped_dir), "--baseline", str(base_dir),
                          "--max-drop", "10")
    assert code == 1 and "sequential paired gate" in out and "stopped early" in out
    # rerun to completion: 30 failures then 470 successes; at a 10 pp margin the fixed-N tests show
    # it not worse, and the manifest's old "regressed" no longer sets the exit code
    done = {"libero_spatial": {t: [False] * 3 + [True] * 47 for t in range(10)}}
    done_dir = _outcome_run(tmp_path, "done", done, manifest=_sequential_manifest(base_dir, 30))
    code, out, _ = _check(capsys, "--candidate", str(done_dir), "--baseline", str(base_dir),
                          "--max-drop", "10")
    assert code == 0 and "RESULT: NOT WORSE" in out
    assert "sequential verdict (regressed after 9 matched episodes) is not used" in out


# -- item 10: WidowX copies that split 3/3 ------------------------------------------------------------
def test_a_unit_whose_copies_split_in_half_counts_as_a_failure(tmp_path, capsys) -> None:
    counts = PairCounts.of([Pair("s", "0", "k", 0.5, 1.0), Pair("s", "0", "j", 0.5, 0.5),
                            Pair("s", "0", "i", 4 / 6, 1.0)])
    assert (counts.base_only, counts.neither, counts.both, counts.split) == (1, 1, 1, 3)
    protocol = official("simpler_widowx")
    base = task_records("simpler_widowx", 0, 24, 24, repeats=6, benchmark="simpler",
                        task_name="put_carrot_on_plate")
    cand = [dict(r) for r in base]
    for r in cand[:3]:  # copies 1-3 of the first unit fail: 3 of 6
        r["success"] = False
    base_dir = write_run(tmp_path, "base", "ckpt", {"simpler_widowx": protocol}, base)
    cand_dir = write_run(tmp_path, "cand", "ckpt", {"simpler_widowx": protocol}, cand)
    result = check_regression(cand_dir, base_dir)
    task = next(c for c in result.checks if c.scope == "task")
    assert "discordant: 1 baseline-only, 0 candidate-only of 24" in task.note
    assert "1 unit(s) whose copies split in half counted as failures" in task.note


# -- issue 19 finding 8: --reference ------------------------------------------------------------------
def test_a_finetune_is_gated_against_a_listed_checkpoints_numbers(tmp_path, capsys) -> None:
    counts = {s: [50] * 10 for s in LIBERO}
    run = libero_run(tmp_path, "ft", counts, checkpoint="my-finetune")
    code, out, err = _check(capsys, "--candidate", str(run), "--baseline", "reported")
    assert code == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert "no reported numbers for checkpoint 'my-finetune'" in line and "--reference NAME" in line
    for args in (("--reference", "Xiaomi-Robotics-0-LIBERO"),
                 ("--baseline", "reported:Xiaomi-Robotics-0-LIBERO")):
        code, out, _ = _check(capsys, "--candidate", str(run), *args)
        assert code == 0, out
        assert "reported numbers of Xiaomi-Robotics-0-LIBERO" in out and "RESULT: NOT WORSE" in out
    code, _, err = _check(capsys, "--candidate", str(run), "--reference", "nope")
    assert code == 2 and "unknown checkpoint 'nope'" in err


def test_margins_come_from_the_suite_yaml_and_max_drop_overrides(tmp_path) -> None:
    run = libero_run(tmp_path, "r", {"libero_spatial": [49] * 10})
    result = check_regression(run, "release")
    assert result.margins == {"libero_spatial": "3 pp (suite YAML gate.max_drop)"}
    assert {c.margin for c in result.checks if c.tested} == {3.0}
    result = check_regression(run, "release", max_drop=5.0)
    assert {c.margin for c in result.checks if c.tested} == {5.0}
    assert math.isclose(result.alpha, 0.05)


# -- the planner, and every table naming its interval method -------------------------------------------
def test_plan_gate_prints_episodes_per_task_and_refuses_bad_input(tmp_path, capsys) -> None:
    run = libero_run(tmp_path, "base", {"libero_spatial": [50] * 4 + [49] * 6})
    assert main(["plan-gate", "--baseline", str(run), "--drop", "5", "--discordance", "0.03"]) == 0
    out = capsys.readouterr().out
    assert "Gate plan against" in out and "(paired)" in out
    assert "| libero_spatial | 3 | 50 | > protocol's 50 (≈ " in out  # a 5 pp drop beyond a 3 pp margin
    assert "| libero_spatial | 0 | 100.0 | 0.030 |" in out
    assert main(["plan-gate", "--baseline", "nope", "--drop", "5"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "neither a run folder nor a checkpoints.yaml entry" in line


def test_leaderboard_and_html_name_the_interval_method(tmp_path) -> None:
    from mibot_eval.results.measure.leaderboard import build_rows
    from mibot_eval.results.measure.pooling import collect
    from mibot_eval.results.views.html import leaderboard_table
    from mibot_eval.results.views.leaderboard import to_markdown

    run = libero_run(tmp_path, "r", {s: [49] * 10 for s in LIBERO})
    rows = build_rows(collect([run]))
    markdown = to_markdown(rows)
    assert "| 95% CI | CI method |" in markdown and "| consistent |" in markdown
    assert "| Clopper-Pearson |" in markdown and "| MOVER (Clopper-Pearson terms) |" in markdown
    html = leaderboard_table(rows)
    assert "<th>CI method</th>" in html and "<th>consistent with reported</th>" in html


def test_the_gate_margin_in_a_suite_yaml_is_validated_and_not_part_of_the_protocol(tmp_path) -> None:
    from mibot_eval.config import load_suite
    from mibot_eval.errors import UserError

    source = Path(load_suite("libero_spatial").source).read_text()
    assert "\ngate:" in source
    with_gate = tmp_path / "with.yaml"
    with_gate.write_text(source)
    ungated = tmp_path / "ungated.yaml"
    ungated.write_text("\n".join(line for line in source.splitlines()
                                 if not line.startswith(("gate:", "  max_drop:"))) + "\n")
    assert load_suite(str(with_gate)).max_drop == 3.0 and load_suite(str(ungated)).max_drop is None
    # the margin is a setting of the gate, not of the protocol: the hash is the same with or without
    assert load_suite(str(ungated)).protocol_hash() == load_suite(str(with_gate)).protocol_hash()
    assert "gate" not in load_suite(str(with_gate)).params
    for bad in ("gate: {max_drop: -1}", "gate: {max_drop: 3, extra: 1}", "gate: {max_drop: true}", "gate: 3"):
        broken = tmp_path / "bad.yaml"
        broken.write_text("\n".join(line for line in source.splitlines()
                                    if not line.startswith(("gate:", "  max_drop:"))) + f"\n{bad}\n")
        with pytest.raises(UserError, match="gate"):
            load_suite(str(broken))
