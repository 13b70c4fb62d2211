"""Size and power of the sequential gate (`run --gate-against`), by seeded Monte Carlo.

    python benchmarks/sequential_calibration.py [--gates 4000] [--seed 0]

The gates run the project's own code: results/sequential.simulate_rounds (the same arithmetic as
SequentialGate, vectorised over gates) for the gate as it is, and `shipped_gate` below, a copy of the
per-episode plug-in gate it replaces (commit c4dfbf5), for comparison. A sample of gates is also
replayed through results/gate_rounds.RoundBuffer, fed in plan order and in completion order, and
must give the same verdicts (the buffer is what makes the arrival order irrelevant).

Model. A LIBERO-sized plan: 40 tasks x 50 units (2000 matched episodes), alpha 0.05. Each unit of
task k is base-only (the baseline succeeded, the candidate failed; X = 0) with probability b_k,
candidate-only (X = 1) with c_k, concordant otherwise (X = 1/2; a joint success with probability 0.9,
else a joint failure). Task k's change is delta_k = c_k - b_k; discordance is b_k + c_k.
  heterogeneous  tasks 0-19 at -X pp, tasks 20-39 at +X pp (overall change 0, or -margin), with 2%
                 of units flipped each way on top (b_k = 0.01 + max(0, -delta_k), c_k = 0.01 +
                 max(0, delta_k))
  homogeneous    every task: b = (d + drop) / 2, c = (d - drop) / 2 at discordance d
Orders. round-robin (trial j of every task, then j + 1: the gate's rounds), plan order (task 0's 50
units, then task 1's...: what a resumed run replays when its first invocation was not gated), and
completion order with W workers: units dispatched in round-robin order to W workers, a candidate
success takes U(0.3, 0.9) of the step limit and a failure the whole limit (+U(0, 0.02)), and the
shipped gate read them as they finished; the gate now reads them in dispatch order from a buffer.
Bets (homogeneous, margin 0), each stopping at its first crossing of 1/alpha:
  shipped       per-episode predictable plug-in bets (Waudby-Smith & Ramdas), every episode
  beta-mixture  SPRT on the discordant pairs, uniform prior on P(base-only | discordant) in [1/2, 1]
                (closed form with scipy.special.betainc), every episode
  ONS           online Newton step bets on the discordant pairs (Cutkosky & Orabona 2018, as in
                Shekhar & Ramdas 2023), every episode
  gate          results/stats/sequential.py: mixture of constant bets, tasks combined at round ends
`main_table()` returns every table (markdown); benchmarks/gate_calibration.py prints it with the
fixed-N tests' tables.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import betainc, betaln

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mibot_eval.results.measure.gate_rounds import RoundBuffer, build_rounds  # noqa: E402
from mibot_eval.results.stats.sequential import SequentialGate, simulate_rounds  # noqa: E402

ALPHA = 0.05
TASKS, UNITS = 40, 50
FLIP = 0.02  # heterogeneous scenarios: discordance on top of each task's change
JOINT_SUCCESS = 0.9  # share of concordant units that are joint successes (durations only)
WORKERS = (1, 2, 4, 8, 16, 32)


@dataclass(frozen=True)
class Scenario:
    """Per task: P(X = 0) and P(X = 1)."""

    base_only: np.ndarray
    cand_only: np.ndarray

    @property
    def delta(self) -> float:
        return float(np.mean(self.cand_only - self.base_only))


def heterogeneous(spread: float, overall: float = 0.0, tasks: int = TASKS) -> Scenario:
    """Tasks 0..K/2-1 at overall - spread, the rest at overall + spread, FLIP discordance on top."""
    delta = np.where(np.arange(tasks) < tasks // 2, overall - spread, overall + spread)
    return Scenario(FLIP / 2 + np.maximum(0, -delta), FLIP / 2 + np.maximum(0, delta))


def homogeneous(discordance: float, drop: float, tasks: int = TASKS) -> Scenario:
    return Scenario(np.full(tasks, (discordance + drop) / 2), np.full(tasks, (discordance - drop) / 2))


def draw(rng: np.random.Generator, scenario: Scenario, gates: int, units: int = UNITS
         ) -> tuple[np.ndarray, np.ndarray]:
    """(X, candidate success), each (gates, tasks, units)."""
    u = rng.random((gates, len(scenario.base_only), units))
    b, c = scenario.base_only[None, :, None], scenario.cand_only[None, :, None]
    x = np.where(u < b, 0.0, np.where(u < b + c, 1.0, 0.5))
    joint = (u - b - c) / np.maximum(1 - b - c, 1e-12) < JOINT_SUCCESS
    return x, (x == 1.0) | ((x == 0.5) & joint)


def round_robin(a: np.ndarray) -> np.ndarray:
    return a.transpose(0, 2, 1).reshape(a.shape[0], -1)


def plan_order(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], -1)


def round_ends(tasks: int = TASKS, units: int = UNITS) -> np.ndarray:
    return np.arange(tasks, tasks * units + 1, tasks)


def gate(x_round_robin: np.ndarray, max_drop: float, tasks: int = TASKS) -> tuple[np.ndarray, np.ndarray]:
    """The gate as shipped now (vectorised), fed its rounds."""
    units = x_round_robin.shape[1] // tasks
    return simulate_rounds(x_round_robin, round_ends(tasks, units), ALPHA, max_drop)


# -- the gates it is compared with -----------------------------------------------------------------
def shipped_gate(x: np.ndarray, max_drop: float, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """The per-episode gate of commit c4dfbf5, read in the order given: WSR predictable plug-in bets
    (running mean from 1/2, variance from 1/4), truncated at half the largest safe bet."""
    n_gates, n = x.shape
    m = (1.0 - max_drop) / 2.0
    log_alpha = math.log(1 / alpha)
    w_reg, w_ok = np.ones(n_gates), np.ones(n_gates)
    total, squares = np.full(n_gates, 0.5), np.full(n_gates, 0.25)
    decisions, used = np.zeros(n_gates, dtype=int), np.full(n_gates, n)
    live = np.ones(n_gates, dtype=bool)
    for i in range(n):
        t = i + 1
        bet = np.sqrt(2 * log_alpha / (np.maximum(squares / t, 1e-12) * t * math.log(1 + t)))
        down, up = np.minimum(bet, 0.5 / (1.0 - m)), np.minimum(bet, 0.5 / m)
        xi = x[:, i]
        w_reg = np.where(live, w_reg * (1.0 + down * (m - xi)), w_reg)
        w_ok = np.where(live, w_ok * (1.0 + up * (xi - m)), w_ok)
        squares = squares + (xi - total / t) ** 2
        total = total + xi
        reg = live & (w_reg >= 1 / alpha)
        ok = live & ~reg & (w_ok >= 1 / alpha)
        decisions[reg], decisions[ok] = 1, -1
        used[reg | ok] = t
        live &= ~(reg | ok)
        if not live.any():
            break
    return decisions, used


def beta_mixture(x: np.ndarray, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """One-sided beta-mixture SPRT on the discordant pairs (margin 0), looking after every episode:
    E = 2^(b+c+1) B(b+1, c+1) I_{1/2}(c+1, b+1) for b base-only and c candidate-only pairs."""
    b = np.cumsum(x == 0.0, axis=1)
    c = np.cumsum(x == 1.0, axis=1)
    with np.errstate(divide="ignore"):
        log_e = (b + c + 1) * math.log(2) + betaln(b + 1, c + 1) + np.log(betainc(c + 1, b + 1, 0.5))
    hit = log_e >= math.log(1 / alpha)
    found = hit.any(axis=1)
    return found.astype(int), np.where(found, hit.argmax(axis=1) + 1, x.shape[1])


def ons(x: np.ndarray, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """ONS bets on the discordant pairs' signs (+1 base-only), bet in [0, 1/2], every episode."""
    n_gates, n = x.shape
    bet, a_sum, log_w = np.zeros(n_gates), np.ones(n_gates), np.zeros(n_gates)
    done, used = np.zeros(n_gates, dtype=bool), np.full(n_gates, n)
    for i in range(n):
        s = np.where(x[:, i] == 0.0, 1.0, np.where(x[:, i] == 1.0, -1.0, 0.0))
        log_w = np.where(done, log_w, log_w + np.log1p(bet * s))
        z = s / (1 + bet * s)
        a_sum += z * z
        bet = np.clip(bet + 2 / (2 - math.log(3)) * z / a_sum, 0.0, 0.5)
        hit = ~done & (log_w >= math.log(1 / alpha))
        used[hit] = i + 1
        done |= hit
    return done.astype(int), used


