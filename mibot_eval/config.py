"""Load and validate the packaged suites (`mibot_eval/data/suites/*.yaml`) and
`mibot_eval/data/checkpoints.yaml` into typed objects.

They are package data: a source checkout, `pip install .`, a wheel and `pip install git+URL` read the
same files, from any working directory. Bad files fail here with one clear line (UserError). Protocol
numbers are read from YAML only.

Size (about 700 lines, over the house's 400): it is the package's one YAML reader, and every packaged
YAML is validated here with its one-line errors (the suites with their variant families, checkpoints,
aggregation rules), each in its own section, so that no other module reads the packaged YAML files.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from mibot_eval.errors import UserError

EXECUTION_MODES = ("sync", "async")
SEED_LANGUAGES = ("instruction", "prompt")
CAPITALIZE_RULES = ("python", "first_letter", "none")


DATA_DIR = Path(__file__).resolve().parent / "data"  # package data, installed with the package


def suites_dir() -> Path:
    """The packaged suite YAMLs (and their variant family folders, e.g. suites/libero_pro/)."""
    return DATA_DIR / "suites"


def checkpoints_file() -> Path:
    """The packaged registry of released checkpoints, their reported numbers and aggregation rules."""
    return DATA_DIR / "checkpoints.yaml"


def _load_yaml(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as stream:
            return yaml.safe_load(stream)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}:{where} malformed YAML: {problem}") from None


def _require(data: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    if key not in data:
        raise UserError(f"{path}: missing required field '{key}'")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) and bool not in _as_tuple(kind):
        names = "/".join(t.__name__ for t in _as_tuple(kind))
        raise UserError(f"{path}: field '{key}' must be {names}, got {value!r}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _choice(data: dict[str, Any], key: str, allowed: tuple[str, ...], path: Path) -> str:
    value = _require(data, key, str, path)
    if value not in allowed:
        raise UserError(f"{path}: field '{key}' must be one of {allowed}, got {value!r}")
    return value


def _vector(data: dict[str, Any], key: str, length: int, path: Path) -> tuple[float, ...]:
    value = _require(data, key, list, path)
    if len(value) != length or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        raise UserError(f"{path}: field '{key}' must be a list of {length} numbers, got {value!r}")
    return tuple(float(v) for v in value)


@dataclass(frozen=True)
class SeedRule:
    """How the release's client builds the dict it hashes into each request's noise seed.

    images: (prompt view label, key in the client's `model_inputs`) in prompt order.
    state_shape: shape of the zero-padded float64 state as the client sends it.
    language: "instruction" = the instruction before the client appends its "." (LIBERO, CALVIN),
      "prompt" = the full chat prompt (SimplerEnv).
    """

    images: tuple[tuple[str, str], ...]
    state_shape: tuple[int, ...]
    language: str

    @property
    def state_width(self) -> int:
        return math.prod(self.state_shape)

    def as_dict(self) -> dict[str, Any]:
        return {"images": dict(self.images), "state_shape": list(self.state_shape),
                "language": self.language}


def _seed_rule(data: dict[str, Any], path: Path) -> SeedRule:
    raw = _require(data, "request_seed", dict, path)
    images = raw.get("images")
    if not isinstance(images, dict) or not images or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in images.items()
    ):
        raise UserError(f"{path}: request_seed.images must map prompt view labels to input keys")
    shape = raw.get("state_shape")
    if not isinstance(shape, list) or not shape or not all(
        isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape
    ):
        raise UserError(f"{path}: request_seed.state_shape must be a list of positive ints, got {shape!r}")
    language = raw.get("language")
    if language not in SEED_LANGUAGES:
        raise UserError(f"{path}: request_seed.language must be one of {SEED_LANGUAGES}, got {language!r}")
    fmt = data.get("instruction_format") or {}
    if language == "instruction" and not (isinstance(fmt, dict) and fmt.get("append_period") is True):
        raise UserError(f"{path}: request_seed.language 'instruction' hashes the text before the "
                        "appended period: it needs instruction_format.append_period: true")
    return SeedRule(tuple(images.items()), tuple(shape), str(language))


def _instruction_format(data: dict[str, Any], path: Path) -> None:
    fmt = data.get("instruction_format")
    if fmt is None:
        return
    if not isinstance(fmt, dict) or set(fmt) - {"capitalize", "append_period"}:
        raise UserError(f"{path}: instruction_format takes 'capitalize' and 'append_period', got {fmt!r}")
    if fmt.get("capitalize", "none") not in CAPITALIZE_RULES:
        raise UserError(f"{path}: instruction_format.capitalize must be one of {CAPITALIZE_RULES}")
    if not isinstance(fmt.get("append_period", False), bool):
        raise UserError(f"{path}: instruction_format.append_period must be true or false")


@dataclass(frozen=True)
class SuiteProtocol:
    """One suite's evaluation protocol, exactly as its YAML states it (plus explicit overrides)."""

    name: str
    benchmark: str
    adapter: str
    default_robot_type: str
    num_tasks: int
    episodes_per_task: int
    seed: int
    max_steps: int
    replan_steps: int
    action_dim: int
    hold_action: tuple[float, ...]
    hold_gripper: str  # "last" | "hold_action" (execution.ChunkScheduler)
    control_hz: float
    execution: str
    request_seed: SeedRule
    params: dict[str, Any] = field(default_factory=dict)  # adapter-specific fields, validated there
    source: str = ""
    max_drop: float | None = None  # YAML `gate.max_drop`: check's default margin (pp), not protocol

    def as_dict(self) -> dict[str, Any]:
        """Everything that determines results (not where the YAML was read from, nor the gate's
        default margin)."""
        data = {k: v for k, v in self.__dict__.items() if k not in ("source", "max_drop")}
        data["hold_action"] = list(self.hold_action)
        data["request_seed"] = self.request_seed.as_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SuiteProtocol:
        """Inverse of `as_dict` plus `source` (how a worker process rebuilds a suite's protocol)."""
        data = dict(data)
        data["hold_action"] = tuple(data["hold_action"])
        seed = data["request_seed"]
        data["request_seed"] = SeedRule(tuple(dict(seed["images"]).items()), tuple(seed["state_shape"]),
                                        str(seed["language"]))
        return cls(**data)

    def protocol_hash(self) -> str:
        blob = json.dumps(self.as_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def with_overrides(self, **overrides: Any) -> SuiteProtocol:
        """A copy with some protocol fields changed (e.g. max_steps for a quick CI run)."""
        known = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(known) - set(self.__dict__)
        if unknown:
            raise UserError(f"unknown protocol field(s): {', '.join(sorted(unknown))}")
        return replace(self, **known)


def load_suite(name_or_path: str) -> SuiteProtocol:
    """Load a suite by name (suites/<name>.yaml, or a variant generated by a family file under
    suites/<group>/, see `variant_families`) or by path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = suites_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            family, base = _variant(name_or_path)
            return _protocol(_variant_data(name_or_path, family, base), family.path,
                             f"{family.path} over {suites_dir() / f'{base}.yaml'}")
    data = _load_yaml(path)
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at top level")
    return _protocol(data, path, str(path))


def _protocol(data: dict[str, Any], path: Path, source: str) -> SuiteProtocol:
    """Validate a suite's mapping into a SuiteProtocol (errors name `path`)."""
    execution = _require(data, "execution", str, path)
    if execution not in EXECUTION_MODES:
        raise UserError(f"{path}: execution must be one of {EXECUTION_MODES}, got {execution!r}")
    action_dim = _require(data, "action_dim", int, path)
    core = {
        "name": _require(data, "name", str, path),
        "benchmark": _require(data, "benchmark", str, path),
        "adapter": _require(data, "adapter", str, path),
        "default_robot_type": _require(data, "default_robot_type", str, path),
        "num_tasks": _require(data, "num_tasks", int, path),
        "episodes_per_task": _require(data, "episodes_per_task", int, path),
        "seed": _require(data, "seed", int, path),
        "max_steps": _require(data, "max_steps", int, path),
        "replan_steps": _require(data, "replan_steps", int, path),
        "action_dim": action_dim,
        "hold_action": _vector(data, "hold_action", action_dim, path),
        "hold_gripper": _choice(data, "hold_gripper", ("last", "hold_action"), path),
        "control_hz": float(_require(data, "control_hz", (int, float), path)),
        "execution": execution,
        "request_seed": _seed_rule(data, path),
    }
    _instruction_format(data, path)
    for key in ("num_tasks", "episodes_per_task", "max_steps", "replan_steps", "action_dim"):
        if core[key] <= 0:
            raise UserError(f"{path}: field '{key}' must be positive, got {core[key]}")
    params = {k: v for k, v in data.items() if k not in core and k != "gate"}
    return SuiteProtocol(**core, params=params, source=source, max_drop=_gate_margin(data, path))


def _gate_margin(data: dict[str, Any], path: Path) -> float | None:
    """`gate: {max_drop: PP}`: the regression gate's default margin for this suite (percentage
    points in [0, 100)); None when the YAML has no `gate`."""
    gate = data.get("gate")
    if gate is None:
        return None
    if not isinstance(gate, dict) or set(gate) != {"max_drop"}:
        raise UserError(f"{path}: 'gate' must be a mapping with exactly 'max_drop' (percentage points), "
                        f"got {gate!r}")
    value = gate["max_drop"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 100:
        raise UserError(f"{path}: gate.max_drop must be a number of percentage points in [0, 100), "
                        f"got {value!r}")
    return float(value)


def available_suites() -> list[str]:
    """Every runnable suite: suites/*.yaml plus the variants the family files generate."""
    return sorted([p.stem for p in suites_dir().glob("*.yaml")] + list(_variants()))


# -- variant families (suites/<group>/*.yaml) ----------------------------------------------------
@dataclass(frozen=True)
class VariantFamily:
    """A family file: one suite per base, the base suite's YAML with `overrides` merged over it.

    File schema (suites/<group>/<family>.yaml):
      variants: {bases: [base suite, ...], name: "{base}_suffix"}
      overrides: {key: value, ...}   merged over suites/<base>.yaml (mappings recursively); "{base}" in
                 any string becomes the base's name; {per_base: {BASE: value, default: value}} picks a
                 value by base.
    A file with `unsupported:` instead lists registered variants that are not run, each with its
    reason: unsupported: [{name: "{base}_suffix", bases: [...], reason: "one line"}].
    """

    path: Path
    group: str
    family: str
    bases: tuple[str, ...]
    pattern: str
    overrides: dict[str, Any]

    def name_for(self, base: str) -> str:
        return self.pattern.replace("{base}", base)


def _group_files() -> list[Path]:
    return sorted(p for p in suites_dir().glob("*/*.yaml") if p.is_file())


def _bases(value: Any, where: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(b, str) for b in value):
        raise UserError(f"{where}: 'bases' must be a non-empty list of suite names")
    missing = [b for b in value if not (suites_dir() / f"{b}.yaml").is_file()]
    if missing:
        raise UserError(f"{where}: base suite(s) {', '.join(missing)} not found in {suites_dir()}")
    return tuple(value)


def _pattern(value: Any, where: Path) -> str:
    if not isinstance(value, str) or "{base}" not in value:
        raise UserError(f"{where}: 'name' must be a pattern containing {{base}}, got {value!r}")
    return value


def variant_families() -> list[VariantFamily]:
    """The family files under suites/<group>/ (validated), in path order."""
    return list(_catalogue()[0])


def unsupported_suites() -> dict[str, str]:
    """Registered variants that are not run -> the one-line reason (from `unsupported:` files)."""
    return dict(_catalogue()[1])


_CATALOGUE: dict[tuple[Any, ...], tuple[list[VariantFamily], dict[str, str]]] = {}


def _catalogue() -> tuple[list[VariantFamily], dict[str, str]]:
    """Parse the group files once per content (keyed by path, size and mtime: edits are seen)."""
    files = _group_files()
    key = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if key not in _CATALOGUE:
        families: list[VariantFamily] = []
        unsupported: dict[str, str] = {}
        for path in files:
            data = _load_yaml(path)
            if not isinstance(data, dict):
                raise UserError(f"{path}: expected a mapping at top level")
            if "unsupported" in data:
                unsupported.update(_unsupported_entries(data["unsupported"], path))
                continue
            spec, overrides = data.get("variants"), data.get("overrides")
            if not isinstance(spec, dict) or not isinstance(overrides, dict):
                raise UserError(f"{path}: a family file needs 'variants' {{bases, name}} and 'overrides'")
            families.append(VariantFamily(path, path.parent.name, path.stem, _bases(spec.get("bases"), path),
                                          _pattern(spec.get("name"), path), dict(overrides)))
        _CATALOGUE.clear()
        _CATALOGUE[key] = (families, unsupported)
    return _CATALOGUE[key]


def _unsupported_entries(entries: Any, path: Path) -> dict[str, str]:
    if not isinstance(entries, list):
        raise UserError(f"{path}: 'unsupported' must be a list of {{name, bases, reason}}")
    out = {}
    for entry in entries:
        reason = entry.get("reason") if isinstance(entry, dict) else None
        if not isinstance(reason, str) or not reason.strip() or "\n" in reason.strip():
            raise UserError(f"{path}: every unsupported entry needs a one-line 'reason'")
        pattern = _pattern(entry.get("name"), path)
        for base in _bases(entry.get("bases"), path):
            out[pattern.replace("{base}", base)] = reason.strip()
    return out


def _variants() -> dict[str, tuple[VariantFamily, str]]:
    """Generated suite name -> (its family, its base); names must be unique."""
    out: dict[str, tuple[VariantFamily, str]] = {}
    taken = {p.stem for p in suites_dir().glob("*.yaml")}
    for family in variant_families():
        for base in family.bases:
            name = family.name_for(base)
            if name in taken or name in out:
                raise UserError(f"{family.path}: suite name '{name}' is defined twice")
            out[name] = (family, base)
    return out


def _variant(name: str) -> tuple[VariantFamily, str]:
    """The family and base of a generated suite; one clear UserError when unknown or unsupported."""
    variants = _variants()
    if name in variants:
        return variants[name]
    reason = unsupported_suites().get(name)
    if reason is not None:
        raise UserError(f"suite '{name}' is not supported: {reason}")
    raise UserError(f"unknown suite '{name}'; available: {', '.join(available_suites())}")


def _variant_data(name: str, family: VariantFamily, base: str) -> dict[str, Any]:
    """The base suite's YAML mapping with the family's overrides merged over it."""
    base_path = suites_dir() / f"{base}.yaml"
    data = _load_yaml(base_path)
    if not isinstance(data, dict):
        raise UserError(f"{base_path}: expected a mapping at top level")
    merged = _merge(data, _resolve(family.overrides, base, family.path))
    merged["name"] = name
    return merged


def _resolve(value: Any, base: str, where: Path) -> Any:
    """Substitute {base} in strings and pick {per_base: ...} values, recursively."""
    if isinstance(value, dict):
        if set(value) == {"per_base"}:
            choices = value["per_base"]
            if not isinstance(choices, dict) or (base not in choices and "default" not in choices):
                raise UserError(f"{where}: per_base needs an entry for '{base}' or a 'default'")
            return _resolve(choices.get(base, choices.get("default")), base, where)
        return {k: _resolve(v, base, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, base, where) for v in value]
    return value.replace("{base}", base) if isinstance(value, str) else value


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        current = out.get(key)
        out[key] = _merge(current, value) if isinstance(current, dict) and isinstance(value, dict) else value
    return out


CHECKPOINT_FIELDS = ("repo", "robot_type", "suites", "reported", "tiny", "like_release")
# A Hugging Face repo id as the hub accepts it: owner/name, ASCII letters, digits, "_", "-", ".",
# no "--" or ".." (huggingface_hub validate_repo_id), at most 96 characters each side.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}", re.ASCII)


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint: where to load it from and what was reported for it.

    listed: an entry of checkpoints.yaml (or a hub id listed there). Any other hub id or local folder
    is unlisted: its suites, robot type and reported numbers come from --suites, or from the listed
    checkpoint named by `like` (--like, or a local folder named like a released checkpoint).
    """

    name: str
    repo: str | None = None
    path: str | None = None
    robot_type: str | None = None
    suites: tuple[str, ...] = ()
    reported: dict[str, dict[str, float]] = field(default_factory=dict)
    tiny: bool = False
    like_release: bool = False  # tiny only: as limited as the released checkpoints
    listed: bool = False
    like: str | None = None  # the listed checkpoint whose suites, robot type and numbers it inherits
    like_by: str | None = None  # how: "--like" or "folder name"

    def robot_type_for(self, suite: SuiteProtocol) -> str:
        return self.robot_type or suite.default_robot_type

    @property
    def origin(self) -> str | None:
        """Where an unlisted checkpoint comes from: "hf:OWNER/NAME" or "local:/ABSOLUTE/FOLDER"."""
        if self.listed or self.tiny:
            return None
        if self.path:
            return f"local:{self.path}"
        return f"hf:{self.repo}" if self.repo else None

    def inherited(self) -> dict[str, Any] | None:
        """What it inherited from `like`, as the manifest's checkpoint entry records it."""
        if self.like is None:
            return None
        return {"name": self.like, "by": self.like_by, "suites": list(self.suites),
                "robot_type": self.robot_type, "reported": self.reported}


def load_checkpoints(path: Path | None = None) -> dict[str, CheckpointInfo]:
    """checkpoints.yaml's entries by name; a malformed entry fails with one line naming it."""
    path = path or checkpoints_file()
    data = _load_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("checkpoints"), dict):
        raise UserError(f"{path}: expected a top-level 'checkpoints' mapping")
    return {str(name): _checkpoint_entry(str(name), entry, path)
            for name, entry in data["checkpoints"].items()}


def _checkpoint_entry(name: str, entry: Any, path: Path) -> CheckpointInfo:
    where = f"{path}: checkpoint '{name}'"
    if not isinstance(entry, dict):
        raise UserError(f"{where} must be a mapping")
    unknown = sorted(set(entry) - set(CHECKPOINT_FIELDS))
    if unknown:
        raise UserError(f"{where}: unknown field(s) {', '.join(map(str, unknown))} "
                        f"(known: {', '.join(CHECKPOINT_FIELDS)})")
    for key in ("repo", "robot_type"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            raise UserError(f"{where}: '{key}' must be a string, got {entry[key]!r}")
    if entry.get("repo") is not None and not is_hub_id(entry["repo"]):
        raise UserError(f"{where}: 'repo' must be a hub id owner/name, got {entry['repo']!r}")
    suites = entry.get("suites") or []
    if not isinstance(suites, list) or not all(isinstance(s, str) for s in suites):
        raise UserError(f"{where}: 'suites' must be a list of suite names, got {suites!r}")
    reported = entry.get("reported") or {}
    if not isinstance(reported, dict) or not all(
        isinstance(metrics, dict) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                          for v in metrics.values())
        for metrics in reported.values()
    ):
        raise UserError(f"{where}: 'reported' must map suite -> {{metric: number}}, got {reported!r}")
    for key in ("tiny", "like_release"):
        if not isinstance(entry.get(key, False), bool):
            raise UserError(f"{where}: '{key}' must be true or false, got {entry[key]!r}")
    if not entry.get("tiny") and not entry.get("repo"):
        raise UserError(f"{where} needs a 'repo' (hub id owner/name)")
    return CheckpointInfo(
        name=name, repo=entry.get("repo"), robot_type=entry.get("robot_type"), suites=tuple(suites),
        reported={str(k): {str(m): float(x) for m, x in v.items()} for k, v in reported.items()},
        tiny=bool(entry.get("tiny", False)), like_release=bool(entry.get("like_release", False)),
        listed=True,
    )


def is_hub_id(text: str) -> bool:
    """Whether `text` is spelled as a Hugging Face repo id (owner/name)."""
    return bool(_HUB_ID.fullmatch(text)) and "--" not in text and ".." not in text


def listed_checkpoint(name: str, checkpoints: dict[str, CheckpointInfo] | None = None
                      ) -> CheckpointInfo | None:
    """The checkpoints.yaml entry named `name` or whose repo is `name`; None when there is none."""
    checkpoints = load_checkpoints() if checkpoints is None else checkpoints
    if name in checkpoints:
        return checkpoints[name]
    return next((info for info in checkpoints.values() if info.repo == name), None)


def resolve_checkpoint(name_or_path: str, like: str | None = None) -> CheckpointInfo:
    """What --checkpoint names: an entry of checkpoints.yaml (by name or hub id), else an existing
    local checkpoint folder, else any hub id (owner/name; its files are found later, by
    policy/checkpoint.py, in the local Hugging Face cache or on the hub).

    like: a listed checkpoint whose suites, robot type and reported numbers an unlisted one inherits
    (a local folder named like a released checkpoint inherits that one's unless `like` says another).
    One clear UserError line for anything else, e.g. a mistyped local path.
    """
    checkpoints = load_checkpoints()
    listed = listed_checkpoint(name_or_path, checkpoints)
    if listed is not None:
        if like is not None:
            raise UserError(f"--like is for checkpoints not in checkpoints.yaml; '{name_or_path}' is listed "
                            "there with its own suites and reported numbers (report --compare-with NAME "
                            "compares a run with another entry's numbers)")
        return listed
    base = _like_entry(like, checkpoints)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"{name_or_path}: not a checkpoint folder (no config.json in it)")
        path, by = path.resolve(), "--like"  # named by the folder itself (not a symlink to it, not ".")
        if base is None:  # a local copy of a released checkpoint keeps its numbers when named like it
            base = next((info for info in checkpoints.values()
                         if info.repo and path.name == info.repo.split("/")[-1]), None)
            by = "folder name"
        return _inherit(CheckpointInfo(name=path.name, path=str(path)), base, by)
    if path.exists():
        raise UserError(f"{name_or_path}: a file, not a checkpoint folder (give the folder that holds "
                        "config.json)")
    if _looks_like_path(name_or_path):
        raise UserError(_missing_folder(name_or_path))
    if is_hub_id(name_or_path):
        return _inherit(CheckpointInfo(name=name_or_path, repo=name_or_path), base, "--like")
    raise UserError(
        f"unknown checkpoint '{name_or_path}': not in checkpoints.yaml ({', '.join(checkpoints)}), "
        "not a local folder, and not a hub id (owner/name)"
    )


def named_checkpoint(name: str, like: str | None = None) -> CheckpointInfo:
    """A checkpoint known only by its name (a Python policy object, or a policy server's folder this
    machine does not have), with what it inherits from `like`."""
    return _inherit(CheckpointInfo(name=name), _like_entry(like, load_checkpoints()), "--like")


def _like_entry(like: str | None, checkpoints: dict[str, CheckpointInfo]) -> CheckpointInfo | None:
    if like is None:
        return None
    entry = listed_checkpoint(like, checkpoints)
    if entry is None:
        raise UserError(f"--like {like}: not in checkpoints.yaml (listed: {', '.join(checkpoints)})")
    return entry


def _inherit(info: CheckpointInfo, base: CheckpointInfo | None, by: str) -> CheckpointInfo:
    if base is None:
        return info
    return replace(info, suites=base.suites, robot_type=base.robot_type, reported=dict(base.reported),
                   like=base.name, like_by=by)


def _looks_like_path(text: str) -> bool:
    """Written as a path (./x, ../x, /x, ~/x, x/, a/b/c, a\\b), or its first part exists here."""
    if text.startswith((".", "/", "~")) or text.endswith("/") or "\\" in text or text.count("/") > 1:
        return True
    first = text.split("/", 1)[0]
    return "/" in text and Path(first).exists()


def _missing_folder(text: str) -> str:
    """One line for a local path that does not exist: the deepest part that does and what it holds."""
    path = Path(text).expanduser()
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    missing = path.relative_to(existing).parts[0]
    folders = sorted(p.name for p in existing.iterdir() if p.is_dir() and not p.name.startswith("."))
    holds = f" (it holds {', '.join(folders[:8])}{', ...' if len(folders) > 8 else ''})" if folders else ""
    why = "" if text.startswith((".", "/", "~")) else \
        " (read as a local path: it is written as one or its first part exists here)"
    return (f"no checkpoint folder '{text}'{why}: {existing} has no '{missing}'{holds}; "
            "a hub id is written owner/name")


# -- aggregation rules (checkpoints.yaml `aggregates:`) ------------------------------------------
RULES = ("mean_of_suites", "mean_of_tasks", "mean_of_task_groups", "chain_success")


@dataclass(frozen=True)
class AggregateRule:
    """One entry of checkpoints.yaml `aggregates:` (read and validated by load_aggregates)."""

    key: str  # reported-number key: an aggregate ("libero") or a suite ("simpler_google_vm")
    name: str  # entry name ("average"; for chain_success only a label)
    rule: str
    suites: tuple[str, ...]
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()  # task groups (mean_of_task_groups)
    length: int = 5  # chain_success
    source: str = ""

    def metrics(self) -> tuple[str, ...]:
        """Names of the metrics the rule produces (as checkpoints.yaml `reported` spells them)."""
        if self.rule == "chain_success":
            return (*(f"chain_{k}" for k in range(1, self.length + 1)), "avg_len")
        return (self.name,)


def load_aggregates(path: Path | None = None) -> list[AggregateRule]:
    """Read and validate checkpoints.yaml `aggregates:`; one clear UserError line when malformed.

    Schema: aggregates: {KEY: {NAME: {rule, ..., source}}}, KEY being the key the release reports
    the number under (checkpoints.yaml `reported`), NAME the metric (e.g. average):
      rule: mean_of_suites       suites: [s1, s2, ...]   mean of the suites' success rates
      rule: mean_of_tasks        suite: S (default KEY); tasks: [t1, ...]   mean of task rates
      rule: mean_of_task_groups  suite, tasks as above; groups: {G: [t1, t2]} pools tasks into one
                                 group (its members' trials pooled); other tasks are groups alone
      rule: chain_success        suite (default KEY); length: 5   produces chain_1..chain_L and
                                 avg_len from each record's metrics.completed
    """
    path = path or checkpoints_file()
    data = _load_yaml(path)
    section = (data or {}).get("aggregates") if isinstance(data, dict) else None
    if section is None:
        return []
    if not isinstance(section, dict):
        raise UserError(f"{path}: 'aggregates' must map a key to its metrics")
    rules = []
    for key, entries in section.items():
        if not isinstance(entries, dict):
            raise UserError(f"{path}: aggregates.{key} must map metric names to rules")
        for name, entry in entries.items():
            rules.append(_parse_rule(str(key), str(name), entry, f"{path}: aggregates.{key}.{name}"))
    return rules


def _rule_names(value: Any, where: str, field_name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise UserError(f"{where}: '{field_name}' must be a non-empty list of names, got {value!r}")
    return tuple(value)


def _parse_rule(key: str, name: str, entry: Any, where: str) -> AggregateRule:
    if not isinstance(entry, dict):
        raise UserError(f"{where}: expected a mapping with 'rule', members and 'source'")
    rule = entry.get("rule")
    if rule not in RULES:
        raise UserError(f"{where}: unknown rule {rule!r} (expected one of {', '.join(RULES)})")
    source = entry.get("source")
    if not isinstance(source, str) or not source.strip():
        raise UserError(f"{where}: missing 'source' (where the rule comes from)")
    suite = entry.get("suite", key)
    if rule == "mean_of_suites":
        return AggregateRule(key, name, rule, _rule_names(entry.get("suites"), where, "suites"),
                             source=source)
    if not isinstance(suite, str):
        raise UserError(f"{where}: 'suite' must be a suite name, got {suite!r}")
    if rule == "chain_success":
        length = entry.get("length", 5)
        if not isinstance(length, int) or isinstance(length, bool) or length <= 0:
            raise UserError(f"{where}: 'length' must be a positive integer, got {length!r}")
        return AggregateRule(key, name, rule, (suite,), length=length, source=source)
    tasks = _rule_names(entry.get("tasks"), where, "tasks")
    pooled = entry.get("groups") or {}
    if rule == "mean_of_tasks" and pooled:
        raise UserError(f"{where}: 'groups' needs rule mean_of_task_groups")
    if not isinstance(pooled, dict):
        raise UserError(f"{where}: 'groups' must map a group name to a list of tasks")
    member_of: dict[str, str] = {}
    for group, members in pooled.items():
        for task in _rule_names(members, where, f"groups.{group}"):
            if task not in tasks or task in member_of:
                raise UserError(f"{where}: group '{group}' member '{task}' must be listed once in 'tasks'")
            member_of[task] = str(group)
    groups: list[tuple[str, tuple[str, ...]]] = []
    for task in tasks:
        group = member_of.get(task)
        if group is None:
            groups.append((task, (task,)))
        elif group not in [g for g, _ in groups]:
            groups.append((group, tuple(_rule_names(pooled[group], where, f"groups.{group}"))))
    return AggregateRule(key, name, rule, (suite,), tuple(groups), source=source)
