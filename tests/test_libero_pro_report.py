"""The robustness report on recorded episodes with a known answer (no simulator).

Clean libero_spatial: tasks 0, 1, 2 at 45/50, 40/50, 50/50. libero_spatial_lan: 20/50, 40/50 and
48 ok of 50 (2 errored episodes, counted as failures). Expected numbers come from the closed-form
Wilson and Newcombe intervals, computed independently below.
"""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import pytest

from mibot_eval.errors import UserError
from mibot_eval.results.measure.robustness import build_report
from mibot_eval.results.views.robustness import render_markdown, write_report
from tests.data.fixtures import official, task_records, write_run

ROOT = Path(__file__).resolve().parents[1]
Z = 1.959963984540054


def _wilson(k: int, n: int) -> tuple[float, float]:
    p, d = k / n, 1 + Z * Z / n
    c, h = (p + Z * Z / (2 * n)) / d, Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / d
    return (0.0 if k == 0 else c - h), (1.0 if k == n else c + h)


def _newcombe(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    (l1, u1), (l2, u2) = _wilson(k1, n1), _wilson(k2, n2)
    p1, p2 = k1 / n1, k2 / n2
    return 100 * (p1 - p2 - math.hypot(p1 - l1, u2 - p2)), 100 * (p1 - p2 + math.hypot(u1 - p1, p2 - l2))


def _runs(tmp_path: Path, variant_checkpoint: str = "tiny", **overrides) -> tuple[Path, Path]:
    results = tmp_path / "results"
    clean_records = [r for t, k in enumerate((45, 40, 50)) for r in task_records("libero_spatial", t, k, 50)]
    clean = write_run(results, "tiny__libero__sync", "tiny", {"libero_spatial": official("libero_spatial")},
                      clean_records)
    suites = {"libero_spatial_lan": official("libero_spatial_lan", **overrides),
              "libero_object_with_mug": official("libero_object_with_mug")}
    records = (task_records("libero_spatial_lan", 0, 20, 50) + task_records("libero_spatial_lan", 1, 40, 50)
               + task_records("libero_spatial_lan", 2, 48, 48, errors=2)
               + task_records("libero_object_with_mug", 1, 25, 50))
    variant = write_run(results, "tiny__libero_pro__sync", variant_checkpoint, suites, records,
                        checkpoint_id="c0ffee" if variant_checkpoint == "tiny" else "beef")
    return clean, variant


def test_drop_table_has_the_known_answer(tmp_path) -> None:
    clean, variant = _runs(tmp_path)
    report = build_report([clean], [variant])
    rows = {(r.variant, r.scope, r.task): r for r in report.rows}
    expected = {"0": (45, 20, 50), "1": (40, 40, 50), "2": (50, 48, 50)}
    for task, (kc, kv, n) in expected.items():
        row = rows[("libero_spatial_lan", "task", task)]
        assert (row.clean_rate.successes, row.clean_rate.n) == (kc, n)
        assert (row.variant_rate.successes, row.variant_rate.n) == (kv, n)  # errors are failures
        drop, low, high = row.drop()
        assert drop == pytest.approx(100 * (kc - kv) / n)
        assert (low, high) == pytest.approx(_newcombe(kc, n, kv, n), abs=1e-9)
    assert rows[("libero_spatial_lan", "task", "0")].drop()[1:] == pytest.approx((32.11, 63.62), abs=0.005)
    assert rows[("libero_spatial_lan", "task", "0")].verdict == "**worse**"
    assert rows[("libero_spatial_lan", "task", "1")].verdict == "no"
    suite = rows[("libero_spatial_lan", "suite", "")]
    assert (suite.clean_rate.successes, suite.variant_rate.successes, suite.variant_rate.n) == (135, 108, 150)
    assert suite.drop() == pytest.approx((18.0, *_newcombe(135, 150, 108, 150)))
    assert suite.pairing.startswith("unpaired") and suite.pairs is None
    assert suite.notes == [f"{side} partial: 150/500 episodes (30.0% of the protocol)"
                           for side in ("variant", "clean")]
    # libero_object_with_mug task 1 is base task 3 (alphabetical order): no clean run of libero_object
    assert any("libero_object_with_mug" in m and "no clean run of libero_object" in m for m in report.missing)

    text = render_markdown(report)
    assert ("| libero_spatial_lan | lan | libero_spatial | 72.0 | [64.1, 79.0] | 108/150 | 90.0 | "
            "[84.0, 94.3] | 135/150 | 18.0 | [9.2, 26.6] | **worse** | unpaired: own init states | "
            "variant partial") in text
    assert ("| libero_spatial_lan | 0 | 0 | task_0 | 40.0 | [26.4, 54.8] | 20/50 | 90.0 | [78.2, 96.7] | "
            "45/50 | 50.0 | [32.1, 63.6] | **worse** |") in text
    _, md, csv_path = write_report(report, tmp_path / "out" / "robustness.md")
    assert md.read_text() == text
    table = list(csv.DictReader(csv_path.open()))
    first = next(r for r in table if r["scope"] == "suite")
    assert (first["variant"], first["drop_pp"], first["drop_low"], first["worse"]) == (
        "libero_spatial_lan", "18.0", "9.21", "true")


def test_paired_suite_counts_discordant_pairs(tmp_path) -> None:
    clean, _ = _runs(tmp_path)
    records = task_records("libero_spatial_lan_paired", 0, 20, 50)  # trials 0..19 succeed
    paired = write_run(tmp_path / "results", "tiny__libero_pro_paired__sync", "tiny",
                       {"libero_spatial_lan_paired": official("libero_spatial_lan_paired")}, records)
    row = next(r for r in build_report([clean], [paired]).rows if r.scope == "task")
    assert row.pairing.startswith("paired") and row.pairs == 50
    assert (row.clean_only, row.variant_only) == (25, 0)  # clean trials 0..44 succeed
    assert row.drop() == pytest.approx((50.0, *_newcombe(45, 50, 20, 50)))  # still the unpaired interval


def test_protocol_differences_and_other_checkpoints_are_flagged(tmp_path) -> None:
    clean, variant = _runs(tmp_path, max_steps=3)
    suite = next(r for r in build_report([clean], [variant]).rows if r.scope == "suite")
    assert "protocols differ in max_steps" in suite.notes
    other_clean, other_variant = _runs(tmp_path / "b", variant_checkpoint="other")
    with pytest.raises(UserError, match="nothing to compare: .*no clean run of libero_spatial by other "
                                        r"\(only runs of tiny\)"):
        build_report([other_clean], [other_variant])
    with pytest.raises(UserError, match="no LIBERO-PRO variant suite"):
        build_report([clean], [clean])


def test_cli_prints_and_writes_the_report(tmp_path) -> None:
    clean, variant = _runs(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "mibot_eval.cli", "robustness", "--clean", str(clean.parent),
                           "--variant", str(variant)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "| libero_spatial_lan | lan | libero_spatial | 72.0 |" in proc.stdout
    assert (variant / "robustness.md").is_file() and (variant / "robustness.csv").is_file()
    bad = subprocess.run([sys.executable, "-m", "mibot_eval.cli", "robustness", "--clean", str(clean),
                          "--variant", str(clean)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("mibot-eval: error: no LIBERO-PRO variant suite")
