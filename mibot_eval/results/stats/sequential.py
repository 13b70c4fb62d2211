"""The sequential paired gate: one e-process per task, combined by product at the end of every round.

Data. A matched unit (same suite, key and protocol hash as in the baseline run; SimplerEnv WidowX's
deterministic copies form one unit whose value is the mean success of its copies, on both sides)
gives X = (1 + c - b) / 2 in [0, 1], c and b the candidate's and the baseline's unit success (an
errored episode is a failure). Within task k the units are independent draws with E X = mu_k =
(1 + delta_k) / 2. The gate's estimand is the run's pooled paired difference over the plan's
matched units, delta = sum_k w_k delta_k, w_k = n_k / N (n_k planned matched units of task k): the
number `check` pools per run, so tasks that gain and tasks that lose net out.

Order (gating.py). Units are read in rounds fixed before the run: every round holds units of every
task, about n_k / R of task k (R = min_k n_k; LIBERO: trial j of every task). The gate reads them in
that order whatever order they finish in (an early finisher waits in a buffer), and it looks only
at the end of a round.

Test. With the margin Delta (`--max-drop`, a fraction) and m = (1 - Delta) / 2, two tests run:

  regressed  H0: delta >= -Delta,  E_t  = sum_g pi_g prod_{i <= t} (1 + l_g (m - X_i))^{a_i}
  not worse  H0: delta <= -Delta,  E'_t = sum_g pi_g prod_{i <= t} (1 + l'_g (X_i - m))^{a_i}

with constant bets l_g = f_g / (1 - m), l'_g = f_g / m (f_g in (0, 1): a fraction of the largest bet
that keeps every factor positive), prior weights pi_g, and exponents a_i = c_r w_k / cnt_rk <= 1 for
a unit of task k in round r (cnt_rk units of task k in round r, c_r = min_k cnt_rk / w_k; all 1 when
tasks have equal sizes). The product over task k's factors is that task's own e-process (a test
supermartingale for mu_k >= m); the gate multiplies the tasks' e-processes. Validity for the run's
null, whatever the tasks' own changes: for a fixed bet l and round r, given the past,
  E prod_{i in r} (1 + l (m - X_i))^{a_i} <= prod_k (1 + l (m - mu_k))^{c_r w_k}     (y^a concave, a <= 1)
                                          <= (1 + l (m - sum_k w_k mu_k))^{c_r} <= 1  (log concave)
under H0, so each component and their mixture are nonnegative supermartingales over rounds and, by
Ville's inequality, reach 1/alpha with probability at most alpha: each wrong verdict has probability
at most alpha at any round the run stops at. Mid-round the product is not bounded (a round's first
tasks may be the ones that lost), hence the looks at round ends only; and the per-episode test this
replaces (one bet per episode in the order episodes finished) tested "every episode is no worse",
which heterogeneous tasks, plan order or completion order break. The product, not e-BH / e-Holm:
those combine per-task nulls and say *which* tasks changed (`check`'s per-task table answers that);
the gate's verdict is about the run.

Bets. A mixture over constant bets is the beta-mixture SPRT of the discordant pairs generalised to a
margin and to fractional units (with Delta = 0 a concordant unit's factor is 1 and a discordant one's
1 +/- l/2). The prior `bet_prior` is log-uniform over f in [F_LOW, F_HIGH]: the smallest bets carry
small drops seen over thousands of units, the largest stop a large drop within one or two rounds
(benchmarks/sequential_calibration.py compares it with the shipped per-episode plug-in bets, the
beta-mixture SPRT and ONS bets on discordant pairs).

Confidence sequence. The same two tests at every null value d (m_d = (1 + d) / 2) give, at every
round, an upper bound U = min{d : the regressed test rejects delta >= d} and a lower bound
L = max{d : the not-worse test rejects delta <= d}; each holds with probability >= 1 - alpha
simultaneously over all rounds, so also at the round the run stopped (the naive difference at an
early stop overstates the drop). "regressed" is U <= -Delta, "not worse" L >= -Delta. Both wealths are
monotone in d (the factor's derivative in m_d has one sign for every X), so bisection finds U, L.

References: G. Shafer, "Testing by betting", JRSS-A 184(2), 2021; V. Vovk and R. Wang, "E-values:
calibration, combination and applications", Ann. Statist. 49(3), 2021 (products of e-values);
S. Howard, A. Ramdas, J. McAuliffe and J. Sekhon, "Time-uniform, nonparametric, nonasymptotic
confidence sequences", Ann. Statist. 49(2), 2021 (mixtures, Ville's inequality); I. Waudby-Smith and
A. Ramdas, "Estimating means of bounded random variables by betting", JRSS-B 86(1), 2024; J. Spertus
and P. Stark, "Sweeter than SUITE: supermartingale stratified union-intersection tests of elections",
E-Vote-ID 2022 (stratified betting). scipy and statsmodels have no anytime-valid test, so the
wealths are computed here (scipy's logsumexp sums the mixture).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import logsumexp

VERDICTS = ("regressed", "not_worse", "inconclusive")
F_LOW, F_HIGH, F_POINTS = 0.1, 0.99, 40
METHOD = ("sequential paired test by betting: one e-process per task (mixture of constant bets, "
          "log-uniform prior), combined by product at round ends; confidence sequence at the stop")
REFERENCE = ("Shafer, JRSS-A 184(2) 2021; Vovk & Wang, Ann. Statist. 49(3) 2021; Howard et al., Ann. "
             "Statist. 49(2) 2021; Waudby-Smith & Ramdas, JRSS-B 86(1) 2024; Ville's inequality: each "
             "wrong verdict has probability <= alpha at any round the run stops at")
ASSUMPTIONS = ("units of one task are independent and exchangeable in the fixed dispatch order; the "
               "candidate and the baseline ran the same protocol (same key = same scene and seeds); "
               "the gate reads units in dispatch order and looks only at the end of a round")


@dataclass(frozen=True)
class BetPrior:
    """The mixture's bets as fractions f of the largest bet, with their log prior weights."""

    fractions: np.ndarray
    log_weights: np.ndarray


