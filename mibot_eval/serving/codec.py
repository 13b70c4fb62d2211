"""Bytes on the wire: msgpack messages with numpy arrays, decoded strictly. No pickle anywhere.

Used by the policy server (WebSocket), the remote policy client, the simulator worker processes
(multiprocessing pipes, raw bytes) and the Ray actors, so there is one encoding to get right.

An array travels as msgpack extension type 1 whose payload is msgpack [dtype name, shape, raw bytes].
Decoding accepts only the dtypes in ALLOWED_DTYPES (little-endian, no object arrays), at most
MAX_NDIM dimensions, and a byte count that matches the shape exactly. Decoded arrays own their memory.
Domain checks (what a policy request may contain) live in `request_from_wire`, raising WireError
with a message fit for an error reply.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mibot_eval.errors import UserError
from mibot_eval.types import EpisodeResult, EpisodeSpec, Observation, PolicyRequest

PROTOCOL_VERSION = 1
EXT_NDARRAY = 1
MAX_NDIM = 4
ALLOWED_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(name).newbyteorder("<")
    for name in ("uint8", "int32", "int64", "float32", "float64", "bool")
}
# What one policy request may hold (generous for real cameras, tight enough to bound memory).
MAX_IMAGES = 8
MAX_IMAGE_SIDE = 2048
MAX_STATE_DIMS = 256
MAX_PREFIX_STEPS = 256
MAX_ACTION_DIMS = 256
MAX_TEXT = 4096


class WireError(ValueError):
    """A message that does not follow the protocol; the text goes back in the error reply."""


@dataclass(frozen=True)
class UnpackLimits:
    """Bounds msgpack enforces while it decodes, before it builds anything larger: an untrusted
    message cannot make the decoder allocate millions of objects (nesting is bounded by msgpack's own
    stack limit)."""

    max_array_len: int
    max_map_len: int
    max_str_len: int
    max_bin_len: int

    def kwargs(self) -> dict[str, int]:
        return {"max_array_len": self.max_array_len, "max_map_len": self.max_map_len,
                "max_str_len": self.max_str_len, "max_bin_len": self.max_bin_len,
                "max_ext_len": self.max_bin_len + 1024}


# What a policy request message may hold: <= 64 requests of <= 8 images each, short texts; arrays
# carry their bytes as ext payloads (bounded by the frame size the WebSocket layer enforces).
REQUEST_LIMITS = UnpackLimits(max_array_len=MAX_PREFIX_STEPS, max_map_len=16, max_str_len=4 * MAX_TEXT,
                              max_bin_len=64 * 2**20)
# What a reply to a policy request may hold (the client's side).
REPLY_LIMITS = UnpackLimits(max_array_len=MAX_PREFIX_STEPS, max_map_len=64, max_str_len=64 * 1024,
                            max_bin_len=64 * 2**20)
_ARRAY_HEADER = UnpackLimits(max_array_len=MAX_NDIM + 2, max_map_len=0, max_str_len=16,
                             max_bin_len=64 * 2**20)


def _msgpack() -> Any:
    try:
        import msgpack
    except ImportError:
        raise UserError("msgpack is not installed (needed by --workers, serve and --policy); "
                        "pip install 'mibot-eval[serve]'") from None
    return msgpack


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        name = obj.dtype.name
        if name not in ALLOWED_DTYPES:
            raise TypeError(f"cannot send arrays of dtype {obj.dtype}")
        data = np.ascontiguousarray(obj, dtype=ALLOWED_DTYPES[name])
        msgpack = _msgpack()
        header = msgpack.packb([name, list(data.shape), data.tobytes()], use_bin_type=True)
        return msgpack.ExtType(EXT_NDARRAY, header)
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _ext_hook(code: int, payload: bytes) -> Any:
    if code != EXT_NDARRAY:
        raise WireError(f"unknown msgpack extension type {code}")
    try:
        name, shape, raw = _msgpack().unpackb(payload, raw=False, use_list=True, **_ARRAY_HEADER.kwargs())
    except Exception as exc:  # noqa: BLE001 - any malformed header is the same protocol error
        raise WireError(f"malformed array: {exc}") from None
    if not isinstance(name, str) or name not in ALLOWED_DTYPES:
        raise WireError(f"array dtype {name!r} not allowed (allowed: {', '.join(ALLOWED_DTYPES)})")
    if (
        not isinstance(shape, list) or len(shape) > MAX_NDIM
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
    ):
        raise WireError(f"array shape {shape!r} invalid (at most {MAX_NDIM} non-negative ints)")
    if not isinstance(raw, bytes):
        raise WireError("array data must be bytes")
    dtype = ALLOWED_DTYPES[name]
    if math.prod(shape) * dtype.itemsize != len(raw):
        raise WireError(f"array of shape {shape} and dtype {name} needs "
                        f"{math.prod(shape) * dtype.itemsize} bytes, got {len(raw)}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def pack(obj: Any) -> bytes:
    return _msgpack().packb(obj, default=_default, use_bin_type=True)


def unpack(data: bytes, limits: UnpackLimits | None = None) -> Any:
    """Decode one message; any malformation raises WireError (never executes anything).

    limits: bounds for untrusted bytes (the policy server, the remote client); None for the pipes
    between this harness's own processes (records may be long)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError("expected a binary msgpack message")
    msgpack = _msgpack()
    try:
        return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=True,
                               **(limits.kwargs() if limits else {}))
    except WireError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated/garbage bytes of any kind
        raise WireError(f"malformed msgpack message: {type(exc).__name__}: {exc}") from None


