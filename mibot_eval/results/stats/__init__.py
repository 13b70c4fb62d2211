"""The maths of results: pure functions on counts, rates and intervals; no records, no files.

  rates.py        Rate (successes over trials) with its Clopper-Pearson interval; Wilson, Newcombe
  intervals.py    Clopper-Pearson bounds, MOVER sums of rates, Tango's paired interval, p-values
                  that invert an interval
  exact.py        exact unconditional margin tests, paired and unpaired, and their power
  differences.py  one comparison's difference, interval, one-sided margin tests, detectable drop
  paired.py       matched pairs' 2x2 table and its paired test
  sequential.py   the sequential paired gate (testing by betting) and its simulation
  holm.py         Holm's step-down adjustment; bootstrap.py: seeded stratified bootstrap

May import: numpy, scipy, statsmodels; nothing else of mibot_eval.
"""
