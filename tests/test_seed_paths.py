"""The release seed reaches the policy unchanged on every path: in process, --workers, the policy
server and Ray; and every episode record lists the seed of each of its requests."""

from __future__ import annotations

import importlib.util
import threading

import numpy as np
import pytest

from mibot_eval.config import load_suite
from mibot_eval.policy.seed import release_seed
from mibot_eval.run.planning import RunRequest
from mibot_eval.run.runner import execute
from mibot_eval.types import Observation, PolicyRequest
from tests.fakes import ScriptedPolicy
from tests.parallel_fakes import write_suite
from tests.parallel_helpers import records

pytest.importorskip("msgpack", reason="worker pipes speak msgpack: pip install 'mibot-eval[serve]'")


class SeedRecordingPolicy(ScriptedPolicy):
    """Remembers (instruction, state bytes) -> the seed each request carried."""

    robot_types = {"libero_all"}

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[Observation, int | None]] = []
        self.lock = threading.Lock()

    def infer(self, requests):
        with self.lock:
            self.seen.extend((r.observation, r.seed) for r in requests)
        return super().infer(requests)


def _run(tmp_path, suite, policy, **kw):
    request = RunRequest(checkpoint=str(tmp_path / "ckpt"), suites=[str(suite)], video="none",
                         results_dir=tmp_path / "results", **kw)
    return records(execute(request, policy=policy))


@pytest.fixture()
def fake_suite(tmp_path, fakesim):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text('{"model_type": "mibot"}')
    return write_suite(tmp_path, tasks=2, episodes=2, max_steps=12)


def _check(policy: SeedRecordingPolicy, recs: dict, suite_path) -> list[int]:
    rule = load_suite(str(suite_path)).request_seed
    assert policy.seen and all(seed is not None for _, seed in policy.seen)
    for observation, seed in policy.seen:  # what arrived is what the release client would send
        assert seed == release_seed(observation, "libero_all", rule)
    recorded = sorted(s for r in recs.values() for s in r["metrics"]["request_seeds"])
    assert recorded == sorted(seed for _, seed in policy.seen)  # one per request, none lost
    return recorded


def test_in_process_and_workers_send_the_same_release_seeds(tmp_path, fake_suite) -> None:
    one = SeedRecordingPolicy()
    single = _check(one, _run(tmp_path, fake_suite, one, run_name="single"), fake_suite)
    many = SeedRecordingPolicy()
    workers = _check(many, _run(tmp_path, fake_suite, many, workers=2, run_name="workers"), fake_suite)
    assert single == workers


def test_the_policy_server_passes_the_clients_seed_to_the_model() -> None:
    pytest.importorskip("websockets", reason="the serve extra")
    from mibot_eval.serving.client import RemotePolicy
    from mibot_eval.serving.server import PolicyServer

    behind = SeedRecordingPolicy()
    server = PolicyServer(behind, {"name": "s", "hash": "sha256:0"}, port=0)
    url = server.start_in_thread()
    try:
        rng = np.random.default_rng(0)
        images = {"Base View": rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)}
        state = np.array([0.1, 1 / 3, 2.0**-40], dtype=np.float64)
        sent = [PolicyRequest(Observation(images, state, "go."), "libero_all", seed=s)
                for s in (0, 12345, 2**32 - 1)]
        with RemotePolicy(url) as client:
            client.infer(sent)
        assert [seed for _, seed in behind.seen] == [0, 12345, 2**32 - 1]
        assert behind.seen[0][0].state.dtype == np.float64  # the float64 state crosses unchanged
        assert behind.seen[0][0].state.tobytes() == state.tobytes()
    finally:
        server.stop()


def test_a_run_through_the_server_records_the_release_seeds(tmp_path, fake_suite) -> None:
    pytest.importorskip("websockets", reason="the serve extra")
    from mibot_eval.serving.server import PolicyServer

    behind = SeedRecordingPolicy()
    server = PolicyServer(behind, {"name": "ckpt", "hash": "sha256:0", "source": "t", "revision": None},
                          port=0)
    url = server.start_in_thread()
    try:
        request = RunRequest(checkpoint="ckpt", suites=[str(fake_suite)], video="none",
                             results_dir=tmp_path / "results", policy_url=url, workers=2)
        _check(behind, records(execute(request)), fake_suite)
    finally:
        server.stop()


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is the optional extra")
def test_ray_actors_send_the_release_seeds(tmp_path, fake_suite) -> None:
    policy = SeedRecordingPolicy()
    recs = _run(tmp_path, fake_suite, policy, backend="ray", ray_address="local", workers=2)
    _check(policy, recs, fake_suite)
