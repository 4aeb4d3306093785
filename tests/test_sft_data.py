"""Training-row loading (JSONL and datasets.Dataset), bad-row reports with indices, lazy image decoding."""

from __future__ import annotations

import logging

import datasets
import pytest
from bagel_helpers import build_tiny_bagel
from sft_helpers import tiny_config, write_rows

from clear_plugins.data.loading import BadRowError, load_training_rows
from clear_plugins.trajectory import format_direct, format_restore
from clear_plugins.trl_ext.collators import SAMPLES_KEY, SKIPPED_KEY, ClearSFTCollator
from clear_plugins.trl_ext.sft import ClearSFTTrainer

GOOD = {"question": "q?", "answer": "a", "degraded_image": "img/deg_0.png", "system_prompt": None}
BAD_ROWS = [
    {**GOOD, "id": "malformed", "trajectory": "<think> no end", "pathway": "direct"},
    {**GOOD, "id": "no-clean", "trajectory": format_restore("a", "b", "c"), "pathway": "restore"},
    {
        **GOOD,
        "id": "missing-image",
        "degraded_image": "img/nope.png",
        "trajectory": format_direct("a", "b"),
        "pathway": "direct",
    },
    {
        **GOOD,
        "id": "wrong-pathway",
        "trajectory": format_direct("a", "b"),
        "pathway": "restore",
        "clean_image": "img/clean_0.png",
    },
]


def _with_bad(tmp_path):
    path = write_rows(tmp_path, 4, extra=BAD_ROWS)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("{not json\n")
    return path


def test_bad_rows_are_reported_with_their_index_and_skipped(tmp_path, caplog):
    path = _with_bad(tmp_path)
    with caplog.at_level(logging.WARNING):
        dataset, reports = load_training_rows(path)
    assert len(dataset) == 4 and dataset["row_index"] == [0, 1, 2, 3]
    assert [r.index for r in reports] == [4, 5, 6, 7, 8]
    problems = {r.id: r.problem for r in reports}
    assert "malformed" in problems["malformed"] and "clean_image" in problems["no-clean"]
    assert "does not exist" in problems["missing-image"] and "pattern" in problems["wrong-pathway"]
    assert "row 8" in caplog.text and "not JSON" in caplog.text


def test_bad_rows_error_mode_lists_every_bad_row(tmp_path):
    with pytest.raises(BadRowError) as info:
        load_training_rows(_with_bad(tmp_path), bad_rows="error")
    assert [r.index for r in info.value.reports] == [4, 5, 6, 7, 8]
    assert "row 4" in str(info.value)


def test_corrupt_image_rejected_up_front_in_error_mode_and_skipped_lazily_otherwise(tmp_path, caplog):
    path = write_rows(tmp_path, 2)
    (tmp_path / "img" / "deg_1.png").write_bytes(b"not a png at all")
    with pytest.raises(BadRowError, match="row 1"):
        load_training_rows(path, bad_rows="error")
    dataset, reports = load_training_rows(path)  # skip mode: not decoded until the collator
    assert len(dataset) == 2 and not reports
    with caplog.at_level(logging.WARNING):
        batch = ClearSFTCollator()([dataset[0], dataset[1]])
    assert len(batch[SAMPLES_KEY]) == 1 and batch[SKIPPED_KEY] == [1]
    assert "row 1" in caplog.text


def test_training_survives_a_corrupt_image_mid_epoch(tmp_path):
    path = write_rows(tmp_path / "data", 4)
    (tmp_path / "data" / "img" / "deg_3.png").write_bytes(b"\x89PNG broken")
    model, tokenizer = build_tiny_bagel()
    args = tiny_config(tmp_path / "out", max_steps=2, per_device_train_batch_size=4)
    trainer = ClearSFTTrainer(model=model, args=args, train_dataset=str(path), processing_class=tokenizer)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "skipped_rows" in h]
    assert len(logs) == 2 and all(h["skipped_rows"] == 1.0 for h in logs)


def test_datasets_dataset_with_image_columns_is_read_without_decoding(tmp_path):
    path = write_rows(tmp_path, 4)
    rows, _ = load_training_rows(path)
    features = rows.features.copy()
    source = rows.cast_column("degraded_image", datasets.Image()).cast_column("clean_image", datasets.Image())
    assert isinstance(source.features["degraded_image"], datasets.Image) and features
    loaded, reports = load_training_rows(source)
    assert not reports and len(loaded) == 4
    first = loaded[0]["degraded_image"]
    assert isinstance(first, dict) and set(first) >= {"path", "bytes"}, "images stay undecoded in the dataset"
    batch = ClearSFTCollator()([loaded[0], loaded[1]])
    assert batch[SAMPLES_KEY][0].image.size == (32, 32)
    assert batch[SAMPLES_KEY][0].restore is not None and batch[SAMPLES_KEY][1].restore is None
