"""Power of the regression gates on a LIBERO-sized plan, by Monte-Carlo simulation (one run).

    python benchmarks/gate_power.py [--gates 1000] [--episodes 2000] [--base-rate 0.95]
                                    [--noise 0.01] [--alpha 0.05] [--seed 0]

Synthetic paired outcome streams (results/sequential.simulate): every episode's baseline succeeds
with --base-rate; the candidate turns `drop + noise` of the episodes into failures where the baseline
succeeded and `noise` into successes where it failed (true drop = drop). For drops of 0/2/5/10/20 pp
it prints, per gate: the share of gates that declared a regression (power; at drop 0 the false-alarm
rate) and the mean episodes it needed. All three test H0 "no drop" (max_drop 0) at level alpha:
  sequential  the always-valid paired betting test of `run --gate-against`, stopping when decided
  paired      exact McNemar on all the plan's matched episodes (the fixed-N paired `check`)
  unpaired    Newcombe interval for two independent samples (the previous `check`)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mibot_eval.results.stats.paired import p_worse_paired  # noqa: E402
from mibot_eval.results.stats.rates import newcombe_interval, z_one_sided  # noqa: E402
from mibot_eval.results.stats.sequential import simulate  # noqa: E402

DROPS_PP = (0, 2, 5, 10, 20)


def fixed_n_power(args: argparse.Namespace, drop: float) -> tuple[float, float]:
    """(paired power, unpaired power) at the full plan size, same synthetic model."""
    rng = np.random.Generator(np.random.PCG64(args.seed + 1000 + int(drop * 1000)))
    paired = unpaired = 0
    z = z_one_sided(args.alpha)
    for _ in range(args.gates):
        base = rng.random(args.episodes) < args.base_rate
        u = rng.random(args.episodes)
        lose = base & (u < (drop + args.noise) / args.base_rate)
        gain = ~base & (u < args.noise / (1 - args.base_rate))
        cand = np.where(lose, False, np.where(gain, True, base))
        b, c = int((base & ~cand).sum()), int((~base & cand).sum())
        paired += p_worse_paired(b, c, args.episodes) < args.alpha
        upper = newcombe_interval(int(cand.sum()), args.episodes, int(base.sum()), args.episodes, z)[1]
        unpaired += upper < 0  # the one-sided upper bound of cand - base below 0
    return paired / args.gates, unpaired / args.gates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gates", type=int, default=1000)
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--base-rate", type=float, default=0.95)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"{args.gates} simulated gates per drop; plan of {args.episodes} matched episodes; baseline "
          f"{100 * args.base_rate:g}%, noise flips {100 * args.noise:g}% each way; alpha {args.alpha:g}\n")
    print("| true drop (pp) | sequential: P(regressed) | sequential: mean episodes | paired fixed-N: "
          "P(regressed) | unpaired fixed-N: P(regressed) |")
    print("|---|---|---|---|---|")
    for drop_pp in DROPS_PP:
        drop = drop_pp / 100
        decisions, used = simulate(args.gates, args.episodes, args.base_rate, drop, args.noise,
                                   args.alpha, 0.0, seed=args.seed + drop_pp)
        paired, unpaired = fixed_n_power(args, drop)
        print(f"| {drop_pp} | {(decisions == 1).mean():.3f} | {used.mean():.0f} | {paired:.3f} | "
              f"{unpaired:.3f} |", flush=True)


if __name__ == "__main__":
    main()
