"""The tiny offline stand-in for the Xiaomi-Robotics-0 checkpoints (same remote-code interface), its
like-release variant (as limited as the released checkpoints) and the release-size random checkpoint.

May import: nothing else of mibot_eval; the model stack (torch, transformers, tokenizers,
safetensors). Its remote_code/ is loaded by transformers from the written checkpoint folder, never
imported by the harness. `mibot-eval tiny-checkpoint` is commands/tiny_checkpoint.py.
remote_code/modeling_mibot.py is just over 400 lines with no word of this in its own docstring on
purpose: transformers loads the model as one file from the checkpoint folder, and the remote code is
copied into that folder, whose content hash is every tiny run's checkpoint id: editing it (or the
generator, checkpoint.code_digest) gives every tiny run a new identity.
"""

from mibot_eval.tiny.checkpoint import (
    ensure_tiny_checkpoint,
    is_complete,
    tiny_checkpoint_path,
    write_tiny_checkpoint,
)

__all__ = ["ensure_tiny_checkpoint", "is_complete", "tiny_checkpoint_path", "write_tiny_checkpoint"]
