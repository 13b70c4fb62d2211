"""MiBoTConfig: a Qwen3-VL backbone (`vlm_config`) plus a flow-matching DiT action head (`dit_config`).

Remote code of the tiny offline stand-in for the Xiaomi-Robotics-0 checkpoints; it imports only
transformers. Written for transformers 4.57.x.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig
from transformers.models.qwen3_vl.configuration_qwen3_vl import Qwen3VLConfig


class MiBoTDiTConfig(PretrainedConfig):
    """The action head: DiT layers that attend over the KV cache of the last VLM layers.

    `num_key_value_heads` and `head_dim` must equal the VLM text model's, since each DiT layer
    concatenates its own keys/values with the cached ones of one VLM layer.
    """

    model_type = "mibot_dit"
    base_config_key = "dit_config"

    def __init__(
        self,
        hidden_size: int = 64,
        intermediate_size: int = 128,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 4,
        num_key_value_heads: int = 2,
        head_dim: int = 16,
        action_dim: int = 32,
        state_dim: int = 32,
        frequency_embedding_size: int = 32,
        rms_norm_eps: float = 1e-6,
        initializer_range: float = 0.02,
        **kwargs: Any,
    ) -> None:
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads
        self.head_dim = head_dim
        self.action_dim = action_dim
        self.state_dim = state_dim
        self.frequency_embedding_size = frequency_embedding_size
        self.rms_norm_eps = rms_norm_eps
        self.initializer_range = initializer_range
        super().__init__(**kwargs)


class MiBoTConfig(PretrainedConfig):
    """Top-level config of `MiBoTForActionGeneration` (`model_type="mibot"`).

    `release_interface=True` limits the model to what the released checkpoints accept: one int `seed`
    per forward, no committed prefix actions, and a module that loading keeps in fp32 (see the model's
    docstring). The weights do not depend on it.
    """

    model_type = "mibot"
    sub_configs = {"vlm_config": Qwen3VLConfig, "dit_config": MiBoTDiTConfig}

    def __init__(
        self,
        vlm_config: dict[str, Any] | Qwen3VLConfig | None = None,
        dit_config: dict[str, Any] | MiBoTDiTConfig | None = None,
        num_inference_steps: int = 5,
        release_interface: bool = False,
        **kwargs: Any,
    ) -> None:
        if isinstance(vlm_config, dict):
            vlm_config = Qwen3VLConfig(**vlm_config)
        self.vlm_config = vlm_config if vlm_config is not None else Qwen3VLConfig()
        if isinstance(dit_config, dict):
            dit_config = MiBoTDiTConfig(**dit_config)
        self.dit_config = dit_config if dit_config is not None else MiBoTDiTConfig()
        self.num_inference_steps = num_inference_steps
        self.release_interface = bool(release_interface)
        super().__init__(**kwargs)
