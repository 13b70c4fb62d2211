"""The regression gate: regressed on a real regression (naming it, exit 1), inconclusive when the run
cannot tell (exit 3), not worse when it shows so (exit 0); refuses incomparable protocols (exit 2),
compares with the reported numbers and the release's logs."""

from __future__ import annotations

import pytest

from mibot_eval.cli import main
from mibot_eval.results.measure.gate import check_regression
from tests.data.fixtures import libero_run, official, synthetic, task_records, write_run

TEN = [20] * 10


def _check(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["check", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_gate_fails_and_names_the_regressed_task(tmp_path, capsys) -> None:
    base = libero_run(tmp_path, "base", {"libero_spatial": TEN}, episodes=20)
    worse = TEN.copy()
    worse[3] = 5
    cand = libero_run(tmp_path, "cand", {"libero_spatial": worse}, episodes=20)
    code, out, _ = _check(capsys, "--candidate", str(cand), "--baseline", str(base))
    assert code == 1
    assert ("RESULT: REGRESSED, 2 row(s) worse by more than their margin: libero_spatial task 3 (task_3) "
            "(-75.0 pp, 95% CI [-88.8, -46.8]); libero_spatial success (-7.5 pp, 95% CI [-12.0, -4.6])"
            ) in out
    regressed = [line for line in out.splitlines() if line.startswith("| REGRESSED")]
    assert len(regressed) == 2
    assert ("| libero_spatial | 3 (task_3) | 25.0 | 100.0 | -75.0 | [-88.8, -46.8] | Tango score | 3.0 |"
            in regressed[1])
    assert ("| libero_spatial | success | 92.5 | 100.0 | -7.5 | [-12.0, -4.6] | Tango score | 3.0 |"
            in regressed[0])
    assert "Margins: libero_spatial: 3 pp (suite YAML gate.max_drop)." in out
    # the same drop is tolerated with a large enough --max-drop: the suite is shown within 80 pp
    code, out, _ = _check(capsys, "--candidate", str(cand), "--baseline", str(base), "--max-drop", "80")
    assert code == 0 and "RESULT: NOT WORSE" in out


def test_gate_on_noise_with_few_episodes_is_inconclusive(tmp_path, capsys) -> None:
    """20 episodes per task cannot show a 3 pp margin: the gate says so (exit 3) with the drop the
    run could have detected, instead of passing."""
    before = [19, 18, 20, 20, 19, 18, 20, 19, 20, 19]
    base = libero_run(tmp_path, "base", {"libero_spatial": before, "libero_goal": TEN}, episodes=20)
    noisy = {"libero_spatial": [20, 17, 19, 20, 18, 18, 20, 18, 20, 20], "libero_goal": TEN}
    cand = libero_run(tmp_path, "cand", noisy, episodes=20)
    code, out, _ = _check(capsys, "--candidate", str(cand), "--baseline", str(base))
    assert code == 3 and "RESULT: INCONCLUSIVE" in out
    assert ("libero_spatial success (-1.0 pp, 95% CI [-4.2, 1.8], margin 3.0, detectable drop 9.5 at n 200)"
            in out)
    assert "Holm-adjusted over the 22 tested rows" in out  # 20 tasks + 2 suites
    assert "| not worse | libero_goal | success | 100.0 | 100.0 | 0.0 |" in out
    result = check_regression(cand, base, correction="none")
    suite = next(c for c in result.checks if c.suite == "libero_spatial" and c.scope == "suite")
    assert suite.candidate == pytest.approx(95.0) and suite.baseline == pytest.approx(96.0)
    assert suite.n_candidate == 200 and suite.p_value > 0.05 and not suite.regressed


@pytest.mark.parametrize("change, message", [
    ({"max_steps": 100}, "max_steps 100 vs 220"),
    ({"episodes": 10}, "episodes per task 10 vs 20"),
])
def test_gate_refuses_a_protocol_mismatch(tmp_path, capsys, change, message) -> None:
    base = libero_run(tmp_path, "base", {"libero_spatial": TEN}, episodes=20)
    episodes = change.pop("episodes", 20)
    cand = libero_run(tmp_path, "cand", {"libero_spatial": [min(k, episodes) for k in TEN]},
                      episodes=episodes, **change)
    code, out, err = _check(capsys, "--candidate", str(cand), "--baseline", str(base))
    assert code == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("mibot-eval: error: protocol mismatch") and message in line


def test_gate_refuses_another_execution_mode(tmp_path, capsys) -> None:
    protocol = synthetic("simpler_widowx", "simpler", 4, 24, 60)
    records = task_records("simpler_widowx", 0, 10, 24, benchmark="simpler")
    base = write_run(tmp_path, "base", "ckpt", {"simpler_widowx": protocol}, records)
    cand = write_run(tmp_path, "cand", "ckpt", {"simpler_widowx": protocol}, records,
                     execution={"mode": "async", "replan_steps": 4, "delay_steps": 2})
    code, _, err = _check(capsys, "--candidate", str(cand), "--baseline", str(base))
    assert code == 2 and "execution async,delay_steps=2,replan_steps=4 vs sync,replan_steps=10" in err


FULL = {"libero_spatial": [50] * 4 + [49] * 6, "libero_object": [50] * 10,
        "libero_goal": [50] * 4 + [49] * 6, "libero_10": [50] * 2 + [49] * 2 + [48] * 6}


def test_gate_against_reported_numbers(tmp_path, capsys) -> None:
    good = libero_run(tmp_path, "good", FULL)
    code, out, _ = _check(capsys, "--candidate", str(good), "--baseline", "reported")
    assert code == 0 and "reported numbers of Xiaomi-Robotics-0-LIBERO" in out
    assert "| not worse | libero | average | 98.7 | 98.7 | 0.0 | [-0.8, 0.8] | MOVER" in out
    bad = libero_run(tmp_path, "bad", {**FULL, "libero_spatial": [40] * 10})
    code, out, _ = _check(capsys, "--candidate", str(bad), "--baseline", "reported")
    assert code == 1
    # two-sample: 400 / 500 against the release's 494 / 500 (its n), not against 98.8 as exact
    assert ("| REGRESSED | libero_spatial | success | 80.0 | 98.8 | -18.8 | [-22.7, -15.1] | MOVER "
            "(Clopper-Pearson terms) | 3.0 | 7.3 | 500 | 500 |") in out
    assert "two-sample against the release's logged episodes" in out
    assert ("RESULT: REGRESSED, 2 row(s) worse by more than their margin: libero_spatial success (-18.8 pp, "
            "95% CI [-22.7, -15.1]); libero average (-4.7 pp, 95% CI [-5.9, -3.5])") in out


def test_gate_against_reported_refuses_a_non_official_protocol(tmp_path, capsys) -> None:
    short = libero_run(tmp_path, "short", {"libero_spatial": [5] * 10}, episodes=5, max_steps=25)
    code, _, err = _check(capsys, "--candidate", str(short), "--baseline", "reported")
    assert code == 2 and "is not the official" in err and "max_steps 25 vs 220" in err


def test_widowx_repeats_are_not_144_trials(tmp_path, capsys) -> None:
    """12/24 unique carrot episodes (x6 repeats) vs the reported 62.5% (the release's 15/24): not
    significant with 24 independent trials (it would be with 144)."""
    names = ["put_carrot_on_plate", "put_eggplant_in_basket", "put_spoon_on_towel",
             "stack_green_on_yellow"]
    records = [r for i, (name, k) in enumerate(zip(names, (12, 20, 23, 18), strict=True))
               for r in task_records("simpler_widowx", i, k, 24, task_name=name, repeats=6,
                                     benchmark="simpler")]
    run = write_run(tmp_path, "widowx", "Xiaomi-Robotics-0-SimplerEnv-WidowX",
                    {"simpler_widowx": official("simpler_widowx")}, records)
    code, out, _ = _check(capsys, "--candidate", str(run), "--baseline", "reported")
    assert code == 0, out
    assert ("| inconclusive | simpler_widowx | put_carrot_on_plate | 50.0 | 62.5 | -12.5 | [-40.5, 17.8] | "
            "MOVER (Clopper-Pearson terms) | 15.0 | 54.9 | 24 | 24 |") in out


RELEASE_SPATIAL = [50, 50, 50, 50, 49, 49, 50, 47, 49, 50]  # the release's logs, per task of 50


def test_gate_against_the_release_logs_passes_on_the_release_counts(tmp_path, capsys) -> None:
    cand = libero_run(tmp_path, "same", {"libero_spatial": RELEASE_SPATIAL})
    code, out, _ = _check(capsys, "--candidate", str(cand), "--baseline", "release")
    assert code == 0 and "RESULT: NOT WORSE" in out
    assert "the release's logged outcomes" in out
    assert ("| libero_spatial | 7 (task_7) | 94.0 | 94.0 | 0.0 | [-11.6, 11.6] | MOVER (Clopper-Pearson "
            "terms) |") in out
    assert "| not worse | libero_spatial | success | 98.8 | 98.8 | 0.0 |" in out


def test_gate_against_the_release_logs_names_the_task_that_dropped(tmp_path, capsys) -> None:
    worse = RELEASE_SPATIAL.copy()
    worse[2] = 30  # the release: 50 / 50
    cand = libero_run(tmp_path, "worse", {"libero_spatial": worse})
    code, out, _ = _check(capsys, "--candidate", str(cand), "--baseline", "release")
    assert code == 1 and "libero_spatial task 2 (task_2) (-40.0 pp, 95% CI [-54.8, -24.7])" in out
    # a candidate on another protocol is refused: the release ran the official one
    other = libero_run(tmp_path, "other", {"libero_spatial": RELEASE_SPATIAL}, max_steps=100)
    code, _, err = _check(capsys, "--candidate", str(other), "--baseline", "release")
    assert code == 2 and "not the official" in err
