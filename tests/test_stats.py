"""Known answers: Clopper-Pearson and Wilson bounds, Newcombe, Holm, release aggregates with MOVER
intervals, CALVIN chains (errored sequences in the subtask rates), WidowX repeats, errors as failures,
deterministic bootstrap."""

from __future__ import annotations

import pytest

from mibot_eval.config import load_aggregates
from mibot_eval.results.measure.suites import chain_counts, mean_of_group_means, measure_suite
from mibot_eval.results.measure.summary import measure
from mibot_eval.results.stats.bootstrap import bootstrap_means
from mibot_eval.results.stats.holm import holm
from mibot_eval.results.stats.intervals import AVG_LEN_METHOD, MOVER_METHOD, RATE_METHOD
from mibot_eval.results.stats.rates import Rate, newcombe_interval, wilson_interval, z_two_sided
from tests.data.fixtures import chain_records, task_records

RULES = {(r.key, r.name): r for r in load_aggregates()}


def test_rate_intervals_are_clopper_pearson_and_wilson_known_bounds() -> None:
    # Clopper-Pearson (exact): 7/10 -> 0.3475 to 0.9333; 0/5 -> 0 to 0.5218 (1 - 0.025^(1/5))
    assert Rate(7, 10).interval() == pytest.approx((34.75, 93.33), abs=1e-2)
    assert Rate(0, 5).interval() == (0.0, pytest.approx(100 * (1 - 0.025 ** 0.2), abs=1e-6))
    assert Rate(5, 5).interval() == (pytest.approx(100 * 0.025 ** 0.2, abs=1e-6), 100.0)
    assert Rate(0, 0).value is None and Rate(0, 0).interval() is None
    assert RATE_METHOD == "Clopper-Pearson"
    # Wilson stays for the latency sweep's bars
    assert wilson_interval(7, 10) == pytest.approx((0.3968, 0.8922), abs=1e-4)
    assert wilson_interval(0, 5) == (0.0, pytest.approx(0.4345, abs=1e-4))
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_newcombe_known_interval() -> None:
    # Newcombe (1998), example (a): 56/70 - 48/80 -> 0.0524 to 0.3339 (hybrid score method)
    assert newcombe_interval(56, 70, 48, 80, z_two_sided()) == pytest.approx((0.0524, 0.3339), abs=1e-4)


def test_holm() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]) == []


def test_release_averages_from_reported_task_numbers() -> None:
    vm = {"coke": 98.7, "near": 88.8, "open": 71.3, "close": 88.0, "put": 75.0}
    va = {"coke": 88.2, "near": 76.8, "open": 57.7, "close": 76.7, "put": 66.7}
    groups = [["coke"], ["near"], ["open", "close"], ["put"]]
    assert round(mean_of_group_means(vm, groups), 1) == 85.5
    assert round(mean_of_group_means(va, groups), 1) == 74.7
    widowx = {"carrot": 62.5, "eggplant": 83.3, "spoon": 95.8, "stack": 75.0}
    assert round(mean_of_group_means(widowx, [[k] for k in widowx]), 1) == 79.2
    libero = {"spatial": 98.8, "object": 100.0, "goal": 98.8, "long": 97.2}
    assert round(mean_of_group_means(libero, [[k] for k in libero]), 1) == 98.7


def _google(suite: str, counts: dict[str, tuple[int, int]]) -> list[dict]:
    return [r for i, (name, (k, n)) in enumerate(counts.items())
            for r in task_records(suite, i, k, n, task_name=name, benchmark="simpler")]


