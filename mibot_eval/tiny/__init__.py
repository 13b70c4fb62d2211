"""The tiny offline stand-in for the Xiaomi-Robotics-0 checkpoints (same remote-code interface)."""

from mibot_eval.tiny.checkpoint import (
    ensure_tiny_checkpoint,
    is_complete,
    tiny_checkpoint_path,
    write_tiny_checkpoint,
)

__all__ = ["ensure_tiny_checkpoint", "is_complete", "tiny_checkpoint_path", "write_tiny_checkpoint"]
