"""The tiny offline checkpoint speaks the released Xiaomi-Robotics-0 remote-code interface."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")

from mibot_eval.policy.prompt import build_prompt  # noqa: E402
from mibot_eval.tiny import checkpoint as tiny  # noqa: E402

torch.set_num_threads(1)
TWO_VIEWS = ["Base View", "Left-Wrist View"]
INSTRUCTIONS = [
    "Pick up the black bowl and place it on the plate.",
    "Turn on the stove.",
    "Open the middle drawer of the cabinet.",
    "Put both moka pots on the stove.",
]
EXPECTED_T = {
    "libero_all": 10,
    "calvin_abc_orig": 10,
    "calvin_abcd_orig": 10,
    "fractal_delta": 4,
    "bridge_delta": 4,
}
PROCESSOR_REF = "processing_mibot.MiBotProcessor"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    os.environ["HF_HUB_OFFLINE"] = "1"
    return tiny.write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", seed=0)


@pytest.fixture(scope="module")
def model(ckpt: Path):
    m = transformers.AutoModel.from_pretrained(
        str(ckpt), trust_remote_code=True, attn_implementation="sdpa", dtype=torch.float32
    )
    return m.eval()


@pytest.fixture(scope="module")
def processor(ckpt: Path):
    return transformers.AutoProcessor.from_pretrained(str(ckpt), trust_remote_code=True, use_fast=False)


def _images(n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)) for _ in range(n)]


def _run(model, processor, instructions, images, state, seed, robot_type="libero_all", **kwargs):
    prompts = [build_prompt(TWO_VIEWS, text) for text in instructions]
    inputs = processor(text=prompts, images=images, padding=True, return_tensors="pt")
    mask = processor.get_action_mask(robot_type, batch_size=len(prompts))
    with torch.inference_mode():
        return model(**inputs, state=state, action_mask=mask, seed=seed, **kwargs).actions


def _state(batch: int = 1, seed: int = 0) -> torch.Tensor:
    state = torch.zeros(batch, 1, 32)
    state[:, 0, :8] = torch.from_numpy(np.random.default_rng(seed).normal(size=(batch, 8)).astype(np.float32))
    return state


def test_files_size_and_config(ckpt: Path) -> None:
    config = json.loads((ckpt / "config.json").read_text())
    assert config["model_type"] == "mibot"
    assert config["architectures"] == ["MiBoTForActionGeneration"]
    assert config["auto_map"] == tiny.AUTO_MAP_MODEL
    assert config["vlm_config"]["model_type"] == "qwen3_vl" and "dit_config" in config
    for name in (*tiny.REMOTE_FILES, "model.safetensors", "vocab.json", "merges.txt", "tokenizer.json"):
        assert (ckpt / name).is_file(), name
    for name in ("preprocessor_config.json", "processor_config.json", "tokenizer_config.json"):
        assert json.loads((ckpt / name).read_text())["auto_map"]["AutoProcessor"] == PROCESSOR_REF
    size = sum(p.stat().st_size for p in ckpt.rglob("*") if p.is_file())
    assert size < 20 * 2**20
    assert [p.name for p in ckpt.parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name] == []


def test_loads_without_missing_or_unexpected_keys(ckpt: Path, model) -> None:
    _, info = transformers.AutoModel.from_pretrained(
        str(ckpt), trust_remote_code=True, dtype=torch.float32, output_loading_info=True
    )
    assert info["missing_keys"] == [] and info["unexpected_keys"] == [] and info["mismatched_keys"] == []
    assert type(model).__name__ == "MiBoTForActionGeneration"
    assert model.supports_per_sample_seed and model.supports_prefix_actions
    assert model.vlm.language_model.config._attn_implementation == "sdpa"


def test_flash_attention_without_flash_attn_raises(ckpt: Path) -> None:
    if importlib.util.find_spec("flash_attn") is not None:
        pytest.skip("flash-attn is installed")
    with pytest.raises(ImportError):
        transformers.AutoModel.from_pretrained(
            str(ckpt), trust_remote_code=True, attn_implementation="flash_attention_2", dtype=torch.float32
        )


def test_official_prompt_tokenizes(processor) -> None:
    tok = processor.tokenizer
    assert type(tok).__name__ == "Qwen2Tokenizer" and tok.padding_side == "left"
    prompt = build_prompt(TWO_VIEWS, INSTRUCTIONS[0])
    ids = tok(prompt)["input_ids"]
    assert tok.decode(ids) == prompt
    specials = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"]
    for token in [*specials, "<|endoftext|>", "<cot>", "</cot>"]:
        token_id = tok.convert_tokens_to_ids(token)
        assert tok(token)["input_ids"] == [token_id]
    assert ids.count(tok.convert_tokens_to_ids("<|image_pad|>")) == 2
    assert ids.count(tok.convert_tokens_to_ids("<|im_start|>")) == 2
    fast = transformers.AutoTokenizer.from_pretrained(tok.name_or_path, use_fast=True)
    assert type(fast).__name__ == "Qwen2TokenizerFast" and fast(prompt)["input_ids"] == ids


def test_processor_expands_images_and_pads_left(processor) -> None:
    prompts = [build_prompt(TWO_VIEWS, INSTRUCTIONS[0]), build_prompt(["Ego View"], "Pick coke can.")]
    inputs = processor(text=prompts, images=_images(3), padding=True, return_tensors="pt")
    grid = inputs["image_grid_thw"]
    assert grid.shape == (3, 3) and inputs["pixel_values"].shape[0] == int(grid.prod(-1).sum())
    per_image = grid.prod(-1) // processor.image_processor.merge_size**2
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    counts = (inputs["input_ids"] == image_id).sum(-1).tolist()
    assert counts == [int(per_image[0] + per_image[1]), int(per_image[2])]
    assert inputs["attention_mask"][1, 0] == 0 and inputs["attention_mask"][:, -1].all()
    with pytest.raises(ValueError):
        processor(text=prompts, images=_images(2), padding=True, return_tensors="pt")


def test_every_robot_type_shapes_mask_and_decode(model, processor, ckpt: Path) -> None:
    stats = json.loads((ckpt / "preprocessor_config.json").read_text())["action_config"]
    assert sorted(processor.list_robot_types()) == sorted(EXPECTED_T) == sorted(stats)
    for robot_type, horizon in EXPECTED_T.items():
        mask = processor.get_action_mask(robot_type, batch_size=2)
        assert mask.shape == (2, horizon, 32)
        assert bool(mask[..., :7].all()) and not bool(mask[..., 7:].any())
        actions = _run(model, processor, INSTRUCTIONS[:2], _images(4), _state(2), [1, 2], robot_type)
        assert actions.shape == (2, horizon, 32)
        assert torch.all(actions[..., 7:] == 0)
        mean, std = torch.tensor(stats[robot_type]["mean"]), torch.tensor(stats[robot_type]["std"])
        decoded = processor.decode_action(actions, robot_type=robot_type)
        assert isinstance(decoded, torch.Tensor)
        torch.testing.assert_close(decoded, actions * std + mean)
        outside = ((decoded - mean).abs() > 3 * std)[..., :7].float().mean().item()
        assert outside < 0.1


def test_unknown_robot_type_raises_keyerror(processor) -> None:
    with pytest.raises(KeyError):
        processor.get_action_mask("no_such_robot")
    with pytest.raises(KeyError):
        processor.decode_action(torch.zeros(1, 10, 32), robot_type="no_such_robot")


def test_seed_is_required_and_determines_noise(model, processor) -> None:
    images, state = _images(2), _state()
    with pytest.raises(ValueError, match="seed"):
        _run(model, processor, INSTRUCTIONS[:1], images, state, None)
    a = _run(model, processor, INSTRUCTIONS[:1], images, state, 1234)
    b = _run(model, processor, INSTRUCTIONS[:1], images, state, 1234)
    c = _run(model, processor, INSTRUCTIONS[:1], images, state, 1235)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 0.1


def test_batched_per_sample_seeds_equal_single_calls(model, processor) -> None:
    images, state, seeds = _images(8, seed=3), _state(4, seed=3), [11, 22, 33, 44]
    batched = _run(model, processor, INSTRUCTIONS, images, state, torch.tensor(seeds))
    for i in range(4):
        views = images[2 * i : 2 * i + 2]
        single = _run(model, processor, INSTRUCTIONS[i : i + 1], views, state[i : i + 1], seeds[i])
        torch.testing.assert_close(batched[i : i + 1], single, atol=1e-5, rtol=0)
    same = _run(model, processor, INSTRUCTIONS[:2], images[:4], state[:2], 7)
    torch.testing.assert_close(same, _run(model, processor, INSTRUCTIONS[:2], images[:4], state[:2], [7, 7]))


def test_outputs_depend_on_images_instruction_and_state(model, processor) -> None:
    images, state = _images(2), _state()
    base = _run(model, processor, INSTRUCTIONS[:1], images, state, 5)
    other_image = _run(model, processor, INSTRUCTIONS[:1], [_images(1, seed=9)[0], images[1]], state, 5)
    other_text = _run(model, processor, INSTRUCTIONS[1:2], images, state, 5)
    other_state = _run(model, processor, INSTRUCTIONS[:1], images, _state(seed=9), 5)
    for changed in (other_image, other_text, other_state):
        assert (changed - base).abs().max() > 1e-3


def test_prefix_actions_are_respected(model, processor) -> None:
    images, state, seeds = _images(4), _state(2), [3, 4]
    mask = processor.get_action_mask("libero_all", batch_size=2)
    prefix = torch.randn(2, 3, 32, generator=torch.Generator().manual_seed(0))
    free = _run(model, processor, INSTRUCTIONS[:2], images, state, seeds)
    held = _run(model, processor, INSTRUCTIONS[:2], images, state, seeds, prefix_actions=prefix)
    assert torch.equal(held[:, :3], prefix * mask[:, :3])
    assert (held[:, 3:] - free[:, 3:]).abs().max() > 1e-3
    partial = _run(
        model, processor, INSTRUCTIONS[:2], images, state, seeds, prefix_actions=prefix, prefix_length=[0, 2]
    )
    torch.testing.assert_close(partial[0], free[0], atol=1e-6, rtol=0)
    assert torch.equal(partial[1, :2], (prefix * mask[:, :3])[1, :2])
    with pytest.raises(ValueError):
        _run(model, processor, INSTRUCTIONS[:2], images, state, seeds, prefix_actions=torch.zeros(2, 11, 32))


def test_no_torchvision_import(ckpt: Path) -> None:
    code = (
        "import sys, torch\n"
        "from transformers import AutoModel, AutoProcessor\n"
        f"d = {str(ckpt)!r}\n"
        "AutoModel.from_pretrained(d, trust_remote_code=True, attn_implementation='sdpa',\n"
        "                          dtype=torch.float32)\n"
        "AutoProcessor.from_pretrained(d, trust_remote_code=True, use_fast=False)\n"
        "print('torchvision' in sys.modules)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_generation_is_deterministic(ckpt: Path, tmp_path: Path) -> None:
    again = tiny.write_tiny_checkpoint(tmp_path / "again", seed=0)
    for name in ("model.safetensors", "vocab.json", "merges.txt", "config.json", "preprocessor_config.json"):
        assert (again / name).read_bytes() == (ckpt / name).read_bytes(), name
    other = tiny.write_tiny_checkpoint(tmp_path / "other", seed=1)
    assert (other / "model.safetensors").read_bytes() != (ckpt / "model.safetensors").read_bytes()


def test_ensure_reuses_and_path_follows_cache_env(
    ckpt: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    marker = ckpt / tiny.MARKER
    before = marker.stat().st_mtime_ns
    assert tiny.ensure_tiny_checkpoint(ckpt) == ckpt.resolve()
    assert marker.stat().st_mtime_ns == before
    monkeypatch.setenv("MIBOT_EVAL_CACHE", str(tmp_path / "cache"))
    assert tiny.tiny_checkpoint_path() == tmp_path / "cache" / "tiny-checkpoint-v1"
    like_release = tiny.tiny_checkpoint_path(like_release=True)
    assert like_release == tmp_path / "cache" / "tiny-checkpoint-v1-like-release"


def test_failed_write_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def boom(out: Path, seed: int, variant: tiny.Variant) -> None:
        (out / "config.json").write_text("{}")
        raise RuntimeError("killed")

    monkeypatch.setattr(tiny, "_build", boom)
    with pytest.raises(RuntimeError):
        tiny.write_tiny_checkpoint(tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []
    assert not tiny.is_complete(tmp_path / "ckpt")


def test_refuses_to_replace_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        tiny.write_tiny_checkpoint(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
