"""Model cards: rendered from the run's files only, eval results as model-index metadata parsed back offline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from huggingface_hub import ModelCard, metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results

from clear_plugins.errors import ClearConfigError
from clear_plugins.hub_cards.cards import (
    PAPER_ARXIV_ID,
    build_model_card,
    parse_card_metadata,
    write_model_card,
)
from clear_plugins.hub_cards.metadata import (
    EVAL_FILE,
    read_eval_report,
    read_training,
    record_training_stage,
    training_hyperparameters,
)

LEVELS = ["clean", "low", "mid", "hard"]
REPORT = {
    "format": "clear-eval/1",
    "run_id": "eval-tiny-7",
    "judge": "rule",
    "levels": LEVELS,
    "results": [
        {
            "benchmark": "MMBench",
            "metric": "accuracy",
            "scores": {"clean": 71.25, "low": 69.5, "mid": 66.75, "hard": 61.125},
            "trigger_rate": {"clean": 0.0125, "low": 0.0625, "mid": 0.1375, "hard": 0.4125},
            "num_rows": {"clean": 80, "low": 80, "mid": 80, "hard": 80},
        },
        {"benchmark": "RealWorldQA", "metric": "accuracy", "scores": {"clean": 58.5, "hard": 51.75}},
    ],
    "trigger_rate": {"clean": 0.0111, "low": 0.0555, "mid": 0.1222, "hard": 0.3888},
}
SFT_HPARAMS = {"learning_rate": 2e-05, "num_train_epochs": 3, "lambda_mse": 0.5, "lambda_kl": 0.1}
GRPO_HPARAMS = {"learning_rate": 1e-06, "num_generations": 4, "image_loss_weight": 0.3}
TRAINER_STATE = {
    "global_step": 37,
    "epoch": 2.96,
    "log_history": [{"loss": 1.93, "step": 10}, {"train_loss": 1.4242, "train_runtime": 12.5, "step": 37}],
}


def _config(folder: Path) -> None:
    config = {
        "model_type": "clear_bagel",
        "clear_tag_mode": "text",
        "clear_inference": {
            "num_steps": 30,
            "bridge_mode": "bridge",
            "max_restores": 1,
            "max_new_tokens": 512,
            "system_prompt": "You answer questions about degraded images.",
            "guidance_preset": "clear_eval",
            "sampling": {"do_sample": False},
        },
    }
    (folder / "config.json").write_text(json.dumps(config))


@pytest.fixture
def run_folder(tmp_path):
    """An export-like folder: config, a two-stage training record, trainer state and an eval report."""
    sft = tmp_path / "sft"
    record_training_stage(
        sft,
        stage="sft",
        trainer="ClearSFTTrainer",
        hyperparameters=SFT_HPARAMS,
        dataset={"path": "data/sft.jsonl", "num_rows": 1234, "trace_source": "llm", "trace_model": "gpt-4.1"},
        preset="paper",
        base_model="ByteDance-Seed/BAGEL-7B-MoT",
        run_id="sft-run-1",
    )
    folder = tmp_path / "export"
    record_training_stage(
        folder,
        stage="grpo",
        trainer="InterleavedGRPOTrainer",
        hyperparameters=GRPO_HPARAMS,
        dataset={"name": "toy-world", "num_rows": 96, "trace_source": "offline"},
        run_id="grpo-run-2",
        previous=sft,
    )
    _config(folder)
    (folder / "trainer_state.json").write_text(json.dumps(TRAINER_STATE))
    (folder / EVAL_FILE).write_text(json.dumps(REPORT))
    return folder


def _numbers(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w.-])\d+(?:\.\d+)?(?:e-?\d+)?", text))


def test_card_states_the_runs_facts(run_folder):
    card = build_model_card(run_folder, model_id="me/tiny-clear")
    text = str(card)
    assert "[ByteDance-Seed/BAGEL-7B-MoT](https://huggingface.co/ByteDance-Seed/BAGEL-7B-MoT)" in text
    assert "under `apache-2.0`" in text and PAPER_ARXIV_ID in text and "Xiangzhao Hao" in text
    assert 'AutoModel.from_pretrained("me/tiny-clear", trust_remote_code=True)' in text
    assert (
        "### Stage: sft (`ClearSFTTrainer`)" in text and "### Stage: grpo (`InterleavedGRPOTrainer`)" in text
    )
    assert text.index("Stage: sft") < text.index("Stage: grpo")
    assert "written by an LLM (gpt-4.1)" in text and "written by the offline trace writer" in text
    assert "| `learning_rate` | 2e-05 |" in text and "| `image_loss_weight` | 0.3 |" in text
    assert "global_step 37, epoch 2.96, train_loss 1.4242" in text
    assert (  # one markdown table: header, rule, rows on consecutive lines; missing levels are not filled in
        "| benchmark | metric | clean | low | mid | hard |\n|---|---|---|---|---|---|\n"
        "| MMBench | accuracy | 71.25 | 69.5 | 66.75 | 61.125 |\n"
        "| RealWorldQA | accuracy | 58.5 | — | — | 51.75 |\n"
    ) in text
    assert (
        "| benchmark | clean | low | mid | hard |\n|---|---|---|---|---|\n"
        "| MMBench | 0.0125 | 0.0625 | 0.1375 | 0.4125 |\n"
        "| all benchmarks | 0.0111 | 0.0555 | 0.1222 | 0.3888 |\n"
    ) in text
    assert "`clear_tag_mode`) | `text`" in text and "| guidance preset | `clear_eval` |" in text


def test_card_numbers_all_come_from_the_run_files(run_folder):
    text = str(build_model_card(run_folder, model_id="me/tiny-clear"))
    body = text.split("## Citation")[0]  # the citation block is the paper's, not the run's
    sources = "".join(p.read_text() for p in run_folder.iterdir()) + "0.1.0.dev0"  # the remote code's version
    stray = {n for n in _numbers(body) if n not in sources}
    assert not stray, stray


def test_card_without_run_files_states_no_training_or_results(tmp_path):
    _config(tmp_path)
    text = str(build_model_card(tmp_path))
    assert "No training record (`clear_training.json`)" in text and "No evaluation report" in text
    training = text.split("## Training")[1].split("## Intended use")[0]
    assert _numbers(training) == set()
    assert "licence of the base weights is not recorded" in text
    assert parse_card_metadata(_saved(tmp_path)).eval_results is None


def _saved(folder: Path) -> Path:
    return write_model_card(folder, model_id="me/tiny-clear")


def test_metadata_parses_back_with_huggingface_hub(run_folder):
    path = _saved(run_folder)
    data = parse_card_metadata(path)
    assert data.base_model == "ByteDance-Seed/BAGEL-7B-MoT" and data.license == "apache-2.0"
    assert data.library_name == "transformers" and "clear" in data.tags
    got = {(r.dataset_name, r.dataset_config, r.metric_value) for r in data.eval_results}
    want = {
        (row["benchmark"], level, value)
        for row in REPORT["results"]
        for level, value in row["scores"].items()
    }
    assert got == want
    raw = metadata_load(path)  # the YAML block, parsed independently of ModelCard
    name, results = model_index_to_eval_results(raw["model-index"])
    assert name == "tiny-clear" and len(results) == len(want)
    assert {r.task_type for r in results} == {"visual-question-answering"}
    assert ModelCard.load(path).data.to_dict()["model-index"] == raw["model-index"]


def test_training_record_carries_earlier_stages_and_checks_provenance(run_folder, tmp_path):
    record = read_training(run_folder)
    assert [s["stage"] for s in record.stages] == ["sft", "grpo"]
    assert record.base_model == "ByteDance-Seed/BAGEL-7B-MoT" and record.run_id == "grpo-run-2"
    assert record.stages[0]["hyperparameters"] == SFT_HPARAMS
    with pytest.raises(ClearConfigError, match="trace_source='gpt'"):
        record_training_stage(
            tmp_path / "x", stage="sft", trainer="T", hyperparameters={}, dataset={"trace_source": "gpt"}
        )
    with pytest.raises(ClearConfigError, match="not JSON scalars"):
        record_training_stage(
            tmp_path / "y", stage="sft", trainer="T", hyperparameters={"betas": (0.9, 0.95)}
        )


def test_hyperparameters_are_read_from_the_trainer_config(tmp_path):
    from trl import SFTConfig

    args = SFTConfig(
        output_dir=str(tmp_path), learning_rate=3e-5, num_train_epochs=2, report_to=[], bf16=False
    )
    values = training_hyperparameters(args)
    assert values["learning_rate"] == 3e-5 and values["num_train_epochs"] == 2
    assert values["lr_scheduler_type"] == "linear"  # an enum, recorded by value
    json.dumps(values)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.update(format="other/1"), "format 'other/1'"),
        (lambda r: r.update(levels=[]), "'levels' must be a non-empty list"),
        (lambda r: r["results"][0]["scores"].update(extreme=1.0), "not numbers for listed levels"),
        (lambda r: r["results"][1]["scores"].update(hard="51"), "not numbers for listed levels"),
        (lambda r: r["results"][0].pop("benchmark"), r"results\[0\] needs 'benchmark'"),
    ],
)
def test_malformed_eval_reports_are_refused_with_the_key(tmp_path, edit, message):
    report = json.loads(json.dumps(REPORT))
    edit(report)
    path = tmp_path / EVAL_FILE
    path.write_text(json.dumps(report))
    with pytest.raises(ClearConfigError, match=message):
        read_eval_report(path)


def test_reads_the_sft_trainers_flat_metadata_and_the_evaluators_report(tmp_path):
    _config(tmp_path)
    flat = {  # what ClearSFTTrainer.write_metadata writes
        "stage": "sft",
        "clear_tag_mode": "text",
        "adapter": "BagelAdapter",
        "model_type": "clear_bagel",
        "preset": "reference",
        "mse_weight": 1.0,
        "kl_weight": 0.4,
        "vit_drop_prob": 0.4,
        "trainable_groups": ["understanding", "generation", "bridge"],
        "peft": False,
    }
    (tmp_path / "clear_training.json").write_text(json.dumps(flat))
    run_report = {  # what clear-plugins eval writes as report.json (percent values, AVG row included)
        "model": {"name": "tiny-run"},
        "rows": 40,
        "errors": 0,
        "accuracy": {"MMBench": {"clean": 62.5, "hard": 37.5}, "AVG": {"clean": 62.5, "hard": 37.5}},
        "trigger_rate": {"MMBench": {"clean": 5.0, "hard": 45.0}, "AVG": {"clean": 5.0, "hard": 45.0}},
    }
    (tmp_path / EVAL_FILE).write_text(json.dumps(run_report))
    record = read_training(tmp_path)
    assert [s["stage"] for s in record.stages] == ["sft"] and record.stages[0]["preset"] == "reference"
    assert record.stages[0]["hyperparameters"]["kl_weight"] == 0.4
    text = str(build_model_card(tmp_path, model_id="me/tiny-clear"))
    assert "- config preset: `reference`" in text and "| `kl_weight` | 0.4 |" in text and "run id" not in text
    assert (
        "| benchmark | metric | clean | hard |\n|---|---|---|---|\n| MMBench | accuracy (%) | 62.5 | 37.5 |"
        in text
    )
    assert "Trigger rate (% of answers that ran a restore)" in text and "| MMBench | 5.0 | 45.0 |" in text
    body = text.split("## Citation")[0]
    sources = "".join(p.read_text() for p in tmp_path.iterdir()) + "0.1.0.dev0"
    assert {n for n in _numbers(body) if n not in sources} == set()
    results = parse_card_metadata(_saved(tmp_path)).eval_results
    assert {(r.dataset_name, r.dataset_config, r.metric_value) for r in results} == {
        ("MMBench", "clean", 62.5),
        ("MMBench", "hard", 37.5),
        ("AVG", "clean", 62.5),
        ("AVG", "hard", 37.5),
    }
