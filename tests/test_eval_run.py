"""The evaluation runner end to end: a tiny CLEAR model (the fake flow backbone through ClearPipeline) on two
tiny benchmarks built by ``bench build`` (circular multiple choice; yes/no and open), clean/low/mid/hard."""

from __future__ import annotations

import json

import pytest
from eval_helpers import tiny_benches, tiny_model
from PIL import Image

from clear_plugins.errors import ClearConfigError
from clear_plugins.eval.config import EvalConfig
from clear_plugins.eval.report import write_report
from clear_plugins.eval.runner import read_predictions, run_eval
from clear_plugins.eval.scoring import unit_scores


@pytest.fixture(scope="module")
def benches(tmp_path_factory):
    return tiny_benches(tmp_path_factory.mktemp("benches"))


def _config(benches, out, **overrides):
    return EvalConfig(benchmarks=tuple(map(str, benches)), output_dir=str(out), progress=False, **overrides)


def _stable(records):
    """Records without wall-clock fields, in key order (what must not change between runs)."""
    return sorted(({k: v for k, v in r.items() if k != "seconds"} for r in records), key=lambda r: r["key"])


def test_tiny_model_on_tiny_bench_writes_every_table_and_plot(benches, tmp_path):
    result = run_eval(tiny_model(keep_restored=True), _config(benches, tmp_path / "run", save_restored=True))
    records = read_predictions(tmp_path / "run")
    assert result.evaluated == len(records) == 2 * 4 * 18 // 3 * 3 // 2 + 4 * 6  # 72 mc rows + 24 open rows
    written = write_report(tmp_path / "run", iqa=True)
    report = json.loads(written["json"].read_text())
    accuracy = report["accuracy"]
    # circular: 6 questions x 3 rotations = 18 rows but 6 units per level; recompute one cell by hand
    hard_mc = [r for r in records if r["benchmark"] == "MMBench_TOY" and r["level"] == "hard"]
    groups = {}
    for r in hard_mc:
        groups.setdefault(r["circular_group"], []).append(r["score"])
    assert len(hard_mc) == 18 and len(groups) == 6
    by_hand = 100 * sum(all(s >= 0.5 for s in g) for g in groups.values()) / 6
    assert accuracy["MMBench_TOY"]["hard"] == pytest.approx(by_hand)
    assert accuracy["MMBench_TOY"]["clean"] == accuracy["TOY_OPEN"]["clean"] == 100.0
    assert accuracy["AVG"]["hard"] < accuracy["AVG"]["clean"]
    assert accuracy["AVG"]["hard"] == pytest.approx(
        (accuracy["MMBench_TOY"]["hard"] + accuracy["TOY_OPEN"]["hard"]) / 2
    )
    robust = report["robustness"]["AVG"]
    assert robust["drop"] == pytest.approx(robust["clean"] - robust["hard"]) and robust["drop"] > 0
    trigger = report["trigger_rate"]
    assert trigger["AVG"]["clean"] == 0 and trigger["AVG"]["hard"] > 0
    restored = [r for r in records if r["restored"]]
    assert restored and all(r["num_restores"] == 1 and r["restored_images"] for r in restored)
    assert not any(r["restored_images"] for r in records if not r["restored"])
    assert set(report["per_corruption_category"]) <= {
        "capture",
        "transmission",
        "environmental",
        "post_processing",
    }
    assert {r["type"] for r in records if r["level"] == "hard"} == set(report["per_type"])
    times = report["time"]
    assert times["Total"]["hard"]["rows"] == 18 + 6 and times["Total"]["hard"]["total_s"] > 0
    iqa = report["iqa"]
    assert iqa["hard / restored"]["images"] == sum(1 for r in restored if r["level"] == "hard")
    assert iqa["hard / input"]["psnr"] > iqa["hard / restored"]["psnr"]  # an untrained restorer: noise
    markdown = written["markdown"].read_text()
    for title in ("Table 1 / Table 9", "Table 2", "Table 10", "Fig. 5", "Table 11", "Table 4"):
        assert title in markdown
    for name in ("fig5", "curve"):
        with Image.open(written[name]) as picture:
            assert picture.format == "PNG" and picture.width > 300


