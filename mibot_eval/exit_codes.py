"""The exit codes of every mibot-eval command, in one place (README: "Exit codes").

A CI job acts on these: `run` and `check` share them, so `run --gate-against` and `check` mean the
same thing by the same number. When several apply, the most severe wins in the order of
`PRECEDENCE` (a regression is reported before errored episodes, which come before an inconclusive
verdict).
"""

from __future__ import annotations

OK = 0
"""run: every selected episode recorded without error; check/gate: not worse (shown within the margin)."""
REGRESSED = 1
"""The gate found a significant drop (check, or run --gate-against)."""
REFUSED = 2
"""Refused before doing anything: bad input, a missing prerequisite, protocols that differ."""
INCONCLUSIVE = 3
"""The gate could neither show a drop nor show that there is none: the run was too small to tell."""
ERRORED_EPISODES = 4
"""run finished, but some episodes are recorded as errors (they count as failures; --retry-errors)."""
INCOMPLETE = 5
"""merge: some shards are missing or incomplete; the merged folder lacks episodes of the plan."""
INTERRUPTED = 130
"""Ctrl-C (SIGTERM gives 143): finished episodes are saved; rerun the same command to resume."""

PRECEDENCE = (REFUSED, REGRESSED, ERRORED_EPISODES, INCOMPLETE, INCONCLUSIVE, OK)

VERDICT_CODES = {"regressed": REGRESSED, "not_worse": OK, "inconclusive": INCONCLUSIVE}


def for_verdict(verdict: str) -> int:
    """The exit code of a gate verdict: 'regressed', 'not_worse' or 'inconclusive'."""
    try:
        return VERDICT_CODES[verdict]
    except KeyError:
        raise ValueError(f"unknown gate verdict {verdict!r}") from None


def most_severe(*codes: int) -> int:
    """The code to exit with when several conditions hold at once (see PRECEDENCE)."""
    ranked = [c for c in PRECEDENCE if c in codes]
    return ranked[0] if ranked else max(codes, default=OK)


def help_line() -> str:
    """One line listing the codes, for `--help` epilogs (README: "Exit codes")."""
    names = [(value, name.lower().replace("_", " ")) for name, value in globals().items()
             if name.isupper() and isinstance(value, int)]
    return "exit codes: " + ", ".join(f"{v} {n}" for v, n in sorted(names)) + " (README: Exit codes)"
