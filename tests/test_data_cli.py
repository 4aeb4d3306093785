"""``clear-plugins data build`` from the command line, probing a tiny random Bagel saved to disk."""

from __future__ import annotations

import json

import pytest
from bagel_helpers import build_tiny_bagel
from data_fixtures import write_source

from clear_plugins.cli import main
from clear_plugins.data.schema import TrainingRow, read_jsonl, row_problem
from clear_plugins.rewards.judge_rules import RuleJudge

BAGEL_CLASS = "clear_plugins.adapters.bagel.modeling_bagel:BagelForConditionalGeneration"


@pytest.fixture(scope="module")
def tiny_bagel_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_bagel")
    model, tokenizer = build_tiny_bagel(0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_cli_build_probes_a_tiny_bagel_and_writes_offline_traces(tmp_path, tiny_bagel_dir, capsys):
    source = write_source(tmp_path / "src", 6)
    out = tmp_path / "out"
    args = ["data", "build", str(source), "-o", str(out), "--probe-model", str(tiny_bagel_dir)]
    args += ["--probe-model-class", BAGEL_CLASS, "--probe-max-new-tokens", "4", "--writer", "offline"]
    assert main([*args, "--balance", "none"]) == 0
    assert "clear-plugins data build: wrote sft" in capsys.readouterr().out
    probes = [r for _, r, _ in read_jsonl(out / "stages" / "probe.jsonl")]
    assert len(probes) == 6 and all(p["prober"] == "pipeline:BagelAdapter" for p in probes)
    assert all(p["pathway"] == ("direct" if p["probe_score"] > 0.5 else "restore") for p in probes)
    rows = [
        TrainingRow.from_mapping(r)
        for name in ("sft", "grpo")
        for _, r, _ in read_jsonl(out / f"{name}.jsonl")
    ]
    assert len(rows) == 6 and all(row_problem(r) is None for r in rows)
    assert {r.id: r.pathway for r in rows} == {p["id"]: p["pathway"] for p in probes}
    stats = json.loads((out / "stats.json").read_text())
    wrong = sum(p["pathway"] == "restore" for p in probes)
    assert stats["pipeline"]["probe_wrong"] == wrong and stats["offline"] is True
    samples = {r["id"]: r for _, r, _ in read_jsonl(out / "stages" / "sample.jsonl")}
    for p in probes:  # the probe's score is the rule judge's verdict on the model's own reply
        sample = samples[p["id"]]
        assert p["probe_score"] == RuleJudge().score(sample["question"], p["probe_answer"], sample["answer"])
    # Rerunning the finished build changes nothing and probes nothing again.
    before = (out / "sft.jsonl").read_bytes()
    assert main([*args, "--balance", "none"]) == 0
    assert (out / "sft.jsonl").read_bytes() == before
    assert len((out / "stages" / "probe.jsonl").read_text().splitlines()) == 6


def test_cli_errors_are_one_line_without_traceback(tmp_path, capsys):
    source = write_source(tmp_path / "src", 2)
    assert (
        main(
            ["data", "build", str(source), "-o", str(tmp_path / "o"), "--probe-model", str(tmp_path / "none")]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "is not a folder" in err and "Traceback" not in err
    code = main(
        [
            "data",
            "build",
            str(source),
            "-o",
            str(tmp_path / "o"),
            "--probe-model",
            str(tmp_path),
            "--probe-model-class",
            "nope:Nothing",
        ]
    )
    assert code == 1 and "names no importable class" in capsys.readouterr().err
    assert main(["data", "import", str(tmp_path / "missing"), "-o", str(tmp_path / "o2")]) == 1
    assert "does not exist" in capsys.readouterr().err
    missing = str(tmp_path / "prompt.txt")
    code = main(
        [
            "data",
            "build",
            str(source),
            "-o",
            str(tmp_path / "o"),
            "--probe-model",
            str(tmp_path),
            "--probe-system-prompt-file",
            missing,
        ]
    )
    assert code == 1 and "cannot read --probe-system-prompt-file" in capsys.readouterr().err
    assert main(["data"]) == 2 and "build or import" in capsys.readouterr().err
