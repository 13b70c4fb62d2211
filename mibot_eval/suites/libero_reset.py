"""A LIBERO trial's reset without rebuilding the scene, equal to a freshly built env's.

The release builds a new env for every trial, seeds it and hard resets it (LIBERO reloads the MJCF and
places fixtures from the global numpy RNG). With the same seed every trial of a task gets the same
model, so after the first hard reset of a task the model can stay: a soft reset (`sim.reset()`, which is
`mj_resetData`, then robosuite's `_reset_internal`) reaches the same MjData, provided the python-side
state a hard reset rebuilds is rebuilt too:

- the numpy RNG that `_reset_internal` draws from (object placements, robot init noise) is restored to
  what it was when the hard reset reached `_reset_internal`, after its model-loading draws;
- each gripper's `current_action` (robosuite integrates gripper commands into it; only a new gripper
  model, i.e. a hard reset, zeroes it).

Everything else the hard reset rebuilds is reset by `_reset_internal` itself (robots and their
controllers, observables, counters). `tests/test_libero_release_fidelity.py` checks the result against a
new env per trial on the MjData integration state, every observed image and the state, over whole
trials (libero_spatial and libero_10). Suites that ask for no hard reset at all (`hard_reset: false`)
get robosuite's own soft reset, without this.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class SceneReuse:
    """Soft resets that reproduce the last hard reset of this env (same seed, same task)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner  # the robosuite env (OffScreenRenderEnv.env)
        self._rng_state: tuple | None = None
        original = inner._reset_internal

        def reset_internal() -> None:
            if inner.hard_reset:
                self._rng_state = np.random.get_state()
            elif self._rng_state is not None:
                np.random.set_state(self._rng_state)
            original()

        inner._reset_internal = reset_internal

    @property
    def ready(self) -> bool:
        """True once a hard reset has loaded this task's scene."""
        return self._rng_state is not None

    def soft_reset(self, reset: Any) -> None:
        """Run `reset` (the wrapper's reset) as a soft reset, then zero what a new gripper would."""
        inner = self._inner
        hard = inner.hard_reset
        inner.hard_reset = False
        try:
            reset()
        finally:
            inner.hard_reset = hard
        for robot in inner.robots:
            grippers = robot.gripper.values() if isinstance(robot.gripper, dict) else [robot.gripper]
            for gripper in grippers:
                gripper.current_action = fresh_gripper_command(gripper.dof)


def fresh_gripper_command(dof: int) -> np.ndarray:
    """A new gripper model's integrated command (robosuite GripperModel.__init__)."""
    return np.zeros(dof)
