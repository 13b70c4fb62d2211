"""The sequential paired gate: an always-valid test that stops a run once its verdict is decided.

Each matched episode i (same key and protocol as in the baseline run) gives D_i = y_cand - y_base in
{-1, 0, 1}; X_i = (1 + D_i) / 2 lies in [0, 1] with mean mu = (1 + delta) / 2, delta = p_cand - p_base.
With the margin Delta = max_drop (a fraction) and m = (1 - Delta) / 2, two tests run side by side:

  regressed  rejects H0: delta >= -Delta (mu >= m) with the wealth K_t = prod (1 + l_i (m - X_i))
  not worse  rejects H0: delta <= -Delta (mu <= m) with the wealth K'_t = prod (1 + l'_i (X_i - m))

The bets l_i, l'_i are predictable (they use X_1..X_{i-1} only) and bounded so that every factor stays
positive; each wealth is then a nonnegative supermartingale under its null and, by Ville's inequality,
P(sup_t K_t >= 1/alpha) <= alpha. So the gate may look after every episode and stop at the first t at
which either wealth reaches 1/alpha, and each wrong verdict still has probability at most alpha: this
is "testing by betting" (G. Shafer, JRSS-A 184(2), 2021; I. Waudby-Smith and A. Ramdas, "Estimating
means of bounded random variables by betting", JRSS-B 86(1), 2024). The bet size is their predictable
plug-in: l_t = sqrt(2 log(1/alpha) / (s2_{t-1} t log(1 + t))), s2 the running variance estimate,
truncated to half its largest allowed value. If neither wealth reaches 1/alpha before the plan ends,
the run completes and the fixed-N paired tests of `check` decide.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

VERDICTS = ("regressed", "not_worse")
TRUNCATION = 0.5  # bets at most half of the largest bet that keeps the wealth positive
REFERENCE = ("testing by betting: Waudby-Smith & Ramdas, JRSS-B 86(1), 2024 (predictable plug-in "
             "bets); Ville's inequality makes the error <= alpha at any stopping time")


@dataclass
class SequentialGate:
    """The two wealth processes over a stream of paired differences (see the module docstring)."""

    alpha: float
    max_drop: float  # fraction, e.g. 0.05
    n: int = 0
    wealth_regressed: float = 1.0
    wealth_not_worse: float = 1.0
    decision: str | None = None
    decided_at: int | None = None
    _sum: float = 0.5  # WSR's running mean starts from 1/2 and variance from 1/4
    _sq: float = 0.25
    _history: list[float] = field(default_factory=list, repr=False)

    @property
    def threshold(self) -> float:
        return 1.0 / self.alpha

    @property
    def margin_point(self) -> float:
        return (1.0 - self.max_drop) / 2.0

    def _bet(self) -> float:
        t = self.n + 1
        variance = self._sq / t
        return math.sqrt(2 * math.log(1 / self.alpha) / (max(variance, 1e-12) * t * math.log(1 + t)))

    def update(self, candidate: float, baseline: float) -> str | None:
        """Add one matched episode (1.0 = success); returns the decision once there is one."""
        if self.decision is not None:
            return self.decision
        x = (1.0 + float(candidate) - float(baseline)) / 2.0
        m = self.margin_point
        bet = self._bet()
        down = min(bet, TRUNCATION / (1.0 - m))  # 1 + l (m - X) >= 1 - l (1 - m) > 0
        up = min(bet, TRUNCATION / m) if m > 0 else 0.0  # 1 + l (X - m) >= 1 - l m > 0
        self.wealth_regressed *= 1.0 + down * (m - x)
        self.wealth_not_worse *= 1.0 + up * (x - m)
        self.n += 1
        mean = self._sum / self.n  # the running mean before this observation (predictable)
        self._sq += (x - mean) ** 2
        self._sum += x
        self._history.append(x)
        if self.wealth_regressed >= self.threshold:
            self.decision, self.decided_at = "regressed", self.n
        elif self.wealth_not_worse >= self.threshold:
            self.decision, self.decided_at = "not_worse", self.n
        return self.decision

    def as_dict(self) -> dict[str, Any]:
        return {"test": "sequential paired betting test", "reference": REFERENCE, "alpha": self.alpha,
                "max_drop_pp": round(100 * self.max_drop, 6), "matched_episodes": self.n,
                "wealth_regressed": self.wealth_regressed, "wealth_not_worse": self.wealth_not_worse,
                "threshold": self.threshold, "decision": self.decision, "decided_at": self.decided_at}


def replay(pairs: Iterable[tuple[float, float]], alpha: float, max_drop: float) -> SequentialGate:
    """The gate after a stream of (candidate, baseline) outcomes, stopping at its decision."""
    gate = SequentialGate(alpha, max_drop)
    for candidate, baseline in pairs:
        if gate.update(candidate, baseline) is not None:
            break
    return gate


def simulate(n_gates: int, n_episodes: int, base_rate: float, drop: float, discordance: float,
             alpha: float, max_drop: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Monte-Carlo gates on synthetic paired streams, all gates at once (the same arithmetic as
    SequentialGate.update, vectorised): every episode's baseline succeeds with `base_rate`; the
    candidate loses `drop + discordance` of the episodes as failures where the baseline succeeded
    and gains `discordance` where it failed (true difference -drop). Returns (decision per gate:
    1 regressed, -1 not worse, 0 undecided; episodes each gate used)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    base = rng.random((n_gates, n_episodes)) < base_rate
    u = rng.random((n_gates, n_episodes))
    lose = base & (u < (drop + discordance) / max(base_rate, 1e-12))
    gain = ~base & (u < discordance / max(1 - base_rate, 1e-12))
    x = (1.0 + np.where(lose, 0.0, np.where(gain, 1.0, base.astype(float))) - base) / 2.0
    return _run_vectorised(x, alpha, max_drop)


def _run_vectorised(x: np.ndarray, alpha: float, max_drop: float) -> tuple[np.ndarray, np.ndarray]:
    n_gates, n_episodes = x.shape
    m = (1.0 - max_drop) / 2.0
    threshold = 1.0 / alpha
    log_alpha = math.log(1 / alpha)
    w_reg, w_ok = np.ones(n_gates), np.ones(n_gates)
    total, squares = np.full(n_gates, 0.5), np.full(n_gates, 0.25)
    decisions = np.zeros(n_gates, dtype=int)
    used = np.full(n_gates, n_episodes)
    live = np.ones(n_gates, dtype=bool)
    for i in range(n_episodes):
        t = i + 1
        bet = np.sqrt(2 * log_alpha / (np.maximum(squares / t, 1e-12) * t * math.log(1 + t)))
        down = np.minimum(bet, TRUNCATION / (1.0 - m))
        up = np.minimum(bet, TRUNCATION / m) if m > 0 else np.zeros(n_gates)
        xi = x[:, i]
        w_reg = np.where(live, w_reg * (1.0 + down * (m - xi)), w_reg)
        w_ok = np.where(live, w_ok * (1.0 + up * (xi - m)), w_ok)
        squares = squares + (xi - total / t) ** 2
        total = total + xi
        regressed = live & (w_reg >= threshold)
        not_worse = live & ~regressed & (w_ok >= threshold)
        decisions[regressed], decisions[not_worse] = 1, -1
        used[regressed | not_worse] = t
        live &= ~(regressed | not_worse)
        if not live.any():
            break
    return decisions, used
