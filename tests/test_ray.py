"""--backend ray on a private local Ray instance (loopback only): same results as one process, and a
lost simulator actor costs only its in-flight episode."""

from __future__ import annotations

import importlib.util
import json

import pytest

from mibot_eval.run.planning import RunRequest
from mibot_eval.run.runner import execute
from tests.fakes import ScriptedPolicy
from tests.parallel_fakes import write_suite
from tests.parallel_helpers import libero_request, outcome, records, reference_outcome

# not imported here: a private instance keeps Ray on loopback, which Ray reads when first imported
pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                reason="Ray is the optional extra mibot-eval[ray]")


def test_ray_run_matches_the_single_process_run(tmp_path, tiny_checkpoint) -> None:
    pytest.importorskip("libero", reason="LIBERO is installed by `make setup`")
    expected = reference_outcome()
    run_dir = execute(libero_request(tmp_path, backend="ray", ray_address="local", workers=2))
    assert outcome(records(run_dir)) == expected
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["parallel"]["backend"] == "ray" and manifest["parallel"]["workers"] == 2
    (server,) = manifest["parallel"]["policy_servers"]
    assert server.startswith("ws://127.0.0.1:")  # a policy replica actor, on loopback
    assert manifest["policy"]["kind"] == "remote" and manifest["checkpoint"]["name"] == "tiny"


def test_ray_lost_actor_costs_only_its_episode(tmp_path, fakesim, checkpoint_dir) -> None:
    checkpoint = checkpoint_dir
    suite = write_suite(tmp_path, tasks=2, episodes=2, max_steps=12, faults={
        "fake/0/1": "step:crash_once", "fake/1/0": "step:crash"})
    request = RunRequest(checkpoint=str(checkpoint), suites=[str(suite)], video="none",
                         results_dir=tmp_path / "results", backend="ray", ray_address="local",
                         workers=2)
    run_dir = execute(request, policy=ScriptedPolicy())  # served from the driver to the actors
    recs = records(run_dir)
    assert sorted(recs) == [f"fake/{t}/{i}" for t in range(2) for i in range(2)]
    assert recs["fake/0/1"]["status"] == "ok" and recs["fake/0/1"]["metrics"]["attempts"] == 2
    assert recs["fake/1/0"]["status"] == "error" and "actor lost" in recs["fake/1/0"]["error"]
    assert recs["fake/0/0"]["status"] == recs["fake/1/1"]["status"] == "ok"
    assert json.loads((run_dir / "manifest.json").read_text())["parallel"]["lost"] == 3


def test_unreachable_ray_address_is_one_line(tmp_path) -> None:
    from mibot_eval.errors import UserError
    from mibot_eval.run.backends.options import validate
    from mibot_eval.run.backends.ray import RayBackend

    request = RunRequest(checkpoint="tiny", backend="ray", ray_address="127.0.0.1:1", workers=1)
    with pytest.raises(UserError, match="no Ray cluster answers at 127.0.0.1:1"):
        with RayBackend(request, None, validate(request), None):
            pass
    bad = RunRequest(checkpoint="tiny", backend="ray", ray_address="nowhere", workers=1)
    with pytest.raises(UserError, match="--ray-address must be"):
        with RayBackend(bad, None, validate(bad), None):
            pass
