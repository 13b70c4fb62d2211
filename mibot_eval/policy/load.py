"""Which policy a run talks to and which checkpoint it is: load it, or take the identity a policy
server (or a Python policy object) states.

`CheckpointIdentity` is what the manifest records and a resumed run must match: name, source,
revision and a content hash (policy/checkpoint.py fingerprints a local folder).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mibot_eval.config import CheckpointInfo
from mibot_eval.errors import UserError
from mibot_eval.policy.base import Policy
from mibot_eval.policy.checkpoint import ResolvedCheckpoint, fingerprint, resolve_checkpoint_dir
from mibot_eval.policy.identity import policy_fingerprint


@dataclass(frozen=True)
class CheckpointIdentity:
    name: str
    source: str
    revision: str | None
    hash: str
    path: Path | None = None  # a local folder, when this process has one

    def as_manifest(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "revision": self.revision, "hash": self.hash}


def load_policy(resolved: ResolvedCheckpoint, device: str | None) -> Policy:
    """The checkpoint in this process, through transformers (policy/hf.py)."""
    from mibot_eval.policy.hf import HFPolicy

    return HFPolicy(resolved.path, device=device)


def local_identity(info: CheckpointInfo) -> tuple[ResolvedCheckpoint, CheckpointIdentity]:
    """Resolve a checkpoint's folder (tiny, local, or the Hugging Face cache) and fingerprint it."""
    resolved = resolve_checkpoint_dir(info)
    identity = CheckpointIdentity(info.name, resolved.source, resolved.revision, fingerprint(resolved.path),
                                  resolved.path)
    return resolved, identity


def served_identity(info: CheckpointInfo, served: dict[str, Any]) -> CheckpointIdentity:
    """The checkpoint a policy server reports, checked against the run's --checkpoint name."""
    if served.get("name") != info.name:
        raise UserError(
            f"the policy server serves checkpoint '{served.get('name')}', not '{info.name}'; "
            "pass the same --checkpoint the server was started with"
        )
    return CheckpointIdentity(info.name, str(served.get("source")), served.get("revision"),
                              str(served.get("hash")))


def object_identity(name: str, policy: Any) -> CheckpointIdentity:
    """A Python policy object with no checkpoint folder: identified by what it computes
    (policy/identity.py: its describe(), else a digest of its parameters), else by its class and
    the name the caller gave. A resumed run must have the same identity (the store refuses
    another one), so two objects under one name cannot share a run folder."""
    cls = f"{type(policy).__module__}.{type(policy).__qualname__}"
    fingerprint = policy_fingerprint(policy)
    if fingerprint is None:
        method, digest = "name", hashlib.sha256(f"{cls}:{name}".encode()).hexdigest()
    else:
        method, digest = fingerprint
    return CheckpointIdentity(name, f"python:{cls}", None, f"{method}:{digest[:32]}")


def describe_policy(policy: Any) -> dict[str, Any]:
    """A policy's own description for the manifest (any object with `infer` may lack one)."""
    describe = getattr(policy, "describe", None)
    return dict(describe()) if callable(describe) else {"kind": "python", "class": type(policy).__name__}
