"""The single writer of a run's results: every finished episode is appended durably (one fsynced
line) and counted on the progress bar; too many errors in a row stop the run. A rerun of an episode
recorded as an error (`run --retry-errors`) is appended with `replaces` naming the old record; the
latest line for a key is its record (results/store.py; the record: results/records.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mibot_eval.errors import UserError
from mibot_eval.results.records import EpisodeRecord, episode_record
from mibot_eval.results.store import RunStore
from mibot_eval.types import EpisodeResult

MAX_CONSECUTIVE_ERRORS = 5


def _success_text(successes: int, done: int) -> str:
    return f"success {successes}/{done}" + (f" ({100 * successes / done:.1f}%)" if done else "")


class Ledger:
    """Records results of any backend; `contexts` maps suite -> the run context of its records."""

    def __init__(
        self, store: RunStore, contexts: dict[str, dict[str, Any]], total: int,
        done: list[EpisodeRecord], desc: str, progress: bool = True,
        on_record: Callable[[EpisodeRecord], None] | None = None,
        replaces: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """done: the records of this run's planned episodes already on disk (a resumed run);
        on_record: called with each record once it is on disk (it may stop the run by raising);
        replaces: key -> the errored record a rerun of that episode replaces."""
        from tqdm import tqdm

        self.store, self.contexts, self.on_record = store, contexts, on_record
        self.replaces = replaces or {}
        self.successes = sum(1 for r in done if r.get("success") is True)
        self.errors = sum(1 for r in done if r.get("status") == "error")
        self.consecutive_errors = 0
        self.bar = tqdm(total=total, initial=len(done), desc=desc, unit="ep", dynamic_ncols=True,
                        disable=not progress)
        self.bar.set_postfix_str(self._postfix())

    def _postfix(self) -> str:
        return _success_text(self.successes, self.bar.n) + (f", errors {self.errors}" if self.errors else "")

    def record(self, result: EpisodeResult) -> None:
        record = episode_record(result, self.contexts[result.spec.suite])
        if result.spec.key in self.replaces:
            record["replaces"] = self.replaces[result.spec.key]
        self.store.append(record)
        self.successes += int(result.success)
        is_error = result.status == "error"
        self.errors += int(is_error)
        self.consecutive_errors = self.consecutive_errors + 1 if is_error else 0
        self.bar.update(1)
        self.bar.set_postfix_str(self._postfix())
        if self.consecutive_errors >= MAX_CONSECUTIVE_ERRORS:
            raise UserError(
                f"{self.consecutive_errors} episodes in a row failed with errors; last: {result.error}"
            )
        if self.on_record is not None:
            self.on_record(record)

    def close(self) -> None:
        self.bar.close()
