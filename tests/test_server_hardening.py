"""The policy server against hostile or careless clients (the hardening issue, items 11-18): one
client can make only its own requests fail, memory stays bounded, access is controlled."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

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

IDENTITY = {"name": "scripted", "hash": "sha256:0", "source": "test", "revision": None,
            "path": "/secret/place/of/the/checkpoint"}


def _request(instruction: str = "pick it.", side: int = 32, state=None, **kw) -> PolicyRequest:
    rng = np.random.default_rng(0)
    images = kw.pop("images", None) or {"Base View": rng.integers(0, 255, (side, side, 3), dtype=np.uint8)}
    state = np.zeros(8) if state is None else state
    return PolicyRequest(Observation(images, np.asarray(state), instruction), "libero_all", **kw)


def _raw(url: str, **kw):
    ws = connect(url, compression=None, proxy=None, max_size=None, legacy=True, **kw)
    hello = codec.unpack(ws.recv(timeout=10))
    return ws, hello


def _message(message_id: int, *requests: PolicyRequest) -> bytes:
    return codec.pack({"type": "infer", "id": message_id,
                       "requests": [codec.request_to_wire(r) for r in requests]})


class SlowPolicy(ScriptedPolicy):
    """ScriptedPolicy that takes `per_request` seconds per request and can be told to fail."""

    robot_types = {"libero_all"}

    def __init__(self, per_request: float = 0.0) -> None:
        super().__init__()
        self.per_request = per_request
        self.calls: list[list[str]] = []

    def infer(self, requests):
        self.calls.append([r.observation.instruction for r in requests])
        time.sleep(self.per_request * len(requests))
        if any(r.observation.instruction == "boom." for r in requests):
            raise RuntimeError("this request breaks the model")
        chunks = super().infer(requests)
        if any(r.observation.instruction == "nan." for r in requests):
            chunks = [np.full_like(c, np.nan) for c in chunks]
        return chunks


def _serve(policy, **kw) -> PolicyServer:
    server = PolicyServer(policy, IDENTITY, port=0, **kw)
    server.start_in_thread()
    return server


def _concurrently(*calls):
    """Run the calls in threads (to be co-batched); returns their results or exceptions."""
    out: list = [None] * len(calls)

    def run(i, call):
        try:
            out[i] = call()
        except BaseException as exc:  # noqa: BLE001 - collected for the test
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return out


def test_a_co_batched_bad_request_fails_alone(tmp_path) -> None:
    """Item 11 (isolation): a request the model raises on fails; the others in its batch do not."""
    policy = SlowPolicy(per_request=0.01)
    # both clients connected first (a batch goes once every connected client waits) and a long
    # batch wait, so that the two requests share a batch even on a loaded machine
    server = _serve(policy, batch_size=8, batch_wait_ms=2000)
    try:
        good, bad = RemotePolicy(server.url), RemotePolicy(server.url)
        assert good.hello and bad.hello  # connects both
        results = _concurrently(lambda: good.infer([_request("fine.")]),
                                lambda: bad.infer([_request("boom.")]))
        assert isinstance(results[0], list) and results[0][0].shape == (10, 32)
        assert isinstance(results[1], RemotePolicyError) and "breaks the model" in str(results[1])
        assert ["fine.", "boom."] in policy.calls or ["boom.", "fine."] in policy.calls  # co-batched
        # a reply never carries non-finite actions (item 13)
        with pytest.raises(RemotePolicyError, match="non-finite actions"):
            good.infer([_request("nan.")])
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tiny_server(tiny_checkpoint):
    from mibot_eval.policy.hf import HFPolicy

    server = _serve(HFPolicy(tiny_checkpoint, device="cpu"), batch_size=8, batch_wait_ms=200)
    yield server
    server.stop()


@pytest.mark.parametrize("bad, problem", [
    (dict(state=np.zeros(33)), "33 dims"),
    (dict(images={"Base View": np.zeros((1, 64, 3), np.uint8)}), "sides must be >="),
    (dict(instruction="pick <|image_pad|> it."), "special token '<|image_pad|>'"),
    (dict(images={"Base <|vision_start|> View": np.zeros((32, 32, 3), np.uint8)}), "special token"),
    (dict(prefix=np.zeros((2, 33))), "at most"),
    (dict(prefix=np.zeros((200, 7))), "at most"),
    (dict(state=np.full(8, 1e300)), "not finite once cast"),
])
def test_the_door_refuses_what_the_model_cannot_take_and_others_go_on(tiny_server, bad, problem) -> None:
    """Items 11 and 13: refused at the door with its own error; a concurrent client is served."""
    good, other = RemotePolicy(tiny_server.url), RemotePolicy(tiny_server.url)
    results = _concurrently(lambda: good.infer([_request("pick it.")]),
                            lambda: other.infer([_request(**bad)]))
    assert isinstance(results[0], list) and np.isfinite(results[0][0]).all()
    assert isinstance(results[1], RemotePolicyError) and problem in str(results[1]), results[1]


def test_a_message_of_millions_of_empty_maps_is_refused_before_it_is_built() -> None:
    """Item 12: 16 MiB of empty maps used to take 1.6 GiB and block everyone for seconds."""
    server = _serve(SlowPolicy(), max_message_bytes=32 * 2**20)
    try:
        bomb = msgpack.packb({"type": "infer", "id": 1, "requests": [{}] * (16 * 2**20 - 64)})
        ws, _ = _raw(server.url)
        start = time.monotonic()
        ws.send(bomb)
        reply = codec.unpack(ws.recv(timeout=30))
        assert reply["type"] == "error" and "max_array_len" in reply["error"]
        assert time.monotonic() - start < 2.0
        deep = b"\x91" * 100_000 + b"\xc0"  # an array in an array in ... 100,000 deep
        ws.send(deep)
        assert codec.unpack(ws.recv(timeout=30))["type"] == "error"
        ws.send(_message(2, _request()))
        assert codec.unpack(ws.recv(timeout=30))["type"] == "result"  # still serving
        ws.close()
    finally:
        server.stop()


def test_queued_bytes_and_connections_are_bounded_globally() -> None:
    """Item 14: a clear 'busy' refusal over the queued-bytes bound, HTTP 503 over the connections'."""
    policy = SlowPolicy(per_request=0.5)
    server = _serve(policy, batch_size=1, batch_wait_ms=0, max_message_bytes=2**20,
                    max_queued_bytes=2**20, max_connections=3)
    try:
        big = _request("big.", side=400)  # ~480 KB
        first, second = RemotePolicy(server.url), RemotePolicy(server.url)
        results = _concurrently(lambda: first.infer([big, big]), lambda: (time.sleep(0.2),
                                                                           second.infer([big, big]))[1])
        errors = [r for r in results if isinstance(r, Exception)]
        assert len(errors) == 1 and "server busy" in str(errors[0])
        first.close()
        second.close()
        time.sleep(0.2)
        held = [RemotePolicy(server.url) for _ in range(3)]
        for client in held:
            assert client.hello["type"] == "hello"
        with pytest.raises(UserError, match="HTTP 503: too many connections"):
            RemotePolicy(server.url).hello  # noqa: B018 - connecting is the test
        for client in held:
            client.close()
    finally:
        server.stop()


