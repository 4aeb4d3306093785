"""Flex-attention BlockMask vs the dense packed mask: same structure, same logits, velocities (and gradients on
CUDA — torch's flex attention has no backward on CPU)."""

from __future__ import annotations

import pytest
import torch
from bagel_helpers import build_tiny_bagel
from PIL import Image

from clear_plugins.adapters.bagel.adapter import BagelAdapter
from clear_plugins.adapters.bagel.flex_attention import packed_block_mask, resolve_attention
from clear_plugins.adapters.bagel.packing import attention_mask
from clear_plugins.errors import ClearConfigError
from clear_plugins.training_sample import PackingOptions, TrainingSample
from clear_plugins.trajectory import format_direct, format_restore


def _image(seed: int) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    return Image.fromarray(torch.randint(0, 256, (32, 32, 3), generator=g, dtype=torch.uint8).numpy())


def _rows(adapter, attention: str):
    samples = [
        TrainingSample.from_trajectory(
            _image(i),
            "What does the sign say?",
            format_restore("blurry", "clear", "EXIT") if i % 2 == 0 else format_direct("clear", "EXIT"),
            clean_image=_image(10 + i) if i % 2 == 0 else None,
            system_prompt="Be brief.",
            index=i,
        )
        for i in range(3)
    ]
    options = PackingOptions(
        attention=attention, output_hidden_states=True, generator=torch.Generator().manual_seed(0)
    )
    return adapter.pack_training_samples(samples, options)


def test_block_mask_matches_the_dense_rule_tile_by_tile():
    adapter = BagelAdapter(*build_tiny_bagel())
    (row,) = _rows(adapter, "dense")
    layout = row.inputs.layout
    assert len(layout) > 2 * 128, "the packed row spans several 128-token tiles"
    dense = attention_mask(layout, layout)
    block_mask = packed_block_mask(layout)
    rebuilt = block_mask.to_dense()[0, 0].bool()  # [nq, nk] tiles flex will visit
    n = 128
    for i in range(rebuilt.shape[0]):
        for j in range(rebuilt.shape[1]):
            tile = dense[i * n : (i + 1) * n, j * n : (j + 1) * n]
            assert bool(tile.any()) == bool(rebuilt[i, j]), (i, j)
    # the mask_mod reproduces the dense rule token by token
    q = torch.arange(len(layout))
    mod = block_mask.mask_mod(0, 0, q[:, None], q[None, :])
    assert torch.equal(mod, dense)


def test_flex_and_dense_forwards_agree_on_cpu():
    adapter = BagelAdapter(*build_tiny_bagel())
    (dense_row,) = _rows(adapter, "dense")
    (flex_row,) = _rows(adapter, "flex")
    with torch.no_grad():
        dense = adapter.training_forward(dense_row)
        flex = adapter.training_forward(flex_row)
    assert torch.allclose(flex.text_logits, dense.text_logits, atol=1e-5)
    assert flex.image_output.numel() > 0
    assert torch.allclose(flex.image_output, dense.image_output, atol=1e-5)
    for a, b in zip(flex.hidden_states, dense.hidden_states, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_auto_is_dense_on_cpu_and_flex_training_on_cpu_says_why():
    assert resolve_attention("auto", torch.device("cpu")) == "dense"
    assert resolve_attention("auto", torch.device("cuda")) == "flex"
    adapter = BagelAdapter(*build_tiny_bagel())
    (row,) = _rows(adapter, "flex")
    adapter.model.train()
    with pytest.raises(ClearConfigError, match="no backward on CPU"):
        adapter.training_forward(row)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="flex attention has no backward on CPU")
def test_flex_and_dense_gradients_agree_on_cuda():
    model, tokenizer = build_tiny_bagel()
    adapter = BagelAdapter(model.cuda(), tokenizer)
    grads = {}
    for attention in ("dense", "flex"):
        model.zero_grad(set_to_none=True)
        (row,) = _rows(adapter, attention)
        out = adapter.training_forward(row)
        loss = torch.nn.functional.cross_entropy(out.text_logits, out.text_labels)
        (loss + (out.image_output - out.image_target).pow(2).mean()).backward()
        grads[attention] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    for name, grad in grads["dense"].items():
        assert torch.allclose(grads["flex"][name], grad, atol=1e-4), name
