"""Which simulator runs which episodes: contiguous, in-order trial ranges of one task.

Why ranges: an adapter reuses one env per task across its trials (building one costs seconds).
Every trial is independent of the others (LIBERO re-seeds before each trial's reset, as the release's
fresh env per trial does), so a range may start at any trial at no extra cost: handing out whole tasks
only saves env builds.

`WorkQueue` (workers, local or Ray): idle workers take the next whole task in official order; when no
task is left, an idle worker steals the back half of the longest range still queued on another
worker (one env build, instead of idling). A worker that dies hands its remaining range (retried
episode first) back to the front of the queue.

`partition` (shards): the official episode order cut into N contiguous blocks of near-equal size;
a cut is moved to the nearest task boundary when that changes the block size by at most 10%, so
shards mostly start at trial 0.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable

from mibot_eval.types import EpisodeSpec


def task_key(spec: EpisodeSpec) -> tuple[str, int]:
    return (spec.suite, spec.task_id)


def group_by_task(specs: Iterable[EpisodeSpec]) -> list[list[EpisodeSpec]]:
    """Consecutive episodes of the same (suite, task), in the given order."""
    groups: list[list[EpisodeSpec]] = []
    for spec in specs:
        if groups and task_key(groups[-1][-1]) == task_key(spec):
            groups[-1].append(spec)
        else:
            groups.append([spec])
    return groups


def partition(specs: list[EpisodeSpec], count: int) -> list[list[EpisodeSpec]]:
    """Cut `specs` (official order) into `count` contiguous blocks; deterministic in its inputs."""
    if count < 1:
        raise ValueError("count must be >= 1")
    total = len(specs)
    starts = [0]
    running, boundaries = 0, []
    for group in group_by_task(specs):
        running += len(group)
        boundaries.append(running)
    tolerance = max(0, int(0.1 * total / count))
    for i in range(1, count):
        target = round(i * total / count)
        nearest = min(boundaries, key=lambda b: (abs(b - target), b)) if boundaries else target
        cut = nearest if abs(nearest - target) <= tolerance else target
        starts.append(min(max(cut, starts[-1]), total))
    starts.append(total)
    return [specs[a:b] for a, b in zip(starts, starts[1:], strict=False)]


class WorkQueue:
    """Hands out episodes to workers as in-order ranges of one task (see the module docstring)."""

    def __init__(self, specs: Iterable[EpisodeSpec], steal: bool = True) -> None:
        self.units: deque[deque[EpisodeSpec]] = deque(deque(g) for g in group_by_task(specs))
        self.assigned: dict[Hashable, deque[EpisodeSpec]] = {}
        self.steal = steal
        self.steals = 0

    def __len__(self) -> int:
        return sum(map(len, self.units)) + sum(map(len, self.assigned.values()))

    def next(self, worker: Hashable) -> EpisodeSpec | None:
        """The next episode for `worker`, or None when nothing is left to give it."""
        mine = self.assigned.get(worker)
        if mine:
            return mine.popleft()
        if self.units:
            unit = self.units.popleft()
            self.assigned[worker] = unit
            return unit.popleft()
        if self.steal:
            victims = [(len(q), w) for w, q in self.assigned.items() if w != worker and len(q) >= 2]
            if victims:
                _, victim = max(victims, key=lambda item: item[0])
                queue = self.assigned[victim]
                taken = deque(queue.pop() for _ in range(len(queue) // 2))
                taken.reverse()
                self.assigned[worker] = taken
                self.steals += 1
                return taken.popleft()
        return None

    def give_back(self, worker: Hashable, first: EpisodeSpec | None = None) -> None:
        """A worker is gone: its remaining range (with `first` in front) goes to the queue's front."""
        remaining = self.assigned.pop(worker, deque())
        if first is not None:
            remaining.appendleft(first)
        if remaining:
            self.units.appendleft(remaining)
