"""Bagel's packing of backbone-blind training samples (``adapters/bagel/training.py``)."""

from __future__ import annotations

import torch
from bagel_helpers import build_tiny_bagel
from PIL import Image

from clear_plugins.adapters.bagel.adapter import BagelAdapter
from clear_plugins.adapters.bagel.packing import AttnMode, TokenKind
from clear_plugins.adapters.bagel.training import group_rows, segment_tokens
from clear_plugins.training_sample import PackingOptions, TrainingSample
from clear_plugins.trajectory import format_direct, format_restore


def _adapter() -> BagelAdapter:
    model, tokenizer = build_tiny_bagel()
    return BagelAdapter(model, tokenizer)


def _image(seed: int) -> Image.Image:
    rng = torch.Generator().manual_seed(seed)
    return Image.fromarray(torch.randint(0, 256, (32, 32, 3), generator=rng, dtype=torch.uint8).numpy())


def _restore(index: int) -> TrainingSample:
    return TrainingSample.from_trajectory(
        _image(index),
        "What does the sign say?",
        format_restore("blurry", "clear", "EXIT"),
        clean_image=_image(100 + index),
        system_prompt="Be brief.",
        index=index,
    )


def test_group_rows_keeps_order_and_budget():
    assert group_rows([3, 3, 3, 5], 6) == [[0, 1], [2], [3]]
    assert group_rows([9, 1], 4) == [[0], [1]]
    assert group_rows([9, 1, 2], None) == [[0, 1, 2]]


def test_restore_row_layout():
    adapter = _adapter()
    gen = torch.Generator().manual_seed(0)
    (batch,) = adapter.pack_training_samples([_restore(0)], PackingOptions(generator=gen))
    layout = batch.inputs.layout
    noised = (layout.mode == int(AttnMode.NOISE)) & (layout.kind == int(TokenKind.LATENT))
    latent_blocks = layout.block[layout.kind == int(TokenKind.LATENT)].unique()
    assert len(latent_blocks) == 3  # prompt VAE block, noise block, clean restore block
    # the noise block shares the RoPE position of the clean block after it
    clean_restore = layout.kind == int(TokenKind.LATENT)
    clean_restore &= layout.block == latent_blocks[-1]
    assert layout.position[noised].unique().tolist() == layout.position[clean_restore].unique().tolist()
    # distillation pairs: the restore ViT block has as many tokens as the clean latent
    assert batch.distill_vit_index.numel() == int(clean_restore.sum()) > 0
    assert batch.velocity_target.shape[0] == int(noised.sum())


def test_vit_drop_and_budget_split_rows():
    adapter = _adapter()
    samples = [_restore(i) for i in range(3)]
    options = PackingOptions(vit_drop_prob=1.0, generator=torch.Generator().manual_seed(0))
    (one_row,) = adapter.pack_training_samples(samples, options)
    assert one_row.distill_vit_index.numel() == 0  # every restore ViT block dropped
    per_sample = len(one_row.inputs.layout) // 3
    rows = adapter.pack_training_samples(
        samples, PackingOptions(vit_drop_prob=1.0, max_tokens_per_row=2 * per_sample)
    )
    assert [r.sample_offset for r in rows] == [0, 2]
    out = adapter.training_forward(rows[1])
    assert set(out.extra["text_sample"].tolist()) == {2}
    assert segment_tokens([], 14) == 0


def test_direct_row_has_no_image_targets():
    adapter = _adapter()
    sample = TrainingSample.from_trajectory(
        _image(0), "What is it?", format_direct("clear", "a car"), index=0
    )
    (batch,) = adapter.pack_training_samples([sample])
    assert batch.velocity_target is None and batch.noised_image_index is None
    assert (batch.labels != -100).sum() > 0
