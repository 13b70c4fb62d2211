"""Checkpoints like the release: the like-release tiny one (the released forward's limits, taken by
the harness's batch-1 path) and the release-size one (dimensions and parameter count, on the meta
device: no weights are ever materialised here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")

from mibot_eval.policy.prompt import build_prompt  # noqa: E402
from mibot_eval.tiny import checkpoint as tiny  # noqa: E402
from mibot_eval.tiny import sizes, weights  # noqa: E402
from mibot_eval.types import Observation, PolicyRequest  # noqa: E402

TWO_VIEWS = ["Base View", "Left-Wrist View"]


@pytest.fixture(scope="module")
def like_release() -> Path:
    return tiny.ensure_tiny_checkpoint(like_release=True)


def _load(path: Path, dtype=torch.float32):
    model = transformers.AutoModel.from_pretrained(
        str(path), trust_remote_code=True, attn_implementation="sdpa", dtype=dtype
    )
    return model.eval()


@pytest.fixture(scope="module")
def model(like_release: Path):
    return _load(like_release)


@pytest.fixture(scope="module")
def processor(like_release: Path):
    return transformers.AutoProcessor.from_pretrained(
        str(like_release), trust_remote_code=True, use_fast=False
    )


def _inputs(processor, batch: int = 1, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)) for _ in range(2 * batch)]
    prompts = [build_prompt(TWO_VIEWS, f"Pick up object {i}.") for i in range(batch)]
    inputs = dict(processor(text=prompts, images=images, padding=True, return_tensors="pt"))
    inputs["state"] = torch.from_numpy(rng.normal(size=(batch, 1, 32)).astype(np.float32))
    inputs["action_mask"] = processor.get_action_mask("libero_all", batch_size=batch)
    return inputs


def _request(i: int, prefix=None) -> PolicyRequest:
    rng = np.random.default_rng(100 + i)
    images = {view: rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for view in TWO_VIEWS}
    obs = Observation(images, rng.normal(size=8).astype(np.float32), f"Put object {i} in the basket.")
    return PolicyRequest(obs, "libero_all", prefix=prefix)


# -- like-release ---------------------------------------------------------------------------------


def test_cached_beside_the_tiny_one_with_the_same_files(like_release: Path, tiny_checkpoint: Path) -> None:
    assert like_release == tiny.tiny_checkpoint_path(like_release=True).resolve()
    assert like_release.parent == tiny_checkpoint.parent
    assert like_release.name == tiny_checkpoint.name + "-like-release"
    assert tiny.is_complete(like_release, like_release=True) and not tiny.is_complete(like_release)
    assert not tiny.is_complete(tiny_checkpoint, like_release=True)
    shared = ["model.safetensors", "vocab.json", "merges.txt", "tokenizer.json", "preprocessor_config.json",
              *tiny.REMOTE_FILES]
    for name in shared:
        assert (like_release / name).read_bytes() == (tiny_checkpoint / name).read_bytes(), name
    mine, theirs = (json.loads((p / "config.json").read_text()) for p in (like_release, tiny_checkpoint))
    assert mine.pop("release_interface") is True and theirs.pop("release_interface") is False
    assert mine == theirs


def test_declares_neither_per_sample_seed_nor_prefix(model) -> None:
    assert type(model).__name__ == "MiBoTForActionGeneration"
    assert getattr(model, "supports_per_sample_seed", False) is False
    assert getattr(model, "supports_prefix_actions", False) is False


NOT_ONE_INT = {"list": [1, 2], "one-element list": [1], "tuple": (1, 2), "tensor": torch.tensor([1, 2]),
               "array": np.array([1, 2]), "bool": True}


@pytest.mark.parametrize("kind", sorted(NOT_ONE_INT))
def test_seed_must_be_one_int(model, processor, kind: str) -> None:
    with pytest.raises(TypeError, match="seed must be one int"), torch.inference_mode():
        model(**_inputs(processor, batch=2), seed=NOT_ONE_INT[kind])


@pytest.mark.parametrize("extra", [
    {"prefix_actions": torch.zeros(1, 3, 32)},
    {"prefix_length": 2},
    {"prefix_actions": None},
])
def test_prefix_inputs_are_unexpected_keyword_arguments(model, processor, extra) -> None:
    expected = f"got an unexpected keyword argument '{next(iter(extra))}'"
    with pytest.raises(TypeError, match=expected), torch.inference_mode():
        model(**_inputs(processor), seed=3, **extra)


def test_one_sample_equals_the_tiny_model(model, processor, tiny_checkpoint: Path) -> None:
    reference = _load(tiny_checkpoint)
    inputs = _inputs(processor, seed=4)
    with torch.inference_mode():
        mine = model(**inputs, seed=1234).actions
        theirs = reference(**inputs, seed=1234).actions
        batch = model(**_inputs(processor, batch=2, seed=4), seed=1234).actions
    assert torch.equal(mine, theirs)
    assert batch.shape == (2, 10, 32) and bool(torch.isfinite(batch).all())


def test_hf_policy_runs_one_forward_per_request_with_an_int_seed(
    like_release: Path, tiny_checkpoint: Path
) -> None:
    from mibot_eval.policy.hf import HFPolicy

    policy = HFPolicy(like_release, device="cpu")
    assert not policy.describe()["batched_per_sample_seed"] and not policy.describe()["prefix_actions"]
    calls: list[dict] = []

    def record(module, args, kwargs):
        calls.append(kwargs)

    handle = policy.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        chunks = policy.infer([_request(0), _request(1), _request(2, prefix=np.zeros((3, 7), np.float32))])
    finally:
        handle.remove()
    assert len(calls) == 3
    for kwargs in calls:
        assert type(kwargs["seed"]) is int
        assert kwargs["input_ids"].shape[0] == 1 and kwargs["state"].shape == (1, 1, 32)
        assert "prefix_actions" not in kwargs and "prefix_length" not in kwargs
    # the tiny checkpoint batches the same requests with per-sample seeds: same chunks
    batched = HFPolicy(tiny_checkpoint, device="cpu").infer([_request(0), _request(1), _request(2)])
    for mine, theirs in zip(chunks, batched, strict=True):
        assert mine.shape == (10, 32) and mine.dtype == np.float32
        np.testing.assert_allclose(mine, theirs, atol=1e-5)


def test_release_dtype_path(like_release: Path, processor, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = _load(like_release, dtype=torch.bfloat16)
    left_fp32 = sorted(n for n, p in loaded.named_parameters() if p.dtype == torch.float32)
    assert left_fp32 and all(n.startswith("t_embedder.") for n in left_fp32)
    assert any(b.dtype == torch.float32 for _, b in loaded.named_buffers())  # rotary inv_freq
    inputs = _inputs(processor)
    inputs["state"] = inputs["state"].to(torch.bfloat16)
    with torch.inference_mode():
        before = loaded(**inputs, seed=9).actions
    cast = loaded.to(torch.bfloat16)  # the release server's final cast
    tensors = [*cast.parameters(), *cast.buffers()]
    assert all(t.dtype == torch.bfloat16 for t in tensors if t.is_floating_point())
    with torch.inference_mode():
        after = cast(**inputs, seed=9).actions
    assert before.dtype == after.dtype == torch.bfloat16 and bool(torch.isfinite(after).all())
    decoded = processor.decode_action(after, robot_type="libero_all")
    assert decoded.dtype == torch.float32 and decoded.numpy().shape == (1, 10, 32)

    from mibot_eval.policy import hf

    monkeypatch.setattr(hf, "choose_runtime", lambda device: ("cpu", "bfloat16", "sdpa"))  # the CUDA rule
    policy = hf.HFPolicy(like_release)
    tensors = [*policy.model.parameters(), *policy.model.buffers()]
    assert all(t.dtype == torch.bfloat16 for t in tensors if t.is_floating_point())
    chunk = policy.infer([_request(5)])[0]
    assert chunk.shape == (10, 32) and chunk.dtype == np.float32 and np.isfinite(chunk).all()


def test_cli_writes_like_release(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mibot_eval.cli import main

    assert main(["tiny-checkpoint", str(tmp_path / "lr"), "--like-release"]) == 0
    out = Path(capsys.readouterr().out.strip())
    assert out == (tmp_path / "lr").resolve() and tiny.is_complete(out, like_release=True)


# -- release size ---------------------------------------------------------------------------------

# Qwen/Qwen3-VL-4B-Instruct's config.json (sizes.py), written out again so a typo there fails here.
RELEASE_TEXT = {"hidden_size": 2560, "num_hidden_layers": 36, "num_attention_heads": 32,
                "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 9728, "vocab_size": 151936,
                "tie_word_embeddings": True}
RELEASE_VISION = {"depth": 24, "hidden_size": 1024, "num_heads": 16, "intermediate_size": 4096,
                  "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
                  "out_hidden_size": 2560, "deepstack_visual_indexes": [5, 11, 17]}
RELEASE_DIT = {"num_hidden_layers": 16, "hidden_size": 1024, "num_key_value_heads": 8, "head_dim": 128}


def test_release_size_config_and_parameter_count_on_meta(tmp_path: Path, capsys) -> None:
    from mibot_eval.cli import main

    assert main(["tiny-checkpoint", str(tmp_path / "rel"), "--size", "release", "--config-only"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert tiny.is_complete(path, size="release", weights=False) and not tiny.is_complete(path)
    assert not list(path.glob("*.safetensors*"))
    config = transformers.AutoConfig.from_pretrained(str(path), trust_remote_code=True)
    text, vision, dit = config.vlm_config.text_config, config.vlm_config.vision_config, config.dit_config
    assert {k: getattr(text, k) for k in RELEASE_TEXT} == RELEASE_TEXT
    assert {k: getattr(vision, k) for k in RELEASE_VISION} == RELEASE_VISION
    assert {k: getattr(dit, k) for k in RELEASE_DIT} == RELEASE_DIT
    assert config.vlm_config.tie_word_embeddings and not config.release_interface
    with torch.device("meta"):
        model = transformers.AutoModel.from_config(config, trust_remote_code=True)
    assert all(p.is_meta for p in model.parameters())
    counts = sizes.parameter_counts(model)
    for part in ("total", "vlm", "dit"):
        assert counts[part] == pytest.approx(sizes.RELEASE_PARAMETERS[part], rel=0.02), (part, counts)
    # the DiT reads the KV cache of the last 16 of the 36 VLM layers
    assert len(model.dit_layers) == 16 and len(model.vlm.language_model.layers) == 36
    processor = transformers.AutoProcessor.from_pretrained(str(path), trust_remote_code=True, use_fast=False)
    inputs = _inputs(processor)
    assert inputs["image_grid_thw"].tolist() == [[1, 16, 16], [1, 16, 16]]  # 64 tokens per 256x256 view


def test_release_size_needs_a_directory(capsys) -> None:
    from mibot_eval.cli import main

    assert main(["tiny-checkpoint", "--size", "release"]) == 2
    assert "need a DIRECTORY" in capsys.readouterr().err


def test_streamed_bf16_shards_load(tmp_path: Path) -> None:
    path = tiny.write_tiny_checkpoint(tmp_path / "sharded", weights=False)
    config = transformers.AutoConfig.from_pretrained(str(path), trust_remote_code=True)
    with torch.device("meta"):
        skeleton = transformers.AutoModel.from_config(config, trust_remote_code=True)
    total = weights.write_random_shards(skeleton, path, seed=0, shard_bytes=100_000)
    index = json.loads((path / weights.INDEX_NAME).read_text())
    shards = sorted(path.glob("model-*.safetensors"))
    assert len(shards) > 3 and set(index["weight_map"].values()) == {p.name for p in shards}
    assert index["metadata"]["total_size"] == total == 2 * sizes.parameter_counts(skeleton)["total"]
    first = {p.name: p.read_bytes() for p in shards}
    weights.write_random_shards(skeleton, path, seed=0, shard_bytes=100_000)
    assert {p.name: p.read_bytes() for p in shards} == first  # per-tensor seeds: deterministic
    loaded, info = transformers.AutoModel.from_pretrained(
        str(path), trust_remote_code=True, dtype=torch.bfloat16, output_loading_info=True
    )
    assert info["missing_keys"] == [] and info["unexpected_keys"] == [] and info["mismatched_keys"] == []
    norms = [p for n, p in loaded.named_parameters() if n.endswith("norm.weight")]
    assert norms and all(bool((p == 1).all()) for p in norms)
    processor = transformers.AutoProcessor.from_pretrained(str(path), trust_remote_code=True, use_fast=False)
    with torch.inference_mode():
        actions = loaded.to(torch.bfloat16)(**_inputs(processor), seed=[1]).actions
    assert actions.shape == (1, 10, 32) and bool(torch.isfinite(actions).all())


def test_plan_shards_bounds_each_shard() -> None:
    entries = [("a", (10,)), ("b", (30,)), ("c", (100,)), ("d", (5,)), ("e", (5,))]
    plan = weights.plan_shards(entries, itemsize=2, shard_bytes=100)
    assert [[name for name, _ in shard] for shard in plan] == [["a", "b"], ["c"], ["d", "e"]]
