"""``clear-plugins eval`` from the command line: run against an OpenAI-compatible loopback server, report,
resume, the LLM judge for open answers only, released-style table files, and clear errors."""

from __future__ import annotations

import json
import shutil

import pytest
from eval_helpers import tiny_benches
from judge_server import JudgeServer, Reply

from clear_plugins.cli import main
from clear_plugins.eval.items import Benchmark, iter_items
from clear_plugins.eval.runner import read_predictions


@pytest.fixture(scope="module")
def benches(tmp_path_factory):
    return tiny_benches(tmp_path_factory.mktemp("cli"))


def test_run_report_and_resume_from_the_shell(benches, tmp_path, capsys):
    run = tmp_path / "run"
    with JudgeServer(Reply(content="cat")) as model, JudgeServer(Reply(content="0.5")) as judge:
        argv = [
            "eval",
            "run",
            *map(str, benches),
            "-o",
            str(run),
            "--model-kind",
            "openai",
            "--model",
            "m",
            "--base-url",
            model.base_url,
            "--judge-base-url",
            judge.base_url,
            "--judge-model",
            "j",
            "--levels",
            "clean,hard",
            "--batch-size",
            "4",
            "--no-progress",
        ]
        assert main(argv) == 0
        assert "48 row(s) evaluated, 0 already done" in capsys.readouterr().err
        assert main(argv) == 0
        assert "0 row(s) evaluated, 48 already done" in capsys.readouterr().err
    records = read_predictions(run)
    open_rows = [r for r in records if r["kind"] == "open"]
    assert open_rows and all(r["score"] == 0.5 for r in open_rows)  # the LLM judge's score
    assert len(judge.received) == len(open_rows)  # yes/no and multiple choice never reach the judge
    assert all(r["score"] == 0.0 for r in records if r["kind"] == "yesno")  # "cat" says neither yes nor no
    clean_mc = [r["score"] for r in records if r["kind"] == "mc" and r["level"] == "clean"]
    assert sorted(clean_mc) == [0.0] * 12 + [1.0] * 6  # "cat" names option "a cat": right for the 6 cat rows
    assert main(["eval", "report", str(run)]) == 0
    out = capsys.readouterr().out
    assert "## Accuracy per level (Table 1 / Table 9)" in out and "| hard |" in out
    assert json.loads((run / "report.json").read_text())["trigger_rate"]["AVG"]["hard"] == 0.0


def test_errors_are_messages_not_tracebacks(benches, tmp_path, capsys):
    assert (
        main(
            [
                "eval",
                "run",
                str(benches[0]),
                "-o",
                str(tmp_path / "r"),
                "--model-kind",
                "openai",
                "--model",
                "m",
            ]
        )
        == 2
    )
    assert "needs --base-url" in capsys.readouterr().err
    argv = [
        "eval",
        "run",
        str(tmp_path / "missing"),
        "-o",
        str(tmp_path / "r"),
        "--model-kind",
        "openai",
        "--model",
        "m",
        "--base-url",
        "http://127.0.0.1:9/v1",
    ]
    assert main(argv) == 2
    assert "is not a benchmark built by 'clear-plugins bench build'" in capsys.readouterr().err
    with JudgeServer(Reply(status=500)) as down:
        argv = [
            "eval",
            "run",
            str(benches[0]),
            "-o",
            str(tmp_path / "r2"),
            "--model-kind",
            "openai",
            "--model",
            "m",
            "--base-url",
            down.base_url,
            "--levels",
            "clean",
            "--no-progress",
        ]
        assert main(argv) == 1
    assert "HTTP 500" in capsys.readouterr().err
    assert main(["eval", "report", str(tmp_path / "nothing")]) == 2
    assert main(["eval"]) == 2


def test_eval_iqa_prints_every_metric_and_its_implementation(tmp_path, capsys):
    from eval_helpers import photos

    photos(256)[0].save(tmp_path / "a.png")
    photos(256)[0].rotate(3).save(tmp_path / "b.png")
    assert main(["eval", "iqa", str(tmp_path / "b.png"), "--clean", str(tmp_path / "a.png")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"brisque", "niqe", "psnr", "ssim"} <= set(data) and data["niqe"] > 0
    assert "brisque" in data["implementations"]


def test_released_table_files_name_their_benchmark_level_and_type(benches, tmp_path):
    hard = benches[0] / "hard" / "MMBench_TOY.tsv"
    for name, level, kind in (
        ("MMBench_TOY_LOW_LEVEL_HIGH.tsv", "hard", None),
        ("MMBench_TOY_LOW_LEVEL_LOW.tsv", "low", None),
        ("MMBench_TOY_motion_blur.tsv", "hard", "motion_blur"),
    ):
        shutil.copy(hard, tmp_path / name)
        bench = Benchmark.open(tmp_path / name)
        assert bench.name == "MMBench_TOY" and bench.levels == (level,)
        items = list(iter_items(bench, level))
        assert len(items) == 18 and items[0].clean_image() is None
        # the build's clear_type column wins over the file name; files without it take the name's type
        assert all(item.type == item.type.strip() and item.type != "none" for item in items)
        assert kind is None or Benchmark.open(tmp_path / name).fixed == ("hard", kind)
    plain = tmp_path / "plain.tsv"
    shutil.copy(benches[0].parent / "src_mc" / "MMBench_TOY.tsv", plain)
    assert Benchmark.open(f"{plain}@mid").levels == ("mid",)
    items = list(iter_items(Benchmark.open(plain), "clean"))
    assert {i.type for i in items} == {"none"} and len({i.circular_group for i in items}) == 6


def test_hf_baseline_from_a_saved_folder(benches, tmp_path, capsys):
    from eval_helpers import tiny_llava_pipeline

    pipe = tiny_llava_pipeline()
    pipe.model.save_pretrained(tmp_path / "llava")
    pipe.processor.save_pretrained(tmp_path / "llava")
    argv = [
        "eval",
        "run",
        str(benches[1]),
        "-o",
        str(tmp_path / "run"),
        "--model-kind",
        "hf",
        "--model",
        str(tmp_path / "llava"),
        "--levels",
        "clean,hard",
        "--max-new-tokens",
        "4",
        "--batch-size",
        "3",
        "--no-progress",
    ]
    assert main(argv) == 0
    assert "12 row(s) evaluated" in capsys.readouterr().err
    records = read_predictions(tmp_path / "run")
    assert all(r["text"] and not r["restored"] and r["score"] in (0.0, 1.0) for r in records)
    header = json.loads((tmp_path / "run" / "run.json").read_text())
    assert header["model"] == {"kind": "hf_pipeline", "name": str(tmp_path / "llava"), "max_new_tokens": 4}
