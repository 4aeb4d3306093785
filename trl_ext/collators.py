"""The SFT collator: dataset rows → backbone-blind :class:`~clear_plugins.training_sample.TrainingSample` lists.

It runs in the dataloader (worker processes when ``dataloader_num_workers > 0``) and only decodes images and
builds samples; packing (VAE encoding, noise, dropouts) happens in the trainer on the model's device, through
:meth:`~clear_plugins.adapters.base.BackboneAdapter.pack_training_samples`. A row whose image cannot be decoded
is skipped with a warning naming its index (:mod:`clear_plugins.data.loading` checked everything else before
training); the batch reports how many it skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from clear_plugins.data.loading import ROW_INDEX, open_image
from clear_plugins.errors import ClearError
from clear_plugins.training_sample import TrainingSample
from clear_plugins.trajectory import system_prompt as shipped_system_prompt

logger = logging.getLogger(__name__)

SAMPLES_KEY = "clear_samples"
"""Batch key of the list of :class:`TrainingSample`."""
SKIPPED_KEY = "clear_skipped"
"""Batch key of the row indices skipped while collating."""


def row_to_sample(row: dict[str, Any], default_system_prompt: str) -> TrainingSample:
    """One checked dataset row → a :class:`TrainingSample` with decoded images.

    Raises:
        ClearError: an image cannot be decoded or the trajectory cannot be split (names the row).
    """
    index = row.get(ROW_INDEX)
    try:
        image = open_image(row["degraded_image"])
        clean = open_image(row["clean_image"]) if row.get("pathway") == "restore" else None
    except ClearError as exc:
        raise type(exc)(f"row {index} (id {row.get('id')!r}): {exc}") from None
    prompt = row.get("system_prompt")
    return TrainingSample.from_trajectory(
        image,
        row["question"],
        row["trajectory"],
        clean_image=clean,
        system_prompt=default_system_prompt if prompt is None else prompt,
        index=index,
        id=row.get("id"),
    )


class ClearSFTCollator:
    """Turns a list of dataset rows into ``{"clear_samples": [TrainingSample, …], "clear_skipped": [row, …]}``.

    Args:
        system_prompt: the system prompt of rows whose ``system_prompt`` is ``None`` (default: the shipped one).
    """

    def __init__(self, system_prompt: str | None = None) -> None:
        self.system_prompt = shipped_system_prompt(system_prompt)

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, list]:
        samples: list[TrainingSample] = []
        skipped: list[int] = []
        for row in rows:
            try:
                samples.append(row_to_sample(row, self.system_prompt))
            except ClearError as exc:
                logger.warning("skipping training %s", exc)
                skipped.append(int(row.get(ROW_INDEX, -1)))
        return {SAMPLES_KEY: samples, SKIPPED_KEY: skipped}


__all__ = ["SAMPLES_KEY", "SKIPPED_KEY", "ClearSFTCollator", "row_to_sample"]
