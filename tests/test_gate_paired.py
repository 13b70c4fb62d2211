"""The paired regression gate: known answers and calibration (sequential gate: test_gate_sequential.py)."""

from __future__ import annotations

import math

import pytest

from mibot_eval.cli import main
from mibot_eval.results.measure.gate import check_regression
from mibot_eval.results.stats.exact import unpaired_p_values
from mibot_eval.results.stats.holm import holm
from mibot_eval.results.stats.paired import p_worse_paired
from mibot_eval.results.stats.rates import newcombe_interval, wilson_interval, z_two_sided
from tests.data.fixtures import official, task_records, write_run


# -- statistics from the libraries pinned to today's figures ---------------------------------------
def _wilson_closed_form(s: int, n: int, z: float) -> tuple[float, float]:
    p = s / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (0.0 if s == 0 else centre - half), (1.0 if s == n else centre + half)


def test_library_intervals_equal_the_closed_forms_they_replace() -> None:
    z = z_two_sided()
    assert z == pytest.approx(1.959963984540054, abs=1e-15)
    for n in (1, 7, 24, 50, 500):
        for s in range(n + 1):
            assert wilson_interval(s, n) == pytest.approx(_wilson_closed_form(s, n, z), abs=1e-12)
    for s1, n1, s2, n2 in ((30, 50, 50, 50), (7, 10, 3, 10), (482, 500, 490, 500)):
        (l1, u1), (l2, u2) = _wilson_closed_form(s1, n1, z), _wilson_closed_form(s2, n2, z)
        d = s1 / n1 - s2 / n2
        expected = (d - math.hypot(s1 / n1 - l1, u2 - s2 / n2), d + math.hypot(u1 - s1 / n1, s2 / n2 - l2))
        assert newcombe_interval(s1, n1, s2, n2, z) == pytest.approx(expected, abs=1e-12)
    assert wilson_interval(7, 10) == pytest.approx((0.3968, 0.8922), abs=5e-5)  # today's figure
    assert holm([0.01, 0.04, 0.03, 0.2, 0.5]) == pytest.approx([0.05, 0.12, 0.12, 0.4, 0.5])


def test_exact_mcnemar_by_hand() -> None:
    # 6 pairs the baseline passed and the candidate failed, none the other way: P = (1/2)^6
    assert p_worse_paired(6, 0, 50) == pytest.approx(1 / 64)
    # 3 against 1: P(X >= 3 | X ~ Bin(4, 1/2)) = (4 + 1) / 16
    assert p_worse_paired(3, 1, 50) == pytest.approx(5 / 16)
    assert p_worse_paired(0, 4, 50) == 1.0  # the candidate is better
    # with a margin the test is the exact unconditional one (tests/test_exact.py checks it by
    # enumeration), no longer McNemar with the observed discordance plugged into the null share
    assert p_worse_paired(10, 0, 100, margin=0.05) == pytest.approx(0.03105, abs=1e-4)
    assert p_worse_paired(9, 1, 100, margin=0.1) > 0.5  # an 8 pp drop is within a 10 pp margin


def _run(results, name, suite_outcomes: dict[int, list[bool]]):
    """libero_spatial, task -> trial outcomes, as a recorded run with the official protocol."""
    records = []
    for task, outcomes in suite_outcomes.items():
        for trial, ok in enumerate(outcomes):
            rec = task_records("libero_spatial", task, int(ok), 1, first_trial=trial)[0]
            records.append(rec)
    suites = {"libero_spatial": official("libero_spatial")}
    return write_run(results, name, "Xiaomi-Robotics-0-LIBERO", suites, records,
                     selection={"tasks": None, "episodes_per_task": 50}, expected={"libero_spatial": 500})


def test_the_paired_gate_fails_where_the_unpaired_one_would_pass(tmp_path, capsys) -> None:
    """Baseline 490/500; the candidate fails 8 trials the baseline passed (one in each of 8 tasks)
    and passes none it failed: 482/500. At margin 0, unpaired (exact unconditional) the suite's
    p = 0.066 > 0.05; paired (exact McNemar on 8 vs 0 discordant pairs) p = 2^-8 = 0.0039, Holm over
    11 tests: 0.043."""
    base = {t: [True] * 49 + [False] for t in range(10)}  # every task: trial 49 fails
    cand = {t: list(v) for t, v in base.items()}
    for t in range(8):
        cand[t][0] = False
    base_dir, cand_dir = _run(tmp_path, "base", base), _run(tmp_path, "cand", cand)
    unpaired = unpaired_p_values(482, 500, 490, 500, 0.0)[0]
    assert unpaired == pytest.approx(0.0658, abs=1e-3)  # unpaired: not significant
    result = check_regression(cand_dir, base_dir, max_drop=0.0)
    suite = next(c for c in result.checks if c.scope == "suite")
    assert suite.test == "paired: exact McNemar" and suite.p_value == pytest.approx(2**-8)
    assert suite.p_adjusted == pytest.approx(11 * 2**-8) and suite.regressed
    assert "discordant: 8 baseline-only, 0 candidate-only of 500" in suite.note
    assert result.exit_code == 1
    code = main(["check", "--candidate", str(cand_dir), "--baseline", str(base_dir), "--max-drop", "0"])
    out = capsys.readouterr().out
    assert code == 1 and "| paired: exact McNemar |" in out
    # the same runs compared as independent samples would not be flagged
    assert holm([unpaired] + [unpaired_p_values(49, 50, 49, 50, 0.0)[0]] * 2 + [1.0] * 8)[0] > 0.05
