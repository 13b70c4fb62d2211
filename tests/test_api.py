"""`mibot_eval.evaluate`: the Python API the CLI's `run` also uses."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mibot_eval
from mibot_eval.errors import UserError
from tests.parallel_fakes import write_suite


class ConstantPolicy:
    """The smallest policy there is: only `infer` (no describe, no supports_prefix). It counts its
    calls on the class: an instance's attributes are its parameters, i.e. its identity."""

    calls = 0

    def __init__(self) -> None:
        self.value = 0.0

    def infer(self, requests):
        type(self).calls += len(requests)
        return [np.full((10, 32), self.value, dtype=np.float32) for _ in requests]


def test_evaluate_with_a_python_policy_object(tmp_path, fakesim) -> None:
    suite = write_suite(tmp_path, tasks=2, episodes=3, max_steps=12)
    policy = ConstantPolicy()
    summary = mibot_eval.evaluate(policy, suites=[str(suite)], tasks=[1], episodes=2,
                                  results_dir=tmp_path / "results", name="my-policy", progress=False)
    assert summary.checkpoint == "my-policy" and summary.run_dir.name.startswith("my-policy__")
    fake = summary.suites["fake"]
    assert fake.trials == 2 and fake.rate.value == 0.0 and fake.errors == 0
    manifest = json.loads((summary.run_dir / "manifest.json").read_text())
    assert manifest["checkpoint"]["source"] == "python:tests.test_api.ConstantPolicy"
    assert manifest["policy"] == {"kind": "python", "class": "ConstantPolicy"}
    calls = policy.calls
    again = mibot_eval.evaluate(policy, suites=[str(suite)], tasks=[1], episodes=2,
                                results_dir=tmp_path / "results", name="my-policy", progress=False)
    assert policy.calls == calls and again.run_dir == summary.run_dir  # resumed: nothing left to run


def test_evaluate_refuses_what_is_not_a_policy_and_unknown_options(tmp_path) -> None:
    with pytest.raises(UserError, match="infer"):
        mibot_eval.evaluate(object(), suites=["libero_spatial"])
    with pytest.raises(UserError, match="unknown option"):
        mibot_eval.evaluate("tiny", suites=["libero_spatial"], bogus=1)


def test_evaluate_the_tiny_checkpoint_on_real_libero(tmp_path, tiny_release_like_checkpoint) -> None:
    pytest.importorskip("libero", reason="LIBERO is installed by `make setup`")
    summary = mibot_eval.evaluate("tiny-release-like", suites=["libero_spatial"], tasks=[0], episodes=1,
                                  results_dir=tmp_path, max_steps=12, progress=False)
    suite = summary.suites["libero_spatial"]
    assert suite.trials == 1 and suite.partial  # 1 of 500 episodes
    (record,) = summary.records
    assert record["metrics"]["queries"] == 2 and len(record["metrics"]["request_seeds"]) == 2
    assert summary.manifest["policy"]["kind"] == "hf"