def bet_prior(points: int = F_POINTS, low: float = F_LOW, high: float = F_HIGH) -> BetPrior:
    """Log-uniform over f in [low, high]: equal weight per decade of bet size."""
    fractions = np.geomspace(low, high, points)
    return BetPrior(fractions, np.full(points, -math.log(points)))


def round_exponents(counts: Mapping[Any, int], weights: Mapping[Any, float]) -> dict[Any, float]:
    """Per task, the exponent a of each of its units in one round: c w_k / cnt_k with
    c = min_k cnt_k / w_k (so the largest is 1). counts: units of each task in the round (every task
    must be present); weights: w_k = n_k / N."""
    if set(counts) != set(weights) or min(counts.values(), default=0) < 1:
        raise ValueError("every task must have a unit in every round")
    scale = min(counts[k] / weights[k] for k in counts)
    return {k: min(1.0, scale * weights[k] / counts[k]) for k in counts}


def log_wealths(values: np.ndarray, masses: np.ndarray, null_delta: float, prior: BetPrior
                ) -> tuple[float, float]:
    """(log E of the regressed test, log E' of the not-worse test) at the null delta = null_delta for
    accumulated exponent masses on unit values X (see the module docstring)."""
    m = (1.0 + null_delta) / 2.0
    f = prior.fractions[:, None]
    down = np.log1p(f * (m - values[None, :]) / (1.0 - m)) @ masses if m < 1 else np.full(len(f), -np.inf)
    up = np.log1p(f * (values[None, :] - m) / m) @ masses if m > 0 else np.full(len(f), -np.inf)
    return float(logsumexp(prior.log_weights + down)), float(logsumexp(prior.log_weights + up))


