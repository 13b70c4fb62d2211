"""`mibot-eval serve`: validation, keepalive, batching across clients, health, and runs through it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

msgpack = pytest.importorskip("msgpack", reason="the serve extra: pip install 'mibot-eval[serve]'")
pytest.importorskip("websockets", reason="the serve extra: pip install 'mibot-eval[serve]'")

from websockets.sync.client import connect  # noqa: E402

from mibot_eval.errors import UserError  # noqa: E402
from mibot_eval.serving import codec  # noqa: E402
from mibot_eval.serving.client import RemotePolicy, RemotePolicyError  # noqa: E402
from mibot_eval.serving.server import PolicyServer  # noqa: E402
from mibot_eval.types import Observation, PolicyRequest  # noqa: E402
from tests.fakes import ScriptedPolicy  # noqa: E402
from tests.parallel_helpers import libero_request, outcome, records, reference_outcome  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IDENTITY = {"name": "scripted", "hash": "sha256:0", "source": "test", "revision": None}


class TypedScriptedPolicy(ScriptedPolicy):
    robot_types = {"libero_all"}

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def infer(self, requests):
        self.sizes.append(len(requests))
        time.sleep(0.02)  # long enough for concurrent clients to queue behind a forward pass
        return super().infer(requests)


@pytest.fixture()
def server():
    srv = PolicyServer(TypedScriptedPolicy(), IDENTITY, port=0, batch_size=8, batch_wait_ms=50,
                       max_message_bytes=1 << 20)
    srv.start_in_thread()
    yield srv
    srv.stop()


def _request(seed: int = 0, side: int = 32) -> PolicyRequest:
    rng = np.random.default_rng(seed)
    images = {"Base View": rng.integers(0, 255, (side, side, 3), dtype=np.uint8)}
    return PolicyRequest(Observation(images, rng.normal(size=8).astype(np.float32), "pick"),
                         "libero_all")


def _raw(url: str):
    ws = connect(url, compression=None, proxy=None, max_size=None, legacy=True)
    hello = codec.unpack(ws.recv(timeout=10))
    assert hello["type"] == "hello" and hello["protocol"] == codec.PROTOCOL_VERSION
    return ws, hello


def _infer_message(message_id=1, **overrides):
    item = codec.request_to_wire(_request())
    item.update(overrides)
    return {"type": "infer", "id": message_id, "requests": [item]}


def test_malformed_wrong_dtype_and_oversized_messages_are_rejected(server) -> None:
    ws, hello = _raw(server.url)
    assert hello["checkpoint"]["name"] == "scripted" and hello["max_message_bytes"] == 1 << 20
    bad = {
        "garbage bytes": b"\xc1\xff\x00not msgpack",
        "text frame": "hello",
        "not a map": codec.pack([1, 2, 3]),
        "unknown type": codec.pack({"type": "shutdown", "id": 2}),
        "float image": codec.pack(_infer_message(
            3, images={"Base View": np.zeros((8, 8, 3), np.float32)})),
        "wrong image shape": codec.pack(_infer_message(
            4, images={"Base View": np.zeros((8, 8), np.uint8)})),
        "int state": codec.pack(_infer_message(5, state=np.zeros(8, np.int64))),
        "nan state": codec.pack(_infer_message(6, state=np.full(8, np.nan, np.float32))),
        "unknown robot": codec.pack(_infer_message(7, robot_type="pr2")),
        "extra field": codec.pack(_infer_message(8, pickle=b"cos\nsystem\n")),
        "object dtype": msgpack.packb({"type": "infer", "id": 9, "requests": [{
            "images": {"Base View": msgpack.ExtType(1, msgpack.packb(["object", [1], b"x"]))},
        }]}, use_bin_type=True),
        "lying shape": msgpack.packb({"type": "infer", "id": 10, "requests": [{
            "images": {"Base View": msgpack.ExtType(1, msgpack.packb(["uint8", [64, 64, 3], b"x"]))},
        }]}, use_bin_type=True),
        "unknown ext": msgpack.packb({"type": "infer", "id": 11, "requests": [msgpack.ExtType(42, b"")]},
                                     use_bin_type=True),
        "no requests": codec.pack({"type": "infer", "id": 12, "requests": []}),
    }
    for name, payload in bad.items():
        ws.send(payload)
        reply = codec.unpack(ws.recv(timeout=10))
        assert reply["type"] == "error" and reply["error"], name
    assert "float32" in _error_for(ws, _infer_message(13, images={
        "Base View": np.zeros((8, 8, 3), np.float32)}))
    # the same connection still serves a valid request
    ws.send(codec.pack(_infer_message(20)))
    good = codec.unpack(ws.recv(timeout=10))
    assert good["type"] == "result" and good["id"] == 20 and good["chunks"][0].dtype == np.float32

    other, _ = _raw(server.url)  # another client, open while one misbehaves
    big = codec.pack(_infer_message(21, images={"Base View": np.zeros((1024, 1024, 3), np.uint8)}))
    assert len(big) > 1 << 20
    ws.send(big)
    with pytest.raises(Exception) as closed:
        ws.recv(timeout=10)
    assert getattr(getattr(closed.value, "rcvd", None), "code", None) == 1009  # message too big
    other.send(codec.pack(_infer_message(22)))
    assert codec.unpack(other.recv(timeout=10))["type"] == "result"  # the server keeps serving
    fresh, _ = _raw(server.url)
    fresh.send(codec.pack(_infer_message(23)))
    assert codec.unpack(fresh.recv(timeout=10))["id"] == 23
    for conn in (other, fresh):
        conn.close()


def _error_for(ws, message) -> str:
    ws.send(codec.pack(message))
    reply = codec.unpack(ws.recv(timeout=10))
    assert reply["type"] == "error" and reply["id"] == message["id"]
    return reply["error"]


def test_remote_policy_refuses_oversized_requests_before_sending(server) -> None:
    policy = RemotePolicy(server.url)
    with pytest.raises(RemotePolicyError, match="exceeds the server's message limit"):
        policy.infer([_request(side=1024)])
    assert policy.infer([_request()])[0].shape == (10, 32)  # still connected and usable
    with pytest.raises(UserError, match="no robot type 'pr2'"):
        policy.check_robot_type("pr2")
    policy.close()


def test_health_endpoint(server) -> None:
    RemotePolicy(server.url).infer([_request()])
    with urllib.request.urlopen(server.url.replace("ws://", "http://") + "/healthz", timeout=10) as r:
        health = json.loads(r.read())
    assert health["status"] == "ok" and health["checkpoint"] == "scripted"
    assert health["requests"] >= 1 and health["batches"] >= 1


def test_keepalive_survives_a_slow_simulator_start() -> None:
    srv = PolicyServer(TypedScriptedPolicy(), IDENTITY, port=0, ping_interval=0.2, ping_timeout=0.5)
    url = srv.start_in_thread()
    try:
        policy = RemotePolicy(url, ping_interval=0.2, ping_timeout=0.5)
        assert policy.hello["type"] == "hello"  # connected; now the "simulator" starts slowly
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # busy Python work (holds the GIL between switches)
            sum(i * i for i in range(20_000))
        assert policy.infer([_request()])[0].shape == (10, 32)
        assert srv.stats["connections"] == 1  # the same connection: nothing timed out
    finally:
        srv.stop()


def test_requests_from_many_clients_are_batched(server) -> None:
    results: dict[int, np.ndarray] = {}

    def client(i: int) -> None:
        policy = RemotePolicy(server.url)
        policy.hello  # noqa: B018 - connect first, so the server counts every client
        barrier.wait()
        results[i] = policy.infer([_request(seed=i)])[0]
        policy.close()

    barrier = threading.Barrier(6)
    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert max(server.policy.sizes) > 1, server.policy.sizes
    direct = ScriptedPolicy()
    for i, chunk in results.items():
        np.testing.assert_array_equal(chunk, direct.infer([_request(seed=i)])[0])


def test_libero_run_through_the_server_matches_in_process(tmp_path, tiny_checkpoint) -> None:
    pytest.importorskip("libero", reason="LIBERO is installed by `make setup`")
    from mibot_eval.run.runner import execute
    from mibot_eval.serving.server import make_server

    expected = reference_outcome()
    srv = make_server("tiny", device="cpu", port=0)
    url = srv.start_in_thread()
    try:
        run_dir = execute(libero_request(tmp_path, policy_url=url))
    finally:
        srv.stop()
    assert outcome(records(run_dir)) == expected
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["policy"]["kind"] == "remote" and manifest["policy"]["server"]["kind"] == "hf"
    assert manifest["checkpoint"]["name"] == "tiny" and manifest["checkpoint"]["hash"].startswith("sha256:")


def test_run_refuses_a_server_with_another_checkpoint(tmp_path, server) -> None:
    pytest.importorskip("libero", reason="LIBERO is installed by `make setup`")
    from mibot_eval.run.runner import execute

    with pytest.raises(UserError, match="serves checkpoint 'scripted', not 'tiny'"):
        execute(libero_request(tmp_path, policy_url=server.url))


def test_serve_cli_starts_answers_health_and_stops(tmp_path, tiny_checkpoint) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mibot_eval.cli", "serve", "tiny", "--port", "0",
         "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=ROOT)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving tiny (sha256:"), proc.stderr.read()
        url = line.split(" on ")[1].split()[0]
        with urllib.request.urlopen(url.replace("ws://", "http://") + "/healthz", timeout=10) as r:
            assert json.loads(r.read())["status"] == "ok"
        assert RemotePolicy(url).infer([_request()])[0].shape == (10, 32)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_serve_cli_bad_port_is_one_line(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "mibot_eval.cli", "serve", "tiny", "--port", "70000"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "mibot-eval: error: --port must be 0..65535" in proc.stderr
