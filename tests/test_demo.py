"""``clear-plugins demo``: the quick run end to end (what CI runs), seeds, resuming, the shipped base's checksum,
stage 0's gate record and the demo tokenizer."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from clear_plugins.cli import main

pytest.importorskip("easy_vqa")


def _numbers(value):
    """Every int/float inside a JSON value."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)


def _run_quick(out: Path, seed: int, capsys) -> dict:
    assert main(["demo", "--quick", "--seed", str(seed), "--out", str(out)]) == 0
    summary = capsys.readouterr().out
    assert "colour+shape accuracy" in summary and str(out / "report.md") in summary
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


def test_demo_quick_runs_every_stage_and_two_seeds_differ(tmp_path, capsys):
    first = _run_quick(tmp_path / "s0", 0, capsys)
    for name in ("data", "eval_base", "sft", "eval_sft", "rl", "eval_rl", "ablations", "export"):
        assert first["stages"][name]["status"] == "done", (name, first["stages"][name])
    assert first["stages"]["stage0"]["status"] == "shipped"
    for name in ("report.md", "results.json", "accuracy.png", "trigger_rate.png", "psnr.png"):
        assert (tmp_path / "s0" / name).stat().st_size > 0, name
    levels = first["eval_rl"]["levels"]
    assert set(levels) == {"clean", "low", "mid", "hard"}
    assert set(first["ablations"]) == {"bridge", "decode_reencode", "degraded_latent"}
    main_tables = [first["eval_base"]["levels"], first["eval_sft"]["levels"], levels, first["ablations"]]
    assert all(math.isfinite(x) for x in _numbers(main_tables))
    assert all(math.isfinite(x) for x in _numbers(first["sft"]) if x is not None)
    report = (tmp_path / "s0" / "report.md").read_text(encoding="utf-8")
    assert "Seed 0" in report and "colour+shape" in report.lower()
    second = _run_quick(tmp_path / "s1", 1, capsys)
    assert second["data"]["stats"] != first["data"]["stats"]
    assert second["eval_base"]["answers"] != first["eval_base"]["answers"]
    assert second["sft"]["train_loss"] != first["sft"]["train_loss"]


def test_demo_rerun_resumes_from_cached_stages(tmp_path, capsys):
    out = tmp_path / "run"
    first = _run_quick(out, 0, capsys)
    again = _run_quick(out, 0, capsys)
    assert all(again["stages"][k].get("cached") for k in ("data", "sft", "rl", "eval_rl", "export"))
    assert again["eval_rl"]["levels"] == first["eval_rl"]["levels"]


def test_demo_export_loads_with_automodel(tmp_path, capsys):
    from transformers import AutoModel

    out = tmp_path / "run"
    _run_quick(out, 0, capsys)
    model = AutoModel.from_pretrained(out / "export", trust_remote_code=True)
    assert model.config.clear_tag_mode == "token"
    assert (out / "export" / "README.md").is_file()


def test_demo_refuses_a_folder_made_with_other_settings(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "settings.json").write_text(json.dumps({"quick": True, "seed": 5, "from_scratch": False}))
    assert main(["demo", "--quick", "--out", str(out)]) == 1
    assert "settings" in capsys.readouterr().err


def test_shipped_base_checksum_mismatch_is_refused(tmp_path):
    from clear_plugins.demo.run import SHIPPED_BASE, check_shipped_base

    assert len(check_shipped_base()) == 64
    copy = tmp_path / "base"
    shutil.copytree(SHIPPED_BASE, copy)
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match="--from-scratch"):
        check_shipped_base(copy)


def test_shipped_base_records_its_command_seed_log_and_gate():
    from clear_plugins.demo.run import SHIPPED_BASE
    from clear_plugins.demo.world import DEMO_DEGRADATIONS

    record = json.loads((SHIPPED_BASE / "stage0.json").read_text(encoding="utf-8"))
    assert record["config"]["seed"] == 0 and "command" in record
    assert "restore step" in (SHIPPED_BASE / "train_log.txt").read_text(encoding="utf-8")
    for name in DEMO_DEGRADATIONS:
        row = record["gate"][f"{name}/hard"]
        assert math.isfinite(row["degraded_psnr"]) and math.isfinite(row["restored_psnr"])


def test_pretrain_base_quick_writes_a_loadable_checkpoint_and_gate(tmp_path, capsys):
    from clear_plugins.demo.run import load_model, sha256

    out = tmp_path / "base"
    status = main(["demo", "--pretrain-base", "--quick", "--out", str(out)])
    record = json.loads((out / "stage0.json").read_text(encoding="utf-8"))
    assert status == (0 if record["gate"]["passed"] else 1)
    assert (out / "SHA256").read_text().split()[0] == sha256(out / "model.safetensors")
    assert all(math.isfinite(x) for x in _numbers(record["gate"]))
    adapter = load_model(out, out, restore_steps=2)
    assert adapter.model.config.clear_tag_mode == "token"


def test_demo_tokenizer_spells_questions_answers_and_offline_traces_without_unknowns():
    from clear_plugins.data.offline import offline_trace
    from clear_plugins.demo.world import build_tokenizer, questions

    tokenizer = build_tokenizer()
    unk = tokenizer.unk_token_id
    for q in questions("test")[:200]:
        for pathway in ("direct", "restore"):
            sample = {"question": q.question, "answer": q.answer, "degradation": "lens_blur", "level": "hard"}
            ids = tokenizer.encode(offline_trace(sample, pathway, seed=3), add_special_tokens=False)
            assert unk not in ids
    tags = tokenizer.encode("<think> x </think> <image_restore>", add_special_tokens=False)
    assert len(tags) == 4


def test_readme_first_command_is_the_demo_and_shows_the_committed_table():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    first_bash = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    first_command = next(line for line in first_bash.splitlines() if line and not line.startswith("#"))
    assert "clear-plugins demo" in first_command
    committed = Path(__file__).resolve().parents[1] / "docs" / "demo" / "results.json"
    results = json.loads(committed.read_text(encoding="utf-8"))
    rl_clean = results["eval_rl"]["levels"]["clean"]["colour_shape_accuracy"]
    assert f"{100 * rl_clean:.1f}" in readme.split("## The demo", 1)[1].split("## Quickstart", 1)[0]