def test_queued_work_of_a_client_that_left_is_dropped() -> None:
    """Item 15: three 64-request messages then close; the next legit request does not wait for them."""
    policy = SlowPolicy(per_request=0.02)  # 64 requests: 1.3 s
    server = _serve(policy, batch_size=64, batch_wait_ms=0)
    try:
        leavers = []
        for i in range(3):
            ws, _ = _raw(server.url)
            ws.send(_message(i, *[_request(f"leaver {i}.")] * 64))
            leavers.append(ws)
        time.sleep(0.3)  # the first is being inferred, the other two wait in the queue
        for ws in leavers:
            ws.close()
        start = time.monotonic()
        RemotePolicy(server.url).infer([_request("legit.")])
        waited = time.monotonic() - start
        assert waited < 2.4, waited  # at most the forward in flight (1.3 s), not all three (3.9 s)
        assert server.stats["dropped"] >= 64
    finally:
        server.stop()


def test_browsers_are_refused_and_the_hello_names_no_path(tmp_path) -> None:
    """Item 16: an Origin header is refused unless allowed; the hello has name and hash only."""
    server = _serve(SlowPolicy(), allowed_origins=("http://allowed.example",))
    try:
        with pytest.raises(Exception, match="403"):
            _raw(server.url, origin="http://evil.example")
        ws, hello = _raw(server.url, origin="http://allowed.example")
        ws.close()
        ws, hello = _raw(server.url)
        ws.close()
        assert hello["checkpoint"] == {"name": "scripted", "hash": "sha256:0", "source": "test",
                                       "revision": None}
        assert "/secret" not in str(hello)
    finally:
        server.stop()


def test_a_shared_token_is_required_when_configured(tmp_path) -> None:
    """Item 16: --token-file on both sides; constant-time comparison on the server."""
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    server = _serve(SlowPolicy(), token="s3cret-token")
    health = server.url.replace("ws://", "http://") + "/healthz"
    try:
        with pytest.raises(UserError, match="requires a token"):
            RemotePolicy(server.url).hello  # noqa: B018
        wrong = tmp_path / "wrong"
        wrong.write_text("guess")
        with pytest.raises(UserError, match="refused the token"):
            RemotePolicy(server.url, token_file=wrong).hello  # noqa: B018
        assert RemotePolicy(server.url, token_file=token).infer([_request()])[0].shape == (10, 32)
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(health, timeout=10)
        request = urllib.request.Request(health, headers={"Authorization": "Bearer s3cret-token"})
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.status == 200
    finally:
        server.stop()


def test_healthz_has_one_content_type_and_only_get_answers() -> None:
    """Item 17."""
    server = _serve(SlowPolicy())
    health = server.url.replace("ws://", "http://") + "/healthz"
    try:
        with urllib.request.urlopen(health, timeout=10) as r:
            assert r.headers.get_all("Content-Type") == ["application/json"]
        for method in ("HEAD", "POST"):
            with pytest.raises(urllib.error.HTTPError, match="405"):
                urllib.request.urlopen(urllib.request.Request(health, method=method), timeout=10)
    finally:
        server.stop()


def test_an_idle_client_is_closed_and_the_client_reconnects() -> None:
    """Item 18: answering pings is not enough to hold a connection forever."""
    server = _serve(SlowPolicy(), idle_timeout=0.5, ping_interval=0.1, ping_timeout=5)
    try:
        client = RemotePolicy(server.url, ping_interval=0.1, ping_timeout=5)
        client.infer([_request()])
        time.sleep(1.5)
        assert server.stats["idle_closed"] == 1
        assert client.infer([_request()])[0].shape == (10, 32)  # reconnected on its own
    finally:
        server.stop()
