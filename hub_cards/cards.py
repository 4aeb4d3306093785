"""Model cards that tell the truth: rendered through ``huggingface_hub.ModelCard`` from the run's files only.

The Jinja template (``templates/model_card.md``, TRL's card pattern) receives what :mod:`.metadata` reads from the
export folder — ``clear_training.json``, ``trainer_state.json``, ``clear_eval_report.json`` — and the inference
settings in ``config.json``. Every number on the card comes from those files; a missing file is said to be missing,
never filled in. Eval results also go into the ``model-index`` metadata (``EvalResult`` per benchmark and level),
which :func:`parse_card_metadata` reads back with huggingface_hub's own parser.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from clear_plugins.hub_cards.metadata import (
    EVAL_FILE,
    EvalReport,
    read_eval_report,
    read_trainer_state,
    read_training,
)

TEMPLATE = "model_card.md"

PAPER_TITLE = (
    "CLEAR: Unlocking Generative Potential for Degraded Image Understanding in Unified Multimodal Models"
)
PAPER_ARXIV_ID = "2604.04780"
PAPER_CITATION = """@misc{hao2026clear,
  title         = {CLEAR: Unlocking Generative Potential for Degraded Image Understanding in Unified Multimodal Models},
  author        = {Xiangzhao Hao and Zefeng Zhang and Zhenyu Zhang and Linhao Yu and Yao Chen and Yiqian Zhang and
                   Haiyun Guo and Shuohuan Wang and Yu Sun},
  year          = {2026},
  eprint        = {2604.04780},
  archivePrefix = {arXiv},
  primaryClass  = {cs.CV},
  url           = {https://arxiv.org/abs/2604.04780}
}"""
"""The method's paper (the authors' BibTeX from their repository's README)."""

BASE_MODEL_LICENSES: dict[str, str] = {"ByteDance-Seed/BAGEL-7B-MoT": "apache-2.0"}
"""Licences of known base weights (Hub licence ids); ``clear_training.json``'s ``base_model_license`` wins."""

TAGS = ("clear", "clear-plugins", "image-restoration", "degraded-images", "visual-question-answering")
TASK_TYPE = "visual-question-answering"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "benchmark"


def eval_results(report: EvalReport) -> list[Any]:
    """One ``huggingface_hub.EvalResult`` per benchmark and level of ``report`` (values as written)."""
    from huggingface_hub import EvalResult

    results = []
    for row in report.results:
        metric = row.get("metric") or "score"
        for level in report.levels:
            if level in row["scores"]:
                results.append(
                    EvalResult(
                        task_type=TASK_TYPE,
                        dataset_type=_slug(row["benchmark"]),
                        dataset_name=row["benchmark"],
                        dataset_config=level,
                        metric_type=_slug(metric),
                        metric_name=f"{metric} ({level})",
                        metric_value=row["scores"][level],
                    )
                )
    return results


def _trigger_rows(report: EvalReport) -> list[tuple[str, dict[str, Any]]]:
    rows = [
        (r["benchmark"], r["trigger_rate"]) for r in report.results if isinstance(r.get("trigger_rate"), dict)
    ]
    if isinstance(report.trigger_rate, dict):
        rows.append(("all benchmarks", report.trigger_rate))
    return rows


def build_model_card(
    folder: str | Path, *, base_model: str | None = None, model_id: str | None = None
) -> Any:
    """The :class:`huggingface_hub.ModelCard` of the export in ``folder`` (read from its files only).

    Args:
        folder: an export folder (its ``config.json`` and run files).
        base_model: Hub id of the base weights; default ``clear_training.json``'s ``base_model``.
        model_id: the id shown in the quick start (default: the folder name; upload passes the repo id).
    """
    from huggingface_hub import ModelCard, ModelCardData

    from clear_plugins.hub_cards.inference import DEFAULT_TAG_MODE, INFERENCE_ATTRIBUTE, TAG_MODE_ATTRIBUTE
    from clear_plugins.hub_cards.remote_code import minimum_version

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    training = read_training(folder)
    report = read_eval_report(folder / EVAL_FILE) if (folder / EVAL_FILE).is_file() else None
    base_model = base_model or (training.base_model if training else None)
    license_id = (training.base_model_license if training else None) or BASE_MODEL_LICENSES.get(
        base_model or ""
    )
    model_name = model_id.split("/")[-1] if model_id else folder.name
    card_data = ModelCardData(
        base_model=base_model,
        license=license_id or "other",
        library_name="transformers",
        pipeline_tag="image-text-to-text",
        model_name=model_name,
        tags=list(TAGS),
        eval_results=eval_results(report) if report else None,
    )
    return ModelCard.from_template(
        card_data,
        template_str=resources.files(__package__).joinpath("templates", TEMPLATE).read_text(encoding="utf-8"),
        model_name=model_name,
        model_id=model_id or str(folder),
        base_model=base_model,
        license_id=license_id,
        min_version=minimum_version(),
        tag_mode=config.get(TAG_MODE_ATTRIBUTE) or DEFAULT_TAG_MODE,
        inference=config.get(INFERENCE_ATTRIBUTE) or {},
        stages=training.stages if training else [],
        trainer_state=read_trainer_state(folder),
        eval=report,
        trigger_rows=_trigger_rows(report) if report else [],
        citation=PAPER_CITATION,
    )


def write_model_card(folder: str | Path, **kwargs: Any) -> Path:
    """Render :func:`build_model_card` into ``folder/README.md``; returns its path."""
    path = Path(folder) / "README.md"
    build_model_card(folder, **kwargs).save(path)
    return path


def parse_card_metadata(path: str | Path) -> Any:
    """The card's metadata parsed by huggingface_hub (``ModelCard.load``): ``card.data`` with ``eval_results``."""
    from huggingface_hub import ModelCard

    return ModelCard.load(Path(path)).data
