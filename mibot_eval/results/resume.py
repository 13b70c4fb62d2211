"""Resume guards: a rerun may add episodes to a run folder only if it continues the same experiment.

What a folder holds is compared with what this invocation is about to run (`check_resume`):

- identity, always refused when it differs: the checkpoint (name and content hash; for a Python
  policy object, what it computes), the execution mode, each suite's protocol hash, and every
  recorded episode's protocol hash and checkpoint id;
- runtime, refused unless the caller allows a mixed run (`--allow-mixed-resume`, then recorded in
  the manifest): the policy's dtype, attention kernel and device kind, the model stack's versions
  (torch, transformers) and each suite's simulator packages.

A folder whose manifest.json is gone gets one rebuilt from its records (`rebuild_manifest`): the
records name their checkpoint, protocol hashes and execution, so a rerun with another protocol is
refused instead of writing a new manifest over records it does not describe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mibot_eval.errors import UserError
from mibot_eval.results.records import EpisodeRecord

RUNTIME_PACKAGES = ("torch", "transformers")
_RUNTIME_FIELDS = (("dtype", "dtype"), ("attn_implementation", "attention kernel"),
                   ("device", "device kind"))
MAX_NAMED = 3  # differences named in the one-line refusal


def policy_runtime(policy: Mapping[str, Any] | None) -> dict[str, str]:
    """dtype, attention kernel and device kind (cuda, cpu, ...) of a policy's description (a policy
    server's: of the model it serves); only the fields it states."""
    policy = policy or {}
    server = policy.get("server")
    if isinstance(server, Mapping):
        policy = server
    runtime = {}
    for field, label in _RUNTIME_FIELDS:
        value = policy.get(field)
        if value is not None:
            runtime[label] = str(value).split(":")[0] if field == "device" else str(value)
    return runtime


def runtime_differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What differs between the manifest a folder holds and this invocation's, among the facts that
    change the numbers without changing the protocol: 'dtype bfloat16 -> float32', ..."""
    found = []
    old, new = policy_runtime(recorded.get("policy")), policy_runtime(current.get("policy"))
    found += [f"{label} {old[label]} -> {new[label]}" for label in old
              if label in new and old[label] != new[label]]
    old_packages, new_packages = recorded.get("packages") or {}, current.get("packages") or {}
    found += [f"{name} {old_packages.get(name)} -> {new_packages.get(name)}" for name in RUNTIME_PACKAGES
              if name in old_packages and name in new_packages
              and old_packages[name] != new_packages[name]]
    for suite, entry in (current.get("suites") or {}).items():
        before = ((recorded.get("suites") or {}).get(suite) or {}).get("simulator_packages")
        after = entry.get("simulator_packages")
        if not before or not after:
            continue
        found += [f"{suite}: {name} {before.get(name)} -> {after.get(name)}"
                  for name in sorted(set(before) | set(after)) if before.get(name) != after.get(name)]
    return found


def check_identity(run_dir: Any, recorded: Mapping[str, Any], current: Mapping[str, Any],
                   identity_keys: Sequence[str]) -> None:
    """Refuse (UserError, one line) when the folder holds another experiment."""
    for key in identity_keys:
        if key not in recorded:
            continue
        mine, theirs = current.get(key), recorded[key]
        if key == "checkpoint":
            same = _checkpoint_id(theirs) == _checkpoint_id(mine)
        else:
            same = theirs == mine
        if not same:
            raise UserError(f"{run_dir} holds a run with a different {key} ({_brief(key, theirs)}; this "
                            f"run: {_brief(key, mine)}); use another --run name (Python API: another "
                            "name=), or delete that folder, instead of mixing results")
    for name, protocol in (current.get("suites") or {}).items():
        before = (recorded.get("suites") or {}).get(name)
        if before and before.get("hash") != protocol.get("hash"):
            raise UserError(
                f"{run_dir}: suite {name} was run with another protocol "
                f"(hash {before.get('hash')} vs {protocol.get('hash')}); use another --run"
            )


def check_records(run_dir: Any, records: Sequence[EpisodeRecord], suite_hashes: Mapping[str, Any],
                  checkpoint_hash: str | None) -> None:
    """Every record must carry its suite's protocol hash and the run's checkpoint id."""
    for record in records:
        suite = str(record.get("suite") or str(record.get("key", "")).split("/")[0])
        expected = suite_hashes.get(suite)
        if expected and record.get("protocol_hash") not in (None, expected):
            count = sum(1 for r in records if r.get("suite") == suite
                        and r.get("protocol_hash") not in (None, expected))
            raise UserError(f"{run_dir}: {count} recorded episode(s) of {suite} ran with protocol hash "
                            f"{record.get('protocol_hash')}, this run's is {expected} (another "
                            "--max-steps or protocol); use another --run instead of mixing protocols")
        recorded_id = record.get("checkpoint_id")
        if checkpoint_hash and recorded_id and recorded_id != checkpoint_hash:
            raise UserError(f"{run_dir}: episode {record.get('key')} was recorded by another checkpoint "
                            f"({recorded_id}; this run: {checkpoint_hash}); use another --run name")


def refuse_mixed(run_dir: Any, differences: Sequence[str]) -> None:
    """One line naming what differs, and the override."""
    named = "; ".join(differences[:MAX_NAMED]) + (f"; {len(differences) - MAX_NAMED} more"
                                                 if len(differences) > MAX_NAMED else "")
    raise UserError(f"{run_dir} was recorded with another runtime ({named}); resuming would mix them in "
                    "one result: rerun as before, use another --run, or pass --allow-mixed-resume "
                    "(recorded in the manifest)")


def rebuild_manifest(run: str, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A manifest for a folder that lost its manifest.json, from what its records state."""
    first = records[0]
    suites: dict[str, dict[str, Any]] = {}
    for record in records:
        suite = str(record.get("suite") or str(record.get("key", "")).split("/")[0])
        suites.setdefault(suite, {"hash": record.get("protocol_hash")})
    manifest: dict[str, Any] = {
        "run": first.get("run") or run,
        "suites": suites,
        "rebuilt_from_records": {"records": len(records),
                                 "note": "manifest.json was missing; rebuilt from episodes.jsonl "
                                         "(the earlier invocations' runtime and hosts are unknown)"},
    }
    if first.get("checkpoint") or first.get("checkpoint_id"):
        manifest["checkpoint"] = {"name": first.get("checkpoint"), "hash": first.get("checkpoint_id")}
    if first.get("execution") is not None:
        manifest["execution"] = first["execution"]
    return manifest


def _checkpoint_id(entry: Any) -> tuple[Any, Any]:
    entry = entry if isinstance(entry, Mapping) else {}
    return entry.get("name"), entry.get("hash")


def _brief(key: str, value: Any) -> str:
    if key == "checkpoint" and isinstance(value, Mapping):
        return f"{value.get('name')} {value.get('hash')}"
    return str(value)