@dataclass
class SequentialGate:
    """The combined e-processes over rounds of matched units (see the module docstring)."""

    alpha: float
    max_drop: float  # fraction, e.g. 0.05
    prior: BetPrior = field(default_factory=bet_prior, repr=False)
    n: int = 0  # units read
    rounds: int = 0
    decision: str | None = None  # "regressed" / "not_worse" once decided
    decided_at: int | None = None  # units read when decided
    decided_round: int | None = None
    log_wealth_regressed: float = 0.0
    log_wealth_not_worse: float = 0.0
    diff_sum: float = 0.0  # sum of c - b over the units read
    _mass: dict[float, float] = field(default_factory=dict, repr=False)

    @property
    def threshold(self) -> float:
        return 1.0 / self.alpha

    @property
    def verdict(self) -> str:
        """regressed / not_worse once decided, else inconclusive."""
        return self.decision or "inconclusive"

    @property
    def wealth_regressed(self) -> float:
        return math.exp(min(self.log_wealth_regressed, 700.0))

    @property
    def wealth_not_worse(self) -> float:
        return math.exp(min(self.log_wealth_not_worse, 700.0))

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        values = np.array(sorted(self._mass))
        return values, np.array([self._mass[v] for v in values])

    def update_round(self, units: Sequence[tuple[float, float, float]]) -> str | None:
        """Read one complete round: (candidate, baseline, exponent) per unit, successes in [0, 1].
        Returns the decision once there is one (later rounds are then ignored)."""
        if self.decision is not None:
            return self.decision
        for candidate, baseline, exponent in units:
            x = round((1.0 + float(candidate) - float(baseline)) / 2.0, 12)
            self._mass[x] = self._mass.get(x, 0.0) + float(exponent)
            self.diff_sum += float(candidate) - float(baseline)
        self.n += len(units)
        self.rounds += 1
        values, masses = self._arrays()
        self.log_wealth_regressed, self.log_wealth_not_worse = log_wealths(
            values, masses, -self.max_drop, self.prior)
        bar = math.log(self.threshold)
        if self.log_wealth_regressed >= bar:
            self.decision = "regressed"
        elif self.log_wealth_not_worse >= bar:
            self.decision = "not_worse"
        if self.decision is not None:
            self.decided_at, self.decided_round = self.n, self.rounds
        return self.decision

    def confidence_bounds(self, tolerance: float = 1e-4) -> tuple[float, float]:
        """(L, U): the confidence sequence for delta after the rounds read (fractions; each bound
        one-sided at level 1 - alpha, valid at any round)."""
        if not self._mass:
            return -1.0, 1.0
        values, masses = self._arrays()
        bar = math.log(self.threshold)

        def rejects_above(d: float) -> bool:  # regressed test rejects delta >= d
            return log_wealths(values, masses, d, self.prior)[0] >= bar

        def rejects_below(d: float) -> bool:  # not-worse test rejects delta <= d
            return log_wealths(values, masses, d, self.prior)[1] >= bar

        edge = 1.0 - 1e-9
        return (_bisect(rejects_below, -edge, edge, tolerance, want_last_true=True),
                _bisect(rejects_above, -edge, edge, tolerance, want_last_true=False))

    @property
    def observed_difference(self) -> float | None:
        """Mean c - b over the units read (biased away from 0 at an early stop: show the bounds)."""
        return self.diff_sum / self.n if self.n else None

    def as_dict(self) -> dict[str, Any]:
        low, high = self.confidence_bounds()
        observed = self.observed_difference
        return {
            "test": METHOD, "reference": REFERENCE, "assumptions": ASSUMPTIONS,
            "bets": f"log-uniform prior over {len(self.prior.fractions)} bet fractions in "
                    f"[{self.prior.fractions[0]:g}, {self.prior.fractions[-1]:g}]",
            "alpha": self.alpha, "max_drop_pp": round(100 * self.max_drop, 6),
            "matched_units": self.n, "rounds": self.rounds,
            "wealth_regressed": self.wealth_regressed, "wealth_not_worse": self.wealth_not_worse,
            "threshold": self.threshold, "verdict": self.verdict, "decision": self.decision,
            "decided_at": self.decided_at, "decided_round": self.decided_round,
            "confidence_sequence_pp": [round(100 * low, 2), round(100 * high, 2)],
            "confidence_sequence": f"each bound one-sided {100 * (1 - self.alpha):g}%, valid at any round",
            "observed_difference_pp": None if observed is None else round(100 * observed, 2),
        }