def test_resume_after_an_interruption_gives_identical_results(benches, tmp_path):
    run_eval(tiny_model(), _config(benches, tmp_path / "whole", batch_size=5))

    class Interrupted(RuntimeError):
        pass

    model = tiny_model()
    calls = {"n": 0}
    original = model.answer

    def fail_on_fourth_batch(requests):
        calls["n"] += 1
        if calls["n"] == 4:
            raise Interrupted("killed mid-run")
        return original(requests)

    model.answer = fail_on_fourth_batch
    with pytest.raises(Interrupted):
        run_eval(model, _config(benches, tmp_path / "resumed", batch_size=5))
    partial = read_predictions(tmp_path / "resumed")
    assert len(partial) == 15
    with (tmp_path / "resumed" / "predictions.jsonl").open("a") as handle:
        handle.write('{"key": "torn')  # a write cut short by the kill
    result = run_eval(tiny_model(), _config(benches, tmp_path / "resumed", batch_size=5))
    assert result.skipped == 15 and result.evaluated == 96 - 15
    assert _stable(read_predictions(tmp_path / "resumed")) == _stable(read_predictions(tmp_path / "whole"))
    again = run_eval(tiny_model(), _config(benches, tmp_path / "resumed", batch_size=5))
    assert again.evaluated == 0 and again.skipped == 96
    reports = [json.loads(write_report(tmp_path / name)["json"].read_text()) for name in ("whole", "resumed")]
    for table in ("accuracy", "robustness", "per_type", "per_corruption_category", "trigger_rate"):
        assert reports[0][table] == reports[1][table]


def test_a_run_folder_refuses_another_model_unless_overwritten(benches, tmp_path):
    config = _config(benches, tmp_path / "run", limit=2, levels=("clean",))
    run_eval(tiny_model(), config)
    with pytest.raises(ClearConfigError, match="another model"):
        run_eval(tiny_model(name="other"), config)
    config.overwrite = True
    result = run_eval(tiny_model(name="other"), config)
    assert result.skipped == 0 and result.evaluated == 4
    assert json.loads((tmp_path / "run" / "run.json").read_text())["model"]["name"] == "other"


def test_unreadable_images_are_recorded_and_left_out(benches, tmp_path):
    images = sorted((benches[1] / "hard" / "images").iterdir())
    images[0].write_bytes(b"not an image")
    try:
        result = run_eval(tiny_model(), _config(benches[1:], tmp_path / "run", levels=("hard",)))
    finally:
        images[0].unlink()  # the fixture is shared: the next build of this row is not needed
    records = read_predictions(tmp_path / "run")
    bad = [r for r in records if "error" in r]
    assert result.errors == 1 and len(bad) == 1 and "cannot be decoded" in bad[0]["error"]
    report = json.loads(write_report(tmp_path / "run")["json"].read_text())
    assert report["errors"] == 1 and report["time"]["Total"]["hard"]["rows"] == 5


def test_limit_levels_and_types(benches, tmp_path):
    records_all = []
    run_eval(tiny_model(), _config(benches[:1], tmp_path / "a", levels=("hard",)))
    records_all = read_predictions(tmp_path / "a")
    kept = sorted({r["type"] for r in records_all})[:1]
    run_eval(tiny_model(), _config(benches[:1], tmp_path / "b", levels=("hard",), types=tuple(kept)))
    only = read_predictions(tmp_path / "b")
    assert only and {r["type"] for r in only} == set(kept)
    with pytest.raises(ClearConfigError, match="levels"):
        _config(benches, tmp_path / "c", levels=("extreme",))
    with pytest.raises(ClearConfigError, match="inside the benchmark"):
        _config(benches, benches[0] / "runs")
    units = unit_scores(records_all)
    assert len(units) == 6


def test_a_run_records_its_judge_and_refuses_another(benches, tmp_path):
    from clear_plugins.rewards.judges import FallbackJudge, JudgeConfig, LLMJudge, RuleJudge

    config = _config(benches[1:], tmp_path / "run", limit=1, levels=("clean",))
    run_eval(tiny_model(), config, judge=RuleJudge())
    header = json.loads((tmp_path / "run" / "run.json").read_text())
    assert header["judge"] == {"type": "RuleJudge"}
    llm = LLMJudge.from_config(JudgeConfig(base_url="http://127.0.0.1:9/v1", model="judge-m"), api_key="sk-x")
    with pytest.raises(ClearConfigError, match="changed: judge"):
        run_eval(tiny_model(), config, judge=FallbackJudge(llm, RuleJudge()))
    config.overwrite = True
    run_eval(tiny_model(), config, judge=FallbackJudge(llm, RuleJudge()))
    text = (tmp_path / "run" / "run.json").read_text()
    assert json.loads(text)["judge"]["primary"] == {"type": "LLMJudge", "model": "judge-m"}
    assert "sk-x" not in text and "127.0.0.1:9" not in text