# -- completion order ---------------------------------------------------------------------------------
def finish_times(rng: np.random.Generator, cand_success: np.ndarray, workers: int) -> np.ndarray:
    """Finish time of each unit dispatched in the given order to `workers` workers (gates, units)."""
    n_gates, n = cand_success.shape
    quick, slow = rng.uniform(0.3, 0.9, (n_gates, n)), 1.0 + rng.uniform(0, 0.02, (n_gates, n))
    duration = np.where(cand_success, quick, slow)
    free, out, rows = np.zeros((n_gates, workers)), np.empty((n_gates, n)), np.arange(n_gates)
    for i in range(n):
        w = free.argmin(axis=1)
        out[:, i] = free[rows, w] + duration[:, i]
        free[rows, w] = out[:, i]
    return out


def recorded_at_decision(finish: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Episodes recorded when the buffered gate reads its deciding round: every unit that finished
    by the time the last unit of that round did."""
    ready = np.maximum.accumulate(finish, axis=1)[np.arange(len(used)), used - 1]
    return (finish <= ready[:, None]).sum(axis=1)


def buffer_agrees(x: np.ndarray, order: np.ndarray, max_drop: float, decisions: np.ndarray,
                  used: np.ndarray, tasks: int = TASKS) -> bool:
    """Replay gates through RoundBuffer (the code `run` uses), records arriving in `order` (indices
    into the round-robin positions), and compare with the vectorised verdicts."""
    units = x.shape[1] // tasks
    keys = [f"s/{k}/{j}" for j in range(units) for k in range(tasks)]  # round-robin positions
    rounds = build_rounds(sorted(keys, key=lambda key: (int(key.split("/")[1]), int(key.split("/")[2]))))
    for g in range(x.shape[0]):
        base = {key: float(x[g, i] < 1.0) if x[g, i] != 0.5 else 1.0 for i, key in enumerate(keys)}
        sequential = SequentialGate(ALPHA, max_drop)
        buffer = RoundBuffer(sequential, rounds, {key: [key] for key in keys}, base)
        for i in order[g]:
            cand = 1.0 if x[g, i] == 1.0 else 0.0 if x[g, i] == 0.0 else base[keys[i]]
            if buffer.add({"key": keys[i], "success": cand == 1.0}) is not None:
                break
        want = {1: "regressed", -1: "not_worse", 0: None}[int(decisions[g])]
        if sequential.decision != want or (want is not None and sequential.decided_at != used[g]):
            return False
    return True


# -- tables ---------------------------------------------------------------------------------------------
def _rate(decisions: np.ndarray, verdict: int) -> str:
    return f"{(decisions == verdict).mean():.3f}"


def heterogeneity_table(rng: np.random.Generator, gates: int, check_gates: int = 40) -> tuple[str, float]:
    """Size with heterogeneous tasks, round-robin and plan order; returns (table, max size of the gate)."""
    rows = ["| tasks at (pp) | wrong verdict tested | shipped, round-robin | shipped, plan order | "
            "gate, any arrival order | buffer = vectorised, plan order |", "|---|---|---|---|---|---|"]
    worst = 0.0
    plan_arrival = np.array([j * TASKS + k for k in range(TASKS) for j in range(UNITS)])
    for spread in (0.0, 0.10, 0.20, 0.30):
        for margin, verdict, label in ((0.0, 1, "regressed (change 0, margin 0)"),
                                       (0.05, -1, "not worse (change -5 pp, margin 5 pp)")):
            x, _ = draw(rng, heterogeneous(spread, -margin), gates)
            rr, plan = round_robin(x), plan_order(x)
            d_rr, _ = shipped_gate(rr, margin)
            d_plan, _ = shipped_gate(plan, margin)
            d_new, used = gate(rr, margin)
            worst = max(worst, float((d_new == verdict).mean()))
            agrees = buffer_agrees(rr[:check_gates], np.tile(plan_arrival, (check_gates, 1)), margin,
                                   d_new[:check_gates], used[:check_gates])
            low, high = (round(100 * (-margin + sign * spread)) for sign in (-1, 1))
            where = f"{low:+d} / {high:+d}" if spread else f"all {low:+d}"
            rows.append(f"| {where} | {label} | {_rate(d_rr, verdict)} | {_rate(d_plan, verdict)} | "
                        f"{_rate(d_new, verdict)} | {'yes' if agrees else 'NO'} ({check_gates} gates) |")
    return "\n".join(rows), worst


def workers_table(rng: np.random.Generator, gates: int, check_gates: int = 40) -> tuple[str, float]:
    """Completion order with W workers: the shipped gate read episodes as they finished, the gate reads
    them in dispatch order (buffer). Returns (table, max size of the gate)."""
    rows = ["| scenario | workers | shipped: wrong verdict | gate: wrong verdict | gate: mean episodes "
            "recorded at its verdict (of those deciding) | buffer = vectorised |",
            "|---|---|---|---|---|---|"]
    worst = 0.0
    cases = (("homogeneous, change -5 pp, margin 5 pp (false not worse)", homogeneous(0.10, 0.05), 0.05, -1),
             ("tasks -35 / +25 pp, change -5 pp, margin 5 pp (false not worse)", heterogeneous(0.30, -0.05),
              0.05, -1),
             ("tasks -30 / +30 pp, change 0, margin 0 (false regressed)", heterogeneous(0.30), 0.0, 1))
    for label, scenario, margin, verdict in cases:
        x, cand = draw(rng, scenario, gates)
        rr, cand_rr = round_robin(x), round_robin(cand)
        d_new, used = gate(rr, margin)
        worst = max(worst, float((d_new == verdict).mean()))
        for workers in WORKERS:
            finish = finish_times(rng, cand_rr, workers)
            arrival = np.argsort(finish, axis=1, kind="stable")
            d_old, _ = shipped_gate(np.take_along_axis(rr, arrival, axis=1), margin)
            decided = d_new != 0
            recorded = recorded_at_decision(finish, used)
            mean_rec = (f"{recorded[decided].mean():.0f} (read {used[decided].mean():.0f})"
                        if decided.any() else "-")
            agrees = buffer_agrees(rr[:check_gates], arrival[:check_gates], margin, d_new[:check_gates],
                                   used[:check_gates])
            rows.append(f"| {label} | {workers} | {_rate(d_old, verdict)} | {_rate(d_new, verdict)} | "
                        f"{mean_rec} | {'yes' if agrees else 'NO'} ({check_gates} gates) |")
    return "\n".join(rows), worst


BET_CASES = ((0.10, 0.02), (0.20, 0.05), (0.02, 0.02), (0.05, 0.02), (0.05, 0.05), (0.10, 0.05),
             (0.30, 0.05), (0.30, 0.10), (0.10, 0.10))


def bets_table(rng: np.random.Generator, gates: int) -> str:
    rows = ["| discordance | true drop (pp) | shipped: power / mean episodes | beta-mixture SPRT | ONS | "
            "gate |", "|---|---|---|---|---|---|"]
    for discordance, drop in BET_CASES:
        x, _ = draw(rng, homogeneous(discordance, drop), gates)
        rr = round_robin(x)
        cells = []
        for decisions, used in (shipped_gate(rr, 0.0), beta_mixture(rr), ons(rr), gate(rr, 0.0)):
            cells.append(f"{(decisions == 1).mean():.3f} / {used.mean():.0f}")
        rows.append(f"| {discordance:g} | {100 * drop:g} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


DISCORDANCES = (0.01, 0.02, 0.05, 0.10, 0.20, 0.30)


def saved_table(rng: np.random.Generator, gates: int) -> str:
    """Share of the plan's episodes not run (one worker), gate as shipped now; in brackets the share of
    gates that stopped with 'not worse' (unchanged, margin > 0), 'regressed' (worse), or with any
    verdict (unchanged, margin 0: both verdicts are then wrong)."""
    rows = ["| discordance | unchanged, margin 0 (any verdict) | unchanged, margin 2 pp (not worse) | "
            "unchanged, margin 5 pp (not worse) | 5 pp worse, margin 0 (regressed) | "
            "10 pp worse, margin 0 (regressed) |", "|---|---|---|---|---|---|"]
    n = TASKS * UNITS
    for discordance in DISCORDANCES:
        cells = []
        for drop, margin in ((0.0, 0.0), (0.0, 0.02), (0.0, 0.05), (0.05, 0.0), (0.10, 0.0)):
            if drop > discordance:
                cells.append("-")
                continue
            decisions, used = gate(round_robin(draw(rng, homogeneous(discordance, drop), gates)[0]), margin)
            share = (decisions != 0) if drop == margin == 0 else decisions == (-1 if drop == 0 else 1)
            cells.append(f"{100 * (1 - used.mean() / n):.0f}% ({share.mean():.3f})")
        rows.append(f"| {discordance:g} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def stop_table(rng: np.random.Generator, gates: int) -> str:
    """The difference at a 'regressed' stop: naive mean vs the confidence sequence."""
    rows = ["| discordance | true change (pp) | P(regressed) | naive difference at the stop (mean) | "
            "confidence sequence at the stop (mean bounds) | P(bounds miss the truth) |",
            "|---|---|---|---|---|---|"]
    for discordance, drop in ((0.10, 0.02), (0.20, 0.05), (0.10, 0.10)):
        x, _ = draw(rng, homogeneous(discordance, drop), gates)
        rr = round_robin(x)
        decisions, used = gate(rr, 0.0)
        stopped = np.flatnonzero(decisions == 1)
        naive, lows, highs, miss = [], [], [], 0
        for g in stopped:
            seen = rr[g, :used[g]]
            naive.append(2 * seen.mean() - 1)
            sequential = SequentialGate(ALPHA, 0.0)
            sequential.update_round([(float(v >= 0.5), float(v <= 0.5), 1.0) for v in seen])
            low, high = sequential.confidence_bounds(1e-3)
            lows.append(low)
            highs.append(high)
            miss += not low <= -drop <= high
        if not stopped.size:
            continue
        rows.append(f"| {discordance:g} | {-100 * drop:g} | {len(stopped) / gates:.3f} | "
                    f"{100 * np.mean(naive):+.1f} | "
                    f"[{100 * np.mean(lows):+.1f}, {100 * np.mean(highs):+.1f}] | "
                    f"{miss / len(stopped):.3f} |")
    return "\n".join(rows)


def main_table(gates: int = 4000, seed: int = 0) -> str:
    """Every table, markdown; the last line states the largest size of the gate against 0.06."""
    start = time.perf_counter()
    rng = np.random.Generator(np.random.PCG64(seed))
    power_gates = max(200, gates // 2)
    het, worst_het = heterogeneity_table(rng, gates)
    work, worst_work = workers_table(rng, gates)
    parts = [
        f"Sequential gate (alpha {ALPHA:g}; {TASKS} tasks x {UNITS} units = {TASKS * UNITS} matched "
        f"episodes; seed {seed}; {gates} gates per size cell, {power_gates} per power cell)",
        "", "Size with heterogeneous tasks (P of the wrong verdict; 2% discordance on top of each task's "
        "change):", "", het,
        "", "Completion order with W workers (failures finish last):", "", work,
        "", "Bets, homogeneous tasks, margin 0 (power / mean episodes to the verdict or the plan's end):", "",
        bets_table(rng, power_gates),
        "", "Episodes saved (share of the plan not run, one worker; in brackets the share of gates that "
        "stopped with the verdict named):", "",
        saved_table(rng, power_gates),
        "", "The difference reported at a 'regressed' stop:", "", stop_table(rng, power_gates),
        "", f"max size of the gate: heterogeneous tasks {worst_het:.3f}, completion order with up to "
        f"{max(WORKERS)} workers {worst_work:.3f} (target <= 0.06); {time.perf_counter() - start:.0f} s",
    ]
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gates", type=int, default=4000, help="simulated gates per size cell")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(main_table(args.gates, args.seed), end="")


if __name__ == "__main__":
    main()
