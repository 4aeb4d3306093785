"""The adapter contract suite: one list of cases, one set of checks, run over every registered backbone.

A backbone joins by adding a :class:`ContractCase` to :data:`CASES` (see CONTRIBUTING.md). The check
``test_every_registered_adapter_has_a_case`` fails when an adapter is registered without one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image


@dataclass
class ContractCase:
    """How to exercise one adapter.

    Attributes:
        name: test id.
        build: returns ``(model, tokenizer)``: a tiny model built in-process (no Hub), in eval mode.
        make_context: ``(adapter, image) -> context`` accepted by ``restore`` and ``bridge``.
        make_training_batch: ``(adapter, image) -> batch`` accepted by ``training_forward``.
        plugin: the plugin object that registers the adapter when it is not a built-in (else ``None``).
        image_size: side of the square test image.
    """

    name: str
    build: Callable[[], tuple[Any, Any]]
    make_context: Callable[[Any, Image.Image], Any]
    make_training_batch: Callable[[Any, Image.Image], Any]
    plugin: object | None = None
    image_size: int = 32


def photo(size: int) -> Image.Image:
    """A real photo (scikit-image's astronaut), resized to ``size``×``size``."""
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((size, size), Image.BICUBIC)


def random_image(size: int, seed: int = 0) -> Image.Image:
    """A reproducible random RGB image."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def _fake_case() -> ContractCase:
    import torch
    from fake_backbone import FakePlugin, build_fake

    def context(adapter, image):
        return adapter.encode_understanding([image]).embeds[0].detach()

    def batch(adapter, image):
        return {"input_ids": torch.tensor([1, 5, 7, 9, 2]), "image": image}

    return ContractCase("fake", build_fake, context, batch, plugin=FakePlugin(), image_size=8)


def _bagel_case() -> ContractCase:
    from bagel_helpers import QUESTION, SYSTEM, build_tiny_bagel

    from clear_plugins.adapters.bagel.batch import (
        LatentImageSegment,
        TextSegment,
        VitImageSegment,
        build_packed_batch,
    )

    def context(adapter, image):
        return adapter.start_context(image, QUESTION, system_prompt=SYSTEM)

    def batch(adapter, image):
        import torch

        ids = adapter.token_ids
        with torch.no_grad():
            clean = adapter.encode_latent([image], sample=False)
        sample = [
            TextSegment([ids.bos, 5, 6, ids.eos]),
            VitImageSegment(adapter.vit_transform(image)),
            LatentImageSegment(clean.tokens[0], clean.grids[0], t=0.6),
            TextSegment([ids.bos, 7, 8, 9, ids.eos], loss=True),
        ]
        return build_packed_batch([sample], ids, adapter.model.config.vit_config.patch_size)

    return ContractCase("bagel", build_tiny_bagel, context, batch, image_size=32)


CASE_FACTORIES: list[Callable[[], ContractCase]] = [_fake_case, _bagel_case]
"""One factory per backbone; each returns the :class:`ContractCase` of that backbone."""
