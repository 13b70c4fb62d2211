"""What a Python policy object computes, as a digest: the identity of a run of `evaluate(policy)`.

A policy object has no checkpoint folder to fingerprint, and its class name says nothing about its
weights (two `MyPolicy(bias=...)` objects share it). It is identified, in this order, by:

1. `describe()`, when it offers one: its canonical JSON (the policy states what it computes; make
   it name the weights, e.g. a training step or a weights hash);
2. its parameters: a torch module's state_dict (names, dtypes, shapes and bytes of every tensor);
   any other object's attributes (numbers, strings, arrays, tensors, nested modules and objects,
   recursively). Every attribute counts, so a counter that changes as the policy runs changes its
   identity too: give such a policy a describe();
3. nothing: `policy_fingerprint` returns None and the caller must name the policy (`name=`).
"""

from __future__ import annotations

import hashlib
import json
import types
from typing import Any

MAX_DEPTH = 6  # nested objects followed this deep (a policy holding a model holding a config...)
_SCALARS = (type(None), bool, int, float, complex, str, bytes)
_LEFT_OUT = (types.FunctionType, types.MethodType, types.BuiltinFunctionType, types.ModuleType, type)


def policy_fingerprint(policy: Any) -> tuple[str, str] | None:
    """(method, sha256 hex digest) with method 'describe' or 'parameters'; None when the policy
    offers neither a describe() nor any parameter to hash."""
    describe = getattr(policy, "describe", None)
    if callable(describe):
        text = json.dumps(describe(), sort_keys=True, default=repr)
        return "describe", hashlib.sha256(text.encode()).hexdigest()
    digest = hashlib.sha256()
    if _feed(digest, policy, 0, {}):
        return "parameters", digest.hexdigest()
    return None


def _feed(digest: Any, value: Any, depth: int, seen: dict[int, Any]) -> bool:
    """Hash `value` into `digest`; True when anything was hashed. Functions, methods, classes,
    modules, objects without attributes (locks, files) and objects deeper than MAX_DEPTH or seen
    before are left out. `seen` keeps what it saw alive, so no id is reused during the walk."""
    if isinstance(value, _SCALARS):
        digest.update(f"{type(value).__name__}:{value!r};".encode())
        return True
    if depth > MAX_DEPTH or id(value) in seen or isinstance(value, _LEFT_OUT):
        return False
    seen[id(value)] = value
    if _is_tensor(value):
        _feed_tensor(digest, value)
        return True
    if _is_array(value):
        if value.dtype == object:
            return _feed(digest, value.tolist(), depth + 1, seen)
        digest.update(f"ndarray:{value.dtype.str}:{value.shape};".encode())
        digest.update(value.tobytes())
        return True
    if _is_module(value):
        fed = False
        for name, item in value.state_dict().items():
            digest.update(f"param:{name};".encode())
            fed = _feed(digest, item, depth + 1, seen) or fed
        return _feed_attributes(digest, value, depth, seen, skip=_MODULE_INTERNALS) or fed
    if isinstance(value, dict):
        fed = False
        for key in sorted(value, key=repr):
            digest.update(f"key:{key!r};".encode())
            fed = _feed(digest, value[key], depth + 1, seen) or fed
        return fed
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        digest.update(f"{type(value).__name__}:{len(items)};".encode())
        fed = False
        for item in items:
            fed = _feed(digest, item, depth + 1, seen) or fed
        return fed
    if hasattr(value, "__dict__") and not isinstance(value, type):
        digest.update(f"object:{type(value).__module__}.{type(value).__qualname__};".encode())
        return _feed_attributes(digest, value, depth, seen)
    return False


_MODULE_INTERNALS = frozenset({
    "training", "_parameters", "_buffers", "_modules", "_non_persistent_buffers_set",
    "_backward_pre_hooks", "_backward_hooks", "_is_full_backward_hook", "_forward_hooks",
    "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs", "_state_dict_hooks", "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks",
})


def _feed_attributes(digest: Any, value: Any, depth: int, seen: dict[int, Any],
                     skip: frozenset[str] = frozenset()) -> bool:
    fed = False
    for name in sorted(vars(value)):
        if name in skip:
            continue
        digest.update(f"attr:{name};".encode())
        fed = _feed(digest, vars(value)[name], depth + 1, seen) or fed
    return fed


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach") and \
        hasattr(value, "dtype")


def _is_module(value: Any) -> bool:
    return any(cls.__module__ == "torch.nn.modules.module" and cls.__name__ == "Module"
               for cls in type(value).__mro__)


def _is_array(value: Any) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "tobytes") and hasattr(value, "dtype")


def _feed_tensor(digest: Any, tensor: Any) -> None:
    """A tensor's dtype, shape and bytes (any dtype, bf16 included: hashed as raw bytes)."""
    import torch

    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    digest.update(f"tensor:{flat.dtype}:{tuple(tensor.shape)};".encode())
    digest.update(flat.view(torch.uint8).numpy().tobytes())
