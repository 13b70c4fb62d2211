"""A tiny Qwen2-style byte-level BPE tokenizer, trained offline on an embedded robot-instruction corpus.

The vocabulary (vocab.json + merges.txt) follows Qwen2's pre-tokenization, so transformers'
`Qwen2Tokenizer` (slow) and `Qwen2TokenizerFast` both load it; the chat/vision special tokens are
added after the BPE vocabulary, as in the Qwen checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path

BPE_VOCAB_SIZE = 640  # 256 byte symbols + merges; the embedded corpus has more merges than that
PAD_TOKEN = "<|endoftext|>"
EOS_TOKEN = "<|im_end|>"
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
EXTRA_TOKENS = ["<cot>", "</cot>"]  # chain-of-thought delimiters of the Xiaomi-Robotics-0 prompt

_TEMPLATE = (
    "user\nThe following observations are captured from multiple views.\n# Base View\n\n"
    "# Left-Wrist View\n\n# Ego View\n\nGenerate robot actions for the task:\n{} /no_cot\nassistant\n"
)
_INSTRUCTIONS = """\
pick up the black bowl between the plate and the ramekin and place it on the plate
pick up the black bowl next to the ramekin and place it on the plate
pick up the black bowl from table center and place it on the plate
pick up the black bowl on the cookie box and place it on the plate
pick up the black bowl in the top drawer of the wooden cabinet and place it on the plate
pick up the alphabet soup and place it in the basket
pick up the cream cheese and place it in the basket
pick up the salad dressing and place it in the basket
pick up the bbq sauce and place it in the basket
pick up the ketchup and place it in the basket
pick up the tomato sauce and place it in the basket
pick up the butter and place it in the basket
pick up the milk and place it in the basket
pick up the chocolate pudding and place it in the basket
pick up the orange juice and place it in the basket
open the middle drawer of the cabinet
put the bowl on the stove
put the wine bottle on top of the cabinet
open the top drawer and put the bowl inside
put the bowl on top of the cabinet
push the plate to the front of the stove
put the cream cheese in the bowl
turn on the stove
put the bowl on the plate
put the wine bottle on the rack
put both the alphabet soup and the tomato sauce in the basket
put both the cream cheese box and the butter in the basket
turn on the stove and put the moka pot on it
put the black bowl in the bottom drawer of the cabinet and close it
put the white mug on the left plate and put the yellow and white mug on the right plate
pick up the book and place it in the back compartment of the caddy
put the white mug on the plate and put the chocolate pudding to the right of the plate
put both moka pots on the stove
put the yellow and white mug in the microwave and close it
grasp the drawer handle, then open it
pull the handle to open the drawer
push the handle to close the drawer
grasp the door handle, then slide the door to the left
move the sliding door to the right
push the red block towards the left
rotate the blue block to the right
lift the pink block from the table
lift the red block lying in the drawer
place the grasped block on top of another block
take the block off the top of the other block
store the grasped block in the sliding cabinet
sweep the blue block into the drawer
toggle the light switch to turn on the yellow light
press the button to turn off the green light
pick coke can
move blue plastic bottle near pepsi can
open top drawer
close middle drawer
place apple into top drawer
put carrot on plate
put eggplant into yellow basket
put the spoon on the towel
stack the green block on the yellow block
"""


def corpus() -> list[str]:
    """Training text: the official prompt around each instruction, capitalised with a period too."""
    lines = [line for line in _INSTRUCTIONS.splitlines() if line]
    texts = [_TEMPLATE.format(line) for line in lines]
    texts += [_TEMPLATE.format(line[0].upper() + line[1:] + ".") for line in lines]
    return texts


def _train_bpe(out_dir: Path) -> None:
    """Train byte-level BPE with Qwen2's pre-tokenizer; writes vocab.json and merges.txt."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(), trainer=trainer)
    tokenizer.model.save(str(out_dir))


def write_tokenizer(directory: Path, scratch: Path) -> dict[str, int]:
    """Write the slow + fast tokenizer files into `directory`; returns the special tokens' ids."""
    from transformers import AddedToken, Qwen2Tokenizer, Qwen2TokenizerFast

    scratch.mkdir(parents=True, exist_ok=True)
    _train_bpe(scratch)
    base = len(json.loads((scratch / "vocab.json").read_text()))
    added = {
        base + i: AddedToken(t, lstrip=False, rstrip=False, normalized=False, special=t in SPECIAL_TOKENS)
        for i, t in enumerate(SPECIAL_TOKENS + EXTRA_TOKENS)
    }
    tok = Qwen2Tokenizer(
        str(scratch / "vocab.json"),
        str(scratch / "merges.txt"),
        errors="replace",
        unk_token=None,
        bos_token=None,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in (PAD_TOKEN, EOS_TOKEN)],
        added_tokens_decoder=added,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
        padding_side="left",
        model_max_length=4096,
    )
    tok.save_pretrained(str(directory))
    fast = Qwen2TokenizerFast.from_pretrained(str(directory))
    fast.backend_tokenizer.save(str(directory / "tokenizer.json"))
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS + EXTRA_TOKENS}
    if len(set(ids.values())) != len(ids) or any(i is None for i in ids.values()):
        raise RuntimeError(f"special tokens were not added as single tokens: {ids}")
    return ids


def patch_tokenizer_config(directory: Path, extra: dict) -> None:
    """Merge `extra` keys (auto_map, processor_class) into tokenizer_config.json."""
    path = directory / "tokenizer_config.json"
    data = json.loads(path.read_text())
    data.update(extra)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
