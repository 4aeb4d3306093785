"""The packaged sample VQA set builds offline through the CLI (the README's main command)."""

from __future__ import annotations

import json

from clear_plugins.bench.sample import sample_source
from clear_plugins.cli import main


def test_sample_source_is_packaged_with_its_images():
    path = sample_source()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 6
    assert all((path.parent / row["image"]).is_file() for row in rows)


def test_clear_bench_build_sample(tmp_path, capsys):
    out = tmp_path / "mmd"
    assert main(["bench", "build", "--sample", "-o", str(out), "--no-progress"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["entries"]) == 6 * 3 and not manifest["bad_rows"]
    for level in ("low", "mid", "hard"):
        rows = (out / level / "sample.jsonl").read_text().splitlines()
        assert len(rows) == 6 and json.loads(rows[0])["clear_level"] == level


def test_source_and_sample_are_exclusive(tmp_path, capsys):
    assert main(["bench", "build", "-o", str(tmp_path)]) == 2
    assert "SOURCE or --sample" in capsys.readouterr().err