def _bisect(predicate: Any, low: float, high: float, tolerance: float, want_last_true: bool) -> float:
    """The boundary of a monotone predicate on [low, high]: the last d where it holds (it holds below)
    or the first (it holds above); the interval's end when it holds nowhere."""
    if want_last_true:
        if not predicate(low):
            return low
        if predicate(high):
            return high
    else:
        if not predicate(high):
            return high
        if predicate(low):
            return low
    while high - low > tolerance:
        mid = (low + high) / 2
        if predicate(mid) == want_last_true:
            low = mid
        else:
            high = mid
    return low if want_last_true else high


def replay(rounds: Iterable[Sequence[tuple[float, float, float]]], alpha: float, max_drop: float
           ) -> SequentialGate:
    """The gate after a sequence of rounds, stopping at its decision."""
    gate = SequentialGate(alpha, max_drop)
    for units in rounds:
        if gate.update_round(units) is not None:
            break
    return gate


# -- vectorised Monte Carlo (benchmarks and tests) ---------------------------------------------------
def simulate_rounds(x: np.ndarray, round_ends: np.ndarray, alpha: float, max_drop: float,
                    exponents: np.ndarray | None = None, prior: BetPrior | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Many gates at once, the same arithmetic as SequentialGate: x (gates, units) in dispatch order
    with values on a finite grid, round_ends the number of units read after each round (increasing,
    the last = units), exponents per unit (default 1). Returns (decision per gate: 1 regressed,
    -1 not worse, 0 inconclusive; units read when decided, else all)."""
    prior = prior or bet_prior()
    n_gates, n_units = x.shape
    a = np.ones(n_units) if exponents is None else np.asarray(exponents, dtype=float)
    values, codes = np.unique(np.round(x, 12), return_inverse=True)
    codes = codes.reshape(x.shape)
    mass = np.zeros((n_gates, len(round_ends), len(values)))
    starts = np.concatenate([[0], round_ends[:-1]])
    for r, (lo, hi) in enumerate(zip(starts, round_ends, strict=True)):
        for v in range(len(values)):
            mass[:, r, v] = ((codes[:, lo:hi] == v) * a[lo:hi]).sum(axis=1)
    mass = np.cumsum(mass, axis=1)
    m = (1.0 - max_drop) / 2.0
    f = prior.fractions[None, :]
    down = np.log1p(f * (m - values[:, None]) / (1.0 - m))  # (values, bets)
    up = np.log1p(f * (values[:, None] - m) / m)
    bar = math.log(1.0 / alpha)
    reg = logsumexp(prior.log_weights + mass @ down, axis=2) >= bar  # (gates, rounds)
    ok = logsumexp(prior.log_weights + mass @ up, axis=2) >= bar
    first_reg = np.where(reg.any(axis=1), reg.argmax(axis=1), len(round_ends))
    first_ok = np.where(ok.any(axis=1), ok.argmax(axis=1), len(round_ends))
    decisions = np.where(first_reg <= first_ok, np.where(first_reg < len(round_ends), 1, 0), -1)
    first = np.minimum(first_reg, first_ok)
    used = np.where(first < len(round_ends), round_ends[np.minimum(first, len(round_ends) - 1)], n_units)
    return decisions, used


def simulate(n_gates: int, n_episodes: int, base_rate: float, drop: float, discordance: float,
             alpha: float, max_drop: float, seed: int = 0, tasks: int = 40
             ) -> tuple[np.ndarray, np.ndarray]:
    """Monte-Carlo gates on synthetic paired streams of `tasks` equal tasks read in rounds (one unit
    of every task per round): every episode's baseline succeeds with `base_rate`; the candidate loses
    `drop + discordance` of the episodes as failures where the baseline succeeded and gains
    `discordance` where it failed (true difference -drop). Returns simulate_rounds' (decisions,
    units read)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    base = rng.random((n_gates, n_episodes)) < base_rate
    u = rng.random((n_gates, n_episodes))
    lose = base & (u < (drop + discordance) / max(base_rate, 1e-12))
    gain = ~base & (u < discordance / max(1 - base_rate, 1e-12))
    x = (1.0 + np.where(lose, 0.0, np.where(gain, 1.0, base.astype(float))) - base) / 2.0
    size = min(tasks, n_episodes)
    ends = np.append(np.arange(size, n_episodes, size), n_episodes)
    ends = ends[np.concatenate([[True], np.diff(ends) > 0])]
    return simulate_rounds(x, ends, alpha, max_drop)
