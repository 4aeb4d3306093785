"""Tiny Bagel models for tests, examples and CPU benchmarks (built in-process; nothing is downloaded).

:func:`tiny_bagel` returns a small random Bagel and a matching tokenizer, so the whole CLEAR loop runs on a CPU in
seconds without the 29 GB BAGEL-7B-MoT files (README, Quickstart). Its answers are random text: it exercises the
code, it does not understand images. The tiny model keeps the real patch and latent geometry (14-px ViT patches, an 8× VAE with 16 latent channels and
2×2 latent patches → 16 px per latent token, 64-dim latent tokens) and shrinks widths, depths, vocabulary and the
position tables, so it runs the same code path as BAGEL-7B-MoT with a few hundred thousand parameters.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from .configuration_bagel import BagelConfig, flux_vae_config
from .sequence import BagelTokenIds

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

    from .modeling_bagel import BagelForConditionalGeneration

TINY_LLM_CONFIG: dict[str, Any] = {
    "vocab_size": 320,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "qk_norm": True,
    "layer_module": "Qwen2MoTDecoderLayer",
}
TINY_VIT_CONFIG: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_channels": 3,
    "patch_size": 14,
    "image_size": 14 * 8,
    "hidden_act": "gelu_pytorch_tanh",
    "layer_norm_eps": 1e-6,
    "rope": False,
    "vision_use_head": False,
}
TINY_VAE_CONFIG: dict[str, Any] = {
    **flux_vae_config(),
    "block_out_channels": [8, 8, 16, 16],
    "layers_per_block": 1,
    "norm_num_groups": 4,
    "sample_size": 64,
}
TINY_TOKEN_IDS = BagelTokenIds(bos=1, eos=2, start_of_image=3, end_of_image=4)
"""Special-token ids for the tiny vocabulary (any ids below ``vocab_size`` work)."""


def tiny_bagel_config(**overrides: Any) -> BagelConfig:
    """A ``BagelConfig`` of a few hundred thousand parameters (hidden 64, 2 LLM layers, 2 ViT layers).

    ``overrides`` are ``BagelConfig`` keywords; ``llm_config``, ``vit_config`` and ``vae_config`` dicts are merged
    into the tiny defaults (e.g. ``tiny_bagel_config(llm_config={"num_hidden_layers": 3})``). Images of 32–64 px
    fit the shrunk tables (8 tokens per side: up to 112 px for the ViT, 128 px for the VAE).
    """
    kwargs: dict[str, Any] = {
        "latent_patch_size": 2,
        "max_latent_size": 8,
        "vit_max_num_patch_per_side": 8,
        "vit_transform": {"max_size": 56, "min_size": 28, "stride": 14, "max_pixels": 56 * 56},
        "vae_transform": {"max_size": 64, "min_size": 32, "stride": 16, "max_pixels": 64 * 64},
    }
    for key, base in (
        ("llm_config", TINY_LLM_CONFIG),
        ("vit_config", TINY_VIT_CONFIG),
        ("vae_config", TINY_VAE_CONFIG),
    ):
        kwargs[key] = {**copy.deepcopy(base), **overrides.pop(key, {})}
    kwargs.update(overrides)
    return BagelConfig(**kwargs)


TINY_TOKENIZER_CORPUS: tuple[str, ...] = (
    "The image is heavily blurred, so the text on the sign is hard to read.",
    "The restored image is clear: the sign says EXIT and the car is red.",
    "What colour is the car? How many people are in the picture? Answer yes or no.",
    "Noise, blur, compression and low light hide details in degraded photos.",
)
"""The sentences the tiny tokenizer's byte-level BPE is trained on (in memory, in well under a second)."""

SEGMENT_TOKENS: tuple[str, ...] = (
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|endoftext|>",
)
"""Bagel's (Qwen2's) segment tokens, the tiny tokenizer's special tokens."""

TINY_LLM2VAE_STD = 0.05
"""Std of the tiny model's random ``llm2vae`` head (the real one is trained; zeros would give zero velocities)."""


def tiny_tokenizer(vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """A byte-level BPE with Bagel's segment tokens as special tokens; ``len()`` is at most ``vocab_size``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SEGMENT_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(TINY_TOKENIZER_CORPUS) * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|vision_start|>", "<|vision_end|>"],
    )


def tiny_bagel(seed: int = 0) -> tuple[BagelForConditionalGeneration, PreTrainedTokenizerFast]:
    """A tiny random Bagel (fp32, eval mode) and its tokenizer, built offline in about a second.

    The model is :func:`tiny_bagel_config`'s (the real patch and latent geometry, a few hundred thousand
    parameters) with seeded random weights; pass it to :func:`clear_plugins.inject` exactly like BAGEL-7B-MoT.
    The same ``seed`` gives the same weights.
    """
    import torch

    from .modeling_bagel import BagelForConditionalGeneration

    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = BagelForConditionalGeneration(tiny_bagel_config()).eval()
        torch.nn.init.normal_(model.llm2vae.weight, std=TINY_LLM2VAE_STD)
    finally:
        torch.random.set_rng_state(generator_state)
    return model, tiny_tokenizer()