# -- policy requests and chunks -------------------------------------------------------------------
def request_to_wire(request: PolicyRequest) -> dict[str, Any]:
    obs = request.observation
    return {
        "images": {label: np.asarray(image) for label, image in obs.images.items()},
        "state": np.asarray(obs.state),
        "instruction": obs.instruction,
        "robot_type": request.robot_type,
        "prefix": None if request.prefix is None else np.asarray(request.prefix),
        "seed": request.seed,
    }


def _text(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise WireError(f"'{key}' must be a string of at most {MAX_TEXT} characters")
    return value


def request_from_wire(item: Any) -> PolicyRequest:
    """Validate one decoded request (types, dtypes, shapes) and build the PolicyRequest."""
    if not isinstance(item, dict):
        raise WireError("each request must be a map")
    unknown = set(item) - {"images", "state", "instruction", "robot_type", "prefix", "seed"}
    if unknown:
        raise WireError(f"unknown request field(s): {', '.join(sorted(map(str, unknown)))}")
    images = item.get("images")
    if not isinstance(images, dict) or not 0 < len(images) <= MAX_IMAGES:
        raise WireError(f"'images' must map 1..{MAX_IMAGES} view labels to images")
    checked: dict[str, np.ndarray] = {}
    for label, image in images.items():
        if not isinstance(label, str) or len(label) > 128:
            raise WireError("image labels must be short strings")
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            got = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
            raise WireError(f"image '{label}' must be a uint8 array, got {got}")
        if image.ndim != 3 or image.shape[2] != 3 or not (
            0 < image.shape[0] <= MAX_IMAGE_SIDE and 0 < image.shape[1] <= MAX_IMAGE_SIDE
        ):
            raise WireError(f"image '{label}' must be HxWx3 with sides 1..{MAX_IMAGE_SIDE}, "
                            f"got shape {list(image.shape)}")
        checked[label] = image
    state = item.get("state")
    if not isinstance(state, np.ndarray) or state.dtype not in (np.float32, np.float64):
        got = state.dtype if isinstance(state, np.ndarray) else type(state).__name__
        raise WireError(f"'state' must be a float32/float64 array, got {got}")
    if state.ndim != 1 or state.size > MAX_STATE_DIMS or not np.all(np.isfinite(state)):
        raise WireError(f"'state' must be a finite 1-D array of at most {MAX_STATE_DIMS} values, "
                        f"got shape {list(state.shape)}")
    prefix = item.get("prefix")
    if prefix is not None:
        if not isinstance(prefix, np.ndarray) or prefix.dtype not in (np.float32, np.float64):
            raise WireError("'prefix' must be null or a float32/float64 array")
        if prefix.ndim != 2 or prefix.shape[0] > MAX_PREFIX_STEPS or prefix.shape[1] > MAX_ACTION_DIMS \
                or not np.all(np.isfinite(prefix)):
            raise WireError(f"'prefix' must be a finite (steps, action_dim) array, "
                            f"got shape {list(prefix.shape)}")
    seed = item.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32):
        raise WireError(f"'seed' must be null or an integer in [0, 2**32), got {seed!r}")
    observation = Observation(images=checked, state=state, instruction=_text(item, "instruction"))
    return PolicyRequest(observation, _text(item, "robot_type"), prefix=prefix, seed=seed)


def chunks_to_wire(chunks: list[np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(c, dtype=np.float32) for c in chunks]


def chunks_from_wire(chunks: Any, expected: int) -> list[np.ndarray]:
    if not isinstance(chunks, list) or len(chunks) != expected:
        raise WireError(f"expected {expected} action chunks in the reply")
    for chunk in chunks:
        if not isinstance(chunk, np.ndarray) or chunk.dtype != np.float32 or chunk.ndim != 2:
            raise WireError("action chunks must be float32 (T, D) arrays")
    return chunks


# -- episodes -------------------------------------------------------------------------------------
def spec_to_wire(spec: EpisodeSpec) -> dict[str, Any]:
    return asdict(spec)


def spec_from_wire(data: dict[str, Any]) -> EpisodeSpec:
    return EpisodeSpec(**data)


def result_to_wire(result: EpisodeResult) -> dict[str, Any]:
    return {
        "spec": spec_to_wire(result.spec), "success": bool(result.success), "steps": int(result.steps),
        "status": result.status, "error": result.error, "timings": dict(result.timings),
        "metrics": result.metrics,
    }


def result_from_wire(data: dict[str, Any]) -> EpisodeResult:
    return EpisodeResult(
        spec=spec_from_wire(data["spec"]), success=bool(data["success"]), steps=int(data["steps"]),
        status=str(data["status"]), error=data.get("error"), timings=dict(data.get("timings") or {}),
        metrics=dict(data.get("metrics") or {}),
    )