@pytest.mark.parametrize("suite, counts, expected", [
    ("simpler_google_vm", {"pick_coke_can": (296, 300), "move_near": (213, 240),
                           "open_drawer": (77, 108), "close_drawer": (95, 108),
                           "put_in_drawer": (81, 108)}, 85.5),
    ("simpler_google_va", {"pick_coke_can": (728, 825), "move_near": (461, 600),
                           "open_drawer": (109, 189), "close_drawer": (145, 189),
                           "put_in_drawer": (126, 189)}, 74.7),
])
def test_google_robot_pooled_drawer_average_from_records(suite, counts, expected) -> None:
    suites, aggregates = measure(_google(suite, counts), {}, {}, [RULES[(suite, "average")]])
    (average,) = aggregates
    assert round(average.value, 1) == expected
    assert average.low < average.value < average.high and average.method == MOVER_METHOD
    again = measure(_google(suite, counts), {}, {}, [RULES[(suite, "average")]])[1][0]
    assert (again.low, again.high) == (average.low, average.high)  # seeded: deterministic


def test_widowx_repeats_count_24_independent_trials() -> None:
    names = ["put_carrot_on_plate", "put_eggplant_in_basket", "put_spoon_on_towel",
             "stack_green_on_yellow"]
    records = [r for i, (name, k) in enumerate(zip(names, (15, 20, 23, 18), strict=True))
               for r in task_records("simpler_widowx", i, k, 24, task_name=name, repeats=6,
                                     benchmark="simpler")]
    assert len(records) == 4 * 144
    suites, aggregates = measure(records, {}, {}, [RULES[("simpler_widowx", "average")]])
    carrot = suites["simpler_widowx"].tasks["0"]
    assert carrot.episodes == 144 and carrot.rate == Rate(15, 24)  # 90/144 = 62.5%, n = 24
    assert carrot.rate.interval() == pytest.approx(Rate(15, 24).interval())
    assert [round(t.rate.value, 1) for t in suites["simpler_widowx"].tasks.values()] == [
        62.5, 83.3, 95.8, 75.0]
    assert round(aggregates[0].value, 1) == 79.2 and aggregates[0].n == 96


def test_disagreeing_repeats_are_flagged_and_averaged() -> None:
    records = task_records("simpler_widowx", 0, 1, 1, repeats=2)
    records[1]["success"] = False
    task = measure_suite("simpler_widowx", records).tasks["0"]
    assert task.rate == Rate(0.5, 1) and task.inconsistent_repeats == 1


def test_calvin_chain_rates_and_average_length() -> None:
    completed = [1] * 17 + [2] * 23 + [3] * 34 + [4] * 45 + [5] * 881
    assert chain_counts(completed, 5) == [1000, 983, 960, 926, 881]
    records = chain_records("calvin_abc_d", completed)
    suites, aggregates = measure(records, {}, {}, [RULES[("calvin_abc_d", "chains")]])
    values = {e.metric: e for e in aggregates}
    assert [round(values[f"chain_{k}"].value, 1) for k in range(1, 6)] == [100.0, 98.3, 96.0, 92.6, 88.1]
    assert values["chain_2"].n == 1000 and values["chain_2"].method == RATE_METHOD
    avg = values["avg_len"]
    assert avg.value == pytest.approx(4.75) and avg.low < 4.75 < avg.high and avg.high - avg.low < 0.2
    assert avg.method == AVG_LEN_METHOD
    subtasks = suites["calvin_abc_d"].tasks
    assert subtasks["open_drawer"].rate == Rate(1000, 1000)
    assert subtasks["push_red_block_left"].rate == Rate(983, 1000)  # attempted by every sequence


def test_errors_count_as_failures_like_the_release_and_are_counted_apart() -> None:
    records = task_records("libero_spatial", 0, 3, 4, errors=3)
    suite = measure_suite("libero_spatial", records, full=500, requested=7)
    assert suite.rate == Rate(3, 7) and suite.errors == 3 and suite.episodes == 4 and suite.trials == 7
    assert suite.tasks["0"].errors == 3 and suite.tasks["0"].rate == Rate(3, 7)
    assert suite.partial and suite.status.startswith("partial: 7/500 episodes (1.4% of the protocol)")
    assert not measure_suite("libero_spatial", records, full=7, requested=7).partial


