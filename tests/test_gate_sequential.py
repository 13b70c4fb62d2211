"""The sequential gate (`run --gate-against`): valid for the run whatever its tasks do and whatever
order episodes finish in, at least as powerful as textbook bets, honest about the difference at the
stop, and recorded in the manifest as a verdict a completed rerun supersedes (issue 20, items 3-5,
8 and 10). The Monte-Carlo slices reuse benchmarks/sequential_calibration.py, seeded."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mibot_eval.errors import UserError
from mibot_eval.results.measure.gate import check_regression
from mibot_eval.results.measure.gate_rounds import (
    ORDER,
    RoundBuffer,
    build_rounds,
    decode_trials,
    encode_trials,
    replay_recorded,
)
from mibot_eval.results.stats.sequential import (
    SequentialGate,
    bet_prior,
    log_wealths,
    round_exponents,
    simulate,
    simulate_rounds,
)
from mibot_eval.run.gating import _plan_units
from mibot_eval.run.planning import RunRequest, repeats
from mibot_eval.run.runner import execute
from mibot_eval.types import EpisodeSpec
from tests.parallel_fakes import write_suite

ROOT = Path(__file__).resolve().parents[1]


def _calibration():
    path = ROOT / "benchmarks" / "sequential_calibration.py"
    spec = importlib.util.spec_from_file_location("sequential_calibration", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("sequential_calibration", module)
    spec.loader.exec_module(module)
    return module


cal = _calibration()
GATES = 1000
TOLERANCE = 3 * math.sqrt(0.05 * 0.95 / GATES)  # three Monte-Carlo standard errors at alpha


# -- rounds -------------------------------------------------------------------------------------------
def test_rounds_hold_every_task_in_proportion() -> None:
    sizes = {"g/0": 300, "g/1": 240, "g/2": 108, "g/3": 108, "g/4": 108}  # Google Robot VM's tasks
    units = [f"{task}/{i}" for task, n in sizes.items() for i in range(n)]
    rounds = build_rounds(units)
    assert len(rounds) == 108
    assert sorted(u for r in rounds for u, _, _ in r) == sorted(units)  # each unit once
    for r in rounds:
        counts = {task: sum(1 for _, t, _ in r if t == task) for task in sizes}
        assert min(counts.values()) >= 1  # every task in every round
        exponents = {t: a for _, t, a in r}
        assert max(exponents.values()) == pytest.approx(1.0) and min(exponents.values()) > 0
        # the round's exponent mass is proportional to the task weights n_k / N
        mass = {t: counts[t] * exponents[t] for t in sizes}
        ratio = {t: mass[t] / (sizes[t] / sum(sizes.values())) for t in sizes}
        assert max(ratio.values()) == pytest.approx(min(ratio.values()))
    equal = build_rounds([f"s/{k}/{j}" for k in range(3) for j in range(4)])
    assert [[u for u, _, _ in r] for r in equal] == [[f"s/{k}/{j}" for k in range(3)] for j in range(4)]
    assert {a for r in equal for _, _, a in r} == {1.0}


def test_a_round_is_a_supermartingale_step_under_the_run_null_by_exact_computation() -> None:
    """For any tasks' changes that average to the null (weights n_k / N), E of a round's product of
    factors is <= 1 for every bet of the mixture: exact expectation over X in {0, 1/2, 1}."""
    rng = np.random.default_rng(3)
    sizes = np.array([300, 240, 108, 108, 108])
    weights = sizes / sizes.sum()
    prior = bet_prior()
    for _ in range(200):
        margin = rng.choice([0.0, 0.02, 0.05])
        m = (1 - margin) / 2
        # heterogeneous tasks: mu_k = P(X=1) - P(X=0) changes, weighted mean exactly -margin
        change = rng.uniform(-0.4, 0.4, len(sizes))
        change += -margin - weights @ change
        flip = rng.uniform(0.0, 0.2, len(sizes))
        p0, p1 = flip / 2 + np.maximum(0, -change), flip / 2 + np.maximum(0, change)
        counts = {k: int(c) for k, c in enumerate(rng.integers(1, 4, len(sizes)))}
        a = round_exponents(counts, dict(enumerate(weights)))
        for side in ("regressed", "not_worse"):
            bets = prior.fractions / (1 - m) if side == "regressed" else prior.fractions / m
            total = np.zeros_like(bets)
            for k in counts:
                factor = {0.0: p0[k], 0.5: 1 - p0[k] - p1[k], 1.0: p1[k]}
                one = sum(p * (1 + bets * ((m - x) if side == "regressed" else (x - m))) ** a[k]
                          for x, p in factor.items())
                total += counts[k] * np.log(one)
            assert total.max() <= 1e-12, (side, change, counts)


def test_trial_ranges_round_trip() -> None:
    for trials in ([], [0], [0, 1, 2, 5, 7, 8], list(range(50)), [3, 1, 2]):
        assert decode_trials(encode_trials(trials)) == sorted(set(trials))
    assert encode_trials(range(50)) == "0-49"


# -- item 3: heterogeneous tasks, plan order, completion order ---------------------------------------
def test_heterogeneous_tasks_cannot_fake_a_regression() -> None:
    """Overall change 0 made of tasks at -30 / +30 pp: the per-episode gate this replaces flagged a
    regression in ~30% of round-robin gates and in every plan-order one; the gate stays under alpha."""
    rng = np.random.Generator(np.random.PCG64(20))
    x, _ = cal.draw(rng, cal.heterogeneous(0.30), GATES)
    rr, plan = cal.round_robin(x), cal.plan_order(x)
    shipped_rr, _ = cal.shipped_gate(rr, 0.0)
    shipped_plan, _ = cal.shipped_gate(plan, 0.0)
    assert (shipped_rr == 1).mean() > 0.2 and (shipped_plan == 1).mean() > 0.99  # the audit's finding
    decisions, used = cal.gate(rr, 0.0)
    assert (decisions == 1).mean() <= 0.05 + TOLERANCE
    # read through the buffer, records arriving in plan order give the same verdicts at the same unit
    arrival = np.array([j * cal.TASKS + k for k in range(cal.TASKS) for j in range(cal.UNITS)])
    assert cal.buffer_agrees(rr[:15], np.tile(arrival, (15, 1)), 0.0, decisions[:15], used[:15])


def test_completion_order_cannot_bias_the_gate() -> None:
    """At the margin's boundary (5 pp worse, margin 5 pp), with 32 workers whose failures finish last:
    the per-episode gate read in completion order says 'not worse' about twice as often as with one
    worker; the buffered gate gives exactly the verdicts of one worker."""
    rng = np.random.Generator(np.random.PCG64(21))
    x, cand = cal.draw(rng, cal.homogeneous(0.10, 0.05), GATES)
    rr = cal.round_robin(x)
    finish = cal.finish_times(rng, cal.round_robin(cand), 32)
    arrival = np.argsort(finish, axis=1, kind="stable")
    one, _ = cal.shipped_gate(rr, 0.05)
    many, _ = cal.shipped_gate(np.take_along_axis(rr, arrival, axis=1), 0.05)
    assert (many == -1).mean() > (one == -1).mean() + 0.01  # the bias the buffer removes
    decisions, used = cal.gate(rr, 0.05)
    assert (decisions == -1).mean() <= 0.05 + TOLERANCE
    assert cal.buffer_agrees(rr[:15], arrival[:15], 0.05, decisions[:15], used[:15])
    recorded = cal.recorded_at_decision(finish, used)
    assert (recorded >= used).all()  # episodes that finished early wait in the buffer


# -- item 4: bets ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("discordance,drop", [(0.10, 0.02), (0.20, 0.05)])
def test_bets_are_at_least_as_powerful_as_beta_mixture_and_ons(discordance, drop) -> None:
    rng = np.random.Generator(np.random.PCG64(22))
    rr = cal.round_robin(cal.draw(rng, cal.homogeneous(discordance, drop), 600)[0])
    power = {name: (fn(rr)[0] == 1).mean() for name, fn in (
        ("shipped", lambda a: cal.shipped_gate(a, 0.0)), ("beta", cal.beta_mixture), ("ons", cal.ons),
        ("gate", lambda a: cal.gate(a, 0.0)))}
    assert power["gate"] >= max(power["beta"], power["ons"]) - 0.02, power  # same streams: paired
    assert power["gate"] > power["shipped"] + 0.03, power


def test_the_vectorised_simulation_is_the_gate_itself() -> None:
    rng = np.random.default_rng(0)
    values = np.array([0.0, 0.5, 1.0, 5 / 12, 7 / 12])  # copies' means give fractional units
    x = rng.choice(values, size=(30, 120), p=[0.12, 0.7, 0.08, 0.05, 0.05])
    ends = np.array([10, 25, 40, 60, 80, 100, 120])
    exponents = rng.uniform(0.5, 1.0, 120)
    for margin in (0.0, 0.03):
        decisions, used = simulate_rounds(x, ends, 0.05, margin, exponents)
        for g in range(30):
            gate = SequentialGate(0.05, margin)
            start = 0
            for end in ends:
                units = [(0.0, 1 - 2 * v, a) if v <= 0.5 else (2 * v - 1, 0.0, a)
                         for v, a in zip(x[g, start:end], exponents[start:end], strict=True)]
                start = end
                if gate.update_round(units):
                    break
            want = {1: "regressed", -1: "not_worse", 0: None}[int(decisions[g])]
            assert gate.decision == want and (want is None or gate.decided_at == used[g])
    assert (simulate(200, 400, 0.9, 0.2, 0.01, 0.05, 0.0, seed=1)[0] == 1).mean() == 1.0


# -- item 5: the difference at the stop and the saved fraction ------------------------------------------
def test_the_confidence_sequence_covers_the_truth_at_the_stop() -> None:
    """The naive difference at a 'regressed' stop overstates a 2 pp drop; the confidence sequence at
    the stop holds the truth, and its upper bound is below -margin exactly when the verdict is
    'regressed'."""
    rng = np.random.Generator(np.random.PCG64(23))
    rr = cal.round_robin(cal.draw(rng, cal.homogeneous(0.10, 0.02), 400)[0])
    decisions, used = cal.gate(rr, 0.0)
    stopped = np.flatnonzero(decisions == 1)
    assert len(stopped) > 100
    naive, missed = [], 0
    for g in stopped[:60]:
        seen = rr[g, :used[g]]
        naive.append(2 * seen.mean() - 1)
        gate = SequentialGate(0.05, 0.0)
        gate.update_round([(float(v >= 0.5), float(v <= 0.5), 1.0) for v in seen])
        low, high = gate.confidence_bounds()
        assert high < 0 and gate.decision == "regressed"
        missed += not low <= -0.02 <= high
    assert np.mean(naive) < -0.025  # inflated: the audit's 3.3 pp for a true 2 pp
    assert missed <= 3
    # the bounds and the verdict are one statement
    gate = SequentialGate(0.05, 0.03)
    gate.update_round([(1.0, 1.0, 1.0)] * 300 + [(0.0, 1.0, 1.0)] * 12 + [(1.0, 0.0, 1.0)] * 4)
    low, high = gate.confidence_bounds(1e-6)
    values, masses = np.array(sorted(gate._mass)), np.array([gate._mass[v] for v in sorted(gate._mass)])
    bar = math.log(20)
    assert log_wealths(values, masses, low - 1e-4, gate.prior)[1] >= bar > log_wealths(
        values, masses, low + 1e-4, gate.prior)[1]
    assert (gate.decision == "not_worse") == (low > -0.03)


def test_without_a_margin_an_unchanged_candidate_is_rarely_stopped() -> None:
    """The honest saved fraction: margin 0 saves nothing on an unchanged candidate; a margin does."""
    rng = np.random.Generator(np.random.PCG64(24))
    rr = cal.round_robin(cal.draw(rng, cal.homogeneous(0.05, 0.0), 300)[0])
    none, used_none = cal.gate(rr, 0.0)
    some, used_some = cal.gate(rr, 0.05)
    assert used_none.mean() > 0.95 * rr.shape[1] and (none == 1).mean() <= 0.05
    assert used_some.mean() < 0.3 * rr.shape[1] and (some == -1).mean() > 0.95


# -- item 10: WidowX copies --------------------------------------------------------------------------------
def test_a_unit_is_compared_with_a_unit_once_all_its_copies_are_in() -> None:
    """Six copies per unit: the candidate's unit is the mean of its copies, fed only when all six are
    recorded, against the baseline's mean over its copies (not the candidate's first copy)."""
    units = [f"w/{k}/{u}" for k in range(2) for u in range(3)]
    members = {u: [u] + [f"{u.rsplit('/', 1)[0]}/{int(u.rsplit('/', 1)[1]) + 3 * c}" for c in range(1, 6)]
               for u in units}
    baseline = {u: 1.0 for u in units}
    gate = SequentialGate(0.05, 0.0)
    buffer = RoundBuffer(gate, build_rounds(units), members, baseline)
    seen: list[list[tuple[float, float, float]]] = []
    gate.update_round = lambda batch: seen.append(batch)  # type: ignore[method-assign]
    # the first copies succeed, every other copy fails: the unit is 1/6, not 1
    for key in (members["w/0/0"][0], members["w/1/0"][0]):
        buffer.add({"key": key, "success": True})
    assert seen == []  # no unit complete yet
    for unit in ("w/0/0", "w/1/0"):
        for key in members[unit][1:]:
            buffer.add({"key": key, "success": False})
    assert seen == [[(pytest.approx(1 / 6), 1.0, 1.0), (pytest.approx(1 / 6), 1.0, 1.0)]]
    # replay from records: repeat_of groups the copies the same way
    records = [{"key": k, "suite": "w", "success": i == 0, "status": "ok",
                "metrics": {"repeat_of": u if i else None}}
               for u in units for i, k in enumerate(members[u])]
    base = [{**r, "success": True} for r in records]
    info = {"order": ORDER, "units": {"w/0": "0-2", "w/1": "0-2"}, "matched_suites": ["w"],
            "alpha": 0.05, "max_drop_pp": 0.0}
    replayed = replay_recorded(info, records, base)
    assert replayed is not None and replayed.n >= 2
    assert replayed.diff_sum / replayed.n == pytest.approx(1 / 6 - 1)


def test_plan_units_group_copies_by_the_adapters_repeat_of() -> None:
    specs = [EpisodeSpec("w", 0, "t", trial, 0) for trial in range(6)]
    adapter = SimpleNamespace(repeat_of=lambda s: None if s.trial < 2 else f"w/0/{s.trial % 2}")
    plan = SimpleNamespace(protocol=SimpleNamespace(name="w"), repeat_of=repeats(adapter, specs),
                           episodes=specs)
    assert _plan_units([plan], {"w"}) == {"w/0/0": ["w/0/0", "w/0/2", "w/0/4"],
                                          "w/0/1": ["w/0/1", "w/0/3", "w/0/5"]}


# -- the run: early stop, verdicts in the manifest, resume, a completed rerun ---------------------------
class SignPolicy:
    """Pushes every action's first dimension one way per task: the fake suite succeeds (even trials
    only) when it is +. signs: task id -> +1 / -1 (default `default`)."""

    def __init__(self, default: float, signs: dict[int, float] | None = None) -> None:
        self.default, self.signs = default, signs or {}

    def infer(self, requests):
        out = []
        for request in requests:
            task = int(request.observation.instruction.rstrip(".").split()[-1])
            out.append(np.full((5, 32), 0.5 * self.signs.get(task, self.default), dtype=np.float32))
        return out


def _request(tmp_path, suite, run, **kw):
    (tmp_path / "ckpt").mkdir(exist_ok=True)
    (tmp_path / "ckpt" / "config.json").write_text('{"model_type": "mibot"}')
    return RunRequest(checkpoint=str(tmp_path / "ckpt"), suites=[str(suite)], video="none",
                      results_dir=tmp_path / "results", run_name=run, progress=False, **kw)


def _manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def _lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "episodes.jsonl").read_text().splitlines()]


def test_a_gated_run_stops_records_its_verdict_and_a_completed_rerun_supersedes_it(tmp_path, fakesim) -> None:
    suite = write_suite(tmp_path, tasks=4, episodes=40, max_steps=3, success_at=1, success_sign=1.0)
    baseline = execute(_request(tmp_path, suite, "base"), policy=SignPolicy(+1))
    worse = execute(_request(tmp_path, suite, "worse", gate_against=str(baseline), gate_max_drop=5.0),
                    policy=SignPolicy(-1))
    gate = _manifest(worse)["gate"]
    assert gate["verdict"] == gate["decision"] == "regressed" and gate["stopped_early"]
    assert gate["order"] == ORDER and gate["planned_rounds"] == 40 and gate["units"] == {
        f"{suite.stem}/{t}": "0-39" for t in range(4)}
    assert gate["recorded_episodes"] % 4 == 0 < gate["recorded_episodes"] < 40  # whole rounds
    assert gate["episodes_saved"] == 160 - gate["recorded_episodes"]
    low, high = gate["confidence_sequence_pp"]
    assert high < -5 and low >= -100 and gate["reason"].startswith("regressed: worse than the baseline")
    assert [r["task_id"] for r in _lines(worse)][:8] == [0, 1, 2, 3, 0, 1, 2, 3]
    result = check_regression(worse, baseline)
    assert result.sequential is not None and result.sequential.decision == "regressed"
    assert result.sequential.decided_at == gate["decided_at"] and result.exit_code == 1
    # a candidate as good as the baseline is passed early with a 5 pp margin
    same = execute(_request(tmp_path, suite, "same", gate_against=str(baseline), gate_max_drop=5.0),
                   policy=SignPolicy(+1))
    assert _manifest(same)["gate"]["verdict"] == "not_worse"
    assert check_regression(same, baseline).exit_code == 0
    # rerun without the gate: the protocol completes, the sequential verdict no longer decides
    execute(_request(tmp_path, suite, "worse"), policy=SignPolicy(-1))
    keys = [r["key"] for r in _lines(worse)]
    assert len(keys) == len(set(keys)) == 160
    manifest = _manifest(worse)
    assert "gate" not in manifest and manifest["gate_superseded"]["verdict"] == "regressed"
    assert check_regression(worse, baseline).sequential is None


def test_an_undecided_plan_ends_inconclusive_and_a_partial_rerun_keeps_the_verdict(tmp_path, fakesim) -> None:
    suite = write_suite(tmp_path, tasks=2, episodes=6, max_steps=3, success_at=1, success_sign=1.0)
    baseline = execute(_request(tmp_path, suite, "base"), policy=SignPolicy(+1))
    run = execute(_request(tmp_path, suite, "cand", gate_against=str(baseline)), policy=SignPolicy(+1))
    gate = _manifest(run)["gate"]
    assert gate["verdict"] == "inconclusive" and gate["decision"] is None and not gate["stopped_early"]
    assert gate["recorded_episodes"] == gate["planned_episodes"] == 12 and gate["episodes_saved"] == 0
    assert gate["reason"].startswith("inconclusive")
    # a gated run stopped early, then a rerun of only part of the plan: the verdict stays
    suite = write_suite(tmp_path, name="long", tasks=2, episodes=40, max_steps=3, success_at=1,
                        success_sign=1.0)
    baseline = execute(_request(tmp_path, suite, "long-base"), policy=SignPolicy(+1))
    stop = execute(_request(tmp_path, suite, "stop", gate_against=str(baseline), gate_max_drop=5.0),
                   policy=SignPolicy(-1))
    assert _manifest(stop)["gate"]["verdict"] == "regressed" and len(_lines(stop)) < 40
    execute(_request(tmp_path, suite, "stop", tasks=[0]), policy=SignPolicy(-1))
    assert len(_lines(stop)) < 80 and _manifest(stop)["gate"]["verdict"] == "regressed"


def test_heterogeneous_tasks_recorded_in_plan_order_do_not_fake_a_regression(tmp_path, fakesim) -> None:
    """The candidate loses every success on tasks 0-1 and gains them on tasks 2-3 (overall change 0).
    Recorded in plan order by an ungated first invocation, then gated: the old gate, reading the file
    in order, would say 'regressed'; the gate reads its rounds and does not."""
    suite = write_suite(tmp_path, tasks=4, episodes=20, max_steps=3, success_at=1, success_sign=1.0)
    baseline = execute(_request(tmp_path, suite, "base"), policy=SignPolicy(+1, {2: -1, 3: -1}))
    policy = SignPolicy(+1, {0: -1, 1: -1})
    cand = execute(_request(tmp_path, suite, "cand"), policy=policy)  # plan order, ungated
    base_ok = {r["key"]: float(r["success"]) for r in _lines(baseline)}
    x = np.array([[(1 + float(r["success"]) - base_ok[r["key"]]) / 2 for r in _lines(cand)]])
    assert cal.shipped_gate(x, 0.0)[0][0] == 1  # the file order fools a per-episode gate
    execute(_request(tmp_path, suite, "cand", gate_against=str(baseline)), policy=policy)
    gate = _manifest(cand)["gate"]
    assert gate["verdict"] == "inconclusive" and gate["matched_units"] == 80


def test_the_gate_refuses_a_baseline_without_this_plans_episodes(tmp_path, fakesim) -> None:
    suite = write_suite(tmp_path, tasks=2, episodes=2, max_steps=3, success_at=1, success_sign=1.0)
    baseline = execute(_request(tmp_path, suite, "base", tasks=[0]), policy=SignPolicy(+1))
    with pytest.raises(UserError, match="recorded none"):
        execute(_request(tmp_path, suite, "cand", tasks=[1], gate_against=str(baseline)),
                policy=SignPolicy(+1))


def test_workers_finishing_out_of_order_give_the_in_process_verdict(tmp_path, fakesim) -> None:
    """Failures run to the step limit and finish after successes dispatched later: with 3 simulator
    processes the gate still reads its rounds in dispatch order, so verdict and stopping unit are the
    in-process ones, and `check` replays them."""
    suite = write_suite(tmp_path, tasks=4, episodes=16, max_steps=8, step_sleep=0.004, success_at=1,
                        success_sign=1.0)
    baseline = execute(_request(tmp_path, suite, "base"), policy=SignPolicy(+1))
    worse = SignPolicy(+1, {0: -1, 1: -1})  # tasks 0-1 lose every success, 2-3 unchanged
    gates = {}
    for name, kw in (("one", {}), ("three", {"workers": 3})):
        run = execute(_request(tmp_path, suite, name, gate_against=str(baseline), **kw), policy=worse)
        gates[name] = _manifest(run)["gate"]
        replayed = check_regression(run, baseline).sequential
        assert replayed is not None and replayed.decided_at == gates[name]["decided_at"]
    one, three = gates["one"], gates["three"]
    assert one["verdict"] == three["verdict"] == "regressed"
    assert (one["decided_at"], one["rounds"]) == (three["decided_at"], three["rounds"])
    assert three["recorded_episodes"] >= one["recorded_episodes"]
