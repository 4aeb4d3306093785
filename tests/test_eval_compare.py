"""``eval compare``: paired deltas with a stratified bootstrap, and the within-noise verdict."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_helpers import PhotoAdapter, tiny_benches, tiny_model

from clear_plugins.cli import main
from clear_plugins.errors import ClearConfigError
from clear_plugins.eval.compare import CompareConfig, compare_runs, paired_delta, write_comparison
from clear_plugins.eval.config import EvalConfig
from clear_plugins.eval.report import summarize
from clear_plugins.eval.runner import read_predictions, run_eval


class GuessesA(PhotoAdapter):
    """A worse tiny model: the same pipeline, but it always picks option A / says yes."""

    @staticmethod
    def _answer(context) -> str:
        return "A" if "Options:" in context["question"] else "yes"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    benches = tiny_benches(root / "benches")
    folders = {}
    for name, adapter in (("a", None), ("a_again", None), ("worse", GuessesA)):
        model = tiny_model(name=name)
        if adapter is not None:
            model.pipeline.adapter = adapter(model.pipeline.adapter.model)
        config = EvalConfig(benchmarks=tuple(map(str, benches)), output_dir=str(root / name), progress=False)
        run_eval(model, config)
        folders[name] = root / name
    return folders


def test_deltas_are_differences_of_the_report_accuracies(runs):
    result = compare_runs(runs["a"], runs["worse"], CompareConfig(resamples=500))
    accuracy = {k: summarize(read_predictions(runs[k]))["accuracy"]["AVG"] for k in ("a", "worse")}
    for level, entry in result["per_level"].items():
        assert entry["delta"] == pytest.approx(accuracy["worse"][level] - accuracy["a"][level])
        assert (
            entry["A"] == pytest.approx(accuracy["a"][level])
            and entry["low"] <= entry["delta"] <= entry["high"]
        )
    clean = result["per_level"]["clean"]
    assert clean["delta"] < 0 and clean["high"] < 0 and clean["verdict"] == "A better"
    assert result["only_in_A"] == result["only_in_B"] == 0
    assert set(result["per_corruption_category"]) <= {
        "capture",
        "transmission",
        "environmental",
        "post_processing",
    }


def test_identical_runs_are_within_noise(runs):
    result = compare_runs(runs["a"], runs["a_again"])
    for entry in result["per_level"].values():
        assert entry["delta"] == entry["low"] == entry["high"] == 0 and entry["verdict"] == "within noise"


def test_bootstrap_interval_matches_the_normal_approximation():
    rng = np.random.default_rng(1)
    a, b = rng.random(400) < 0.6, rng.random(400) < 0.65
    diffs = b.astype(float) - a.astype(float)
    entry = paired_delta({"bench": diffs}, CompareConfig(resamples=4000, seed=3))
    half = 1.96 * diffs.std(ddof=1) / np.sqrt(len(diffs)) * 100
    assert entry["delta"] == pytest.approx(100 * diffs.mean())
    assert (entry["high"] - entry["low"]) / 2 == pytest.approx(half, rel=0.1)
    assert entry["verdict"] == ("within noise" if entry["low"] <= 0 <= entry["high"] else "B better")
    sure = paired_delta({"x": np.ones(50), "y": np.ones(10)}, CompareConfig())
    assert sure["delta"] == sure["low"] == sure["high"] == 100 and sure["verdict"] == "B better"
    # stratified: the mean over benchmarks, not over rows (the paper averages its benchmarks)
    strata = paired_delta({"x": np.ones(90), "y": np.zeros(10)}, CompareConfig())
    assert strata["delta"] == pytest.approx(50)


def test_cli_compare_writes_markdown_json_and_plot(runs, tmp_path, capsys):
    assert main(["eval", "compare", str(runs["a"]), str(runs["worse"]), "-o", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "worse (B) vs a (A)" in out and "A better" in out
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert set(data["per_level"]) == {"clean", "low", "mid", "hard"}
    assert (tmp_path / "cmp" / "clean_to_hard.png").stat().st_size > 1000


def test_runs_without_shared_rows_are_refused(runs, tmp_path, capsys):
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    record = json.loads((runs["a"] / "predictions.jsonl").read_text().splitlines()[0])
    (lonely / "predictions.jsonl").write_text(json.dumps({**record, "benchmark": "Other"}) + "\n")
    with pytest.raises(ClearConfigError, match="share no rows"):
        write_comparison(runs["a"], lonely, tmp_path / "out")
    assert main(["eval", "compare", str(runs["a"]), str(lonely)]) == 2
    assert "share no rows" in capsys.readouterr().err
    with pytest.raises(ClearConfigError, match="resamples"):
        CompareConfig(resamples=5)