def test_an_errored_calvin_sequence_counts_zero_subtasks() -> None:
    ok = {"key": "calvin_abc_d/1/0", "suite": "calvin_abc_d", "task_id": 1, "status": "ok",
          "success": True, "metrics": {"completed": 5, "subtasks": ["a"] * 5}}
    error = {"key": "calvin_abc_d/2/0", "suite": "calvin_abc_d", "task_id": 2, "status": "error",
             "success": False, "metrics": {}}
    suite = measure_suite("calvin_abc_d", [ok, error], chain_length=5)
    assert suite.chain is not None and suite.chain.completed == {"calvin_abc_d/1/0": 5, "calvin_abc_d/2/0": 0}
    assert suite.chain.average_length() == 2.5 and suite.rate == Rate(1, 2)


def test_a_success_field_that_is_not_true_is_no_success() -> None:
    record = {"key": "s/0/0", "suite": "s", "task_id": 0, "status": "ok", "success": "false"}
    assert measure_suite("s", [record]).rate == Rate(0, 1)


def test_bootstrap_is_seeded() -> None:
    a = bootstrap_means([[1, 0, 1, 1], [0, 0, 1]], replicates=500, seed=3)
    b = bootstrap_means([[1, 0, 1, 1], [0, 0, 1]], replicates=500, seed=3)
    assert a.shape == (500, 2) and (a == b).all()


def test_errored_calvin_sequences_are_failures_of_their_first_subtask() -> None:
    """Issue 20 item 10: an errored sequence counts as a failed attempt of its first subtask, as it
    counts 0 completed in the chain rates; its subtasks come from the sequence file when the error
    record has none."""
    ok = {"key": "calvin_abc_d/0/0", "suite": "calvin_abc_d", "task_id": 0, "status": "ok",
          "success": False, "metrics": {"completed": 1, "subtasks": ["a", "b", "c", "d", "e"]}}
    error = {"key": "calvin_abc_d/1/0", "suite": "calvin_abc_d", "task_id": 1, "status": "error",
             "success": False, "metrics": {"attempts": 2}}
    suite = measure_suite("calvin_abc_d", [ok, error], chain_length=5,
                          sequence_subtasks={"1": ("a", "x", "y", "z", "w")})
    assert suite.tasks["a"].rate == Rate(1, 2) and suite.tasks["a"].errors == 1
    assert suite.tasks["b"].rate == Rate(0, 1) and "x" not in suite.tasks
    # the shipped sequence file is found from the suite's protocol when measuring a run
    from mibot_eval.config import load_suite
    from mibot_eval.results.measure.summary import measure

    protocol = {"calvin_abc_d": {"protocol": load_suite("calvin_abc_d").as_dict()}}
    first = "rotate_blue_block_right"  # sequence 0 of eval_sequences.json
    error0 = {**error, "task_id": 0, "key": "calvin_abc_d/0/0"}
    suites, _ = measure([error0], protocol, {}, [RULES[("calvin_abc_d", "chains")]])
    assert suites["calvin_abc_d"].tasks[first].rate == Rate(0, 1)
    assert suites["calvin_abc_d"].tasks[first].errors == 1


def test_an_all_fail_or_all_success_average_has_an_interval_of_nonzero_width() -> None:
    """Issue 20 item 9: the LIBERO average of 4 x 500 failures is not [0, 0] (nor all successes
    [100, 100])."""
    rule = RULES[("libero", "average")]
    for ok in (0, 50):
        records = [r for s in rule.suites for t in range(10) for r in task_records(s, t, ok, 50)]
        _, (average,) = measure(records, {}, {}, [rule])
        assert average.value == 100.0 * ok / 50 and average.method == MOVER_METHOD
        assert average.high - average.low > 0.1
        assert average.low <= average.value <= average.high
