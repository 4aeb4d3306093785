"""MMD-Bench builder: every input format, bit-for-bit rebuilds, resume, bad rows, full mode, errors."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from bench_fixtures import ROWS, _config, _decoded, _photos, _row, _sha, _tree, make_source
from PIL import Image

from clear_plugins import degradations
from clear_plugins.bench.builder import build_benchmark
from clear_plugins.bench.config import BenchBuildConfig
from clear_plugins.bench.plan import derive_seed
from clear_plugins.bench.sources import read_source
from clear_plugins.cli import main
from clear_plugins.errors import ClearConfigError, ImageInputError

LEVELS = ("low", "mid", "hard")
MAY_BE_IDENTITY = {"block_exchange"}
"""At 48 px block_exchange has a 2x2 grid of blocks, and its ~32 random swaps compose to the identity ~1/24 of the time."""


@pytest.fixture(scope="module")
def clean_photos() -> list[np.ndarray]:
    return [np.asarray(photo) for photo in _photos()]


@pytest.mark.parametrize("fmt", ["jsonl_paths", "jsonl_base64", "csv", "parquet", "tsv"])
def test_build_every_format_writes_each_level_in_the_same_format(tmp_path, fmt):
    source = make_source(tmp_path / "src", fmt)
    source_table = read_source(_config(source, tmp_path / "unused"))
    result = build_benchmark(_config(source, tmp_path / "out"))
    manifest = json.loads(result.manifest_path.read_text())

    assert manifest["source"]["sha256"] == _sha(source)
    assert manifest["bad_rows"] == []
    assert len(manifest["entries"]) == ROWS * len(LEVELS)
    for level in LEVELS:
        output = result.outputs[level]
        assert output.name == source.name
        table = read_source(_config(output, tmp_path / "unused"))
        assert table.format == source_table.format
        assert len(table.rows) == ROWS
        level_entries = [e for e in manifest["entries"] if e["level"] == level]
        assert [e["position"] for e in level_entries] == list(range(ROWS))
        for position in (0, 1, 2, 7, ROWS - 1):
            entry, row = level_entries[position], table.rows[position]
            assert row["clear_type"] == entry["type"] and row["clear_level"] == level
            assert int(row["clear_seed"]) == entry["seed"]
            assert _sha(result.output_dir / entry["file"]) == entry["sha256"]
            degraded = _decoded(table, position)
            clean = _decoded(source_table, position)
            expected = degradations.apply(clean, entry["type"], entry["intensity"], seed=entry["seed"])
            np.testing.assert_array_equal(degraded, expected)
            if level == "hard" and entry["type"] not in MAY_BE_IDENTITY:
                assert not np.array_equal(degraded, clean)


def test_image_cells_keep_the_source_kind(tmp_path):
    base64_build = build_benchmark(_config(make_source(tmp_path / "b64", "jsonl_base64"), tmp_path / "o1"))
    rows = [json.loads(line) for line in base64_build.outputs["mid"].read_text().splitlines()]
    assert not rows[0]["image"].startswith("data:") and rows[1]["image"].startswith("data:image/png;base64,")
    assert base64.b64decode(rows[0]["image"])[:8] == b"\x89PNG\r\n\x1a\n"

    path_build = build_benchmark(_config(make_source(tmp_path / "paths", "csv"), tmp_path / "o2"))
    with path_build.outputs["low"].open() as handle:
        first = next(csv.DictReader(handle))
    assert first["image"] == "images/r0000000.png"
    assert (path_build.outputs["low"].parent / first["image"]).is_file()

    import pyarrow.parquet as pq

    parquet_build = build_benchmark(_config(make_source(tmp_path / "pq", "parquet"), tmp_path / "o3"))
    table = pq.read_table(parquet_build.outputs["hard"])
    assert str(table.schema.field("image").type) == "binary"
    assert table.column("image")[0].as_py()[:4] == b"\x89PNG"


def test_vlmevalkit_tsv_index_references_are_resolved_and_written_in_full(tmp_path, clean_photos):
    result = build_benchmark(_config(make_source(tmp_path / "src", "tsv"), tmp_path / "out"))
    with result.outputs["hard"].open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [row["index"] for row in rows] == [str(i) for i in range(ROWS)]
    assert all(len(row["image"]) > 64 for row in rows)
    referencing = Image.open(io.BytesIO(base64.b64decode(rows[4]["image"])))
    assert referencing.size == Image.fromarray(clean_photos[1]).size


def test_rebuild_is_bit_identical_whatever_the_worker_count_and_shard_size(tmp_path):
    source = make_source(tmp_path / "src", "jsonl_base64")
    first = build_benchmark(_config(source, tmp_path / "a"))
    again = build_benchmark(_config(source, tmp_path / "b"))
    assert _tree(first.output_dir) == _tree(again.output_dir)
    parallel = build_benchmark(_config(source, tmp_path / "c", workers=2, shard_size=7))
    assert parallel.shards_total == 8
    outputs = _tree(first.output_dir, skip=("shards/", "build.json"))
    assert len(outputs) == 1 + len(LEVELS) * (1 + ROWS)
    assert outputs == _tree(parallel.output_dir, skip=("shards/", "build.json"))


def test_resume_redoes_only_unfinished_shards(tmp_path):
    source = make_source(tmp_path / "src", "jsonl_paths")
    config = _config(source, tmp_path / "out")
    first = build_benchmark(config)
    assert (first.shards_run, first.shards_skipped) == (4, 0)
    before = _tree(first.output_dir, skip=("shards/",))
    images = sorted((first.output_dir).glob("*/images/*.png"))
    for image in images:
        os.utime(image, ns=(1_000_000_000, 1_000_000_000))
    (first.output_dir / "shards" / "shard-00001.json").unlink()  # shard 1: marker lost
    (first.output_dir / "mid" / "images" / "r0000040.png").unlink()  # shard 2: an image lost
    second = build_benchmark(config)
    assert (second.shards_run, second.shards_skipped) == (2, 2)
    rewritten = {int(p.name[1:8]) // 16 for p in images if p.stat().st_mtime_ns != 1_000_000_000}
    assert rewritten == {1, 2}
    assert _tree(second.output_dir, skip=("shards/",)) == before
    third = build_benchmark(config)
    assert (third.shards_run, third.shards_skipped) == (0, 4)


def test_bad_rows_are_reported_and_left_out_never_replaced_by_the_clean_image(tmp_path, capsys):
    source = make_source(tmp_path / "src", "jsonl_paths")
    (source.parent / "images" / "broken.png").write_bytes(b"this is not an image")
    rows = [json.loads(line) for line in source.read_text().splitlines()]
    rows[5]["image"] = "images/broken.png"
    rows[9]["image"] = "images/missing.png"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))

    argv = ["bench", "build", str(source), "-o", str(tmp_path / "out"), "--no-progress", "--shard-size", "16"]
    assert main(argv) == 1  # the same rule as 'clear-plugins degrade': non-zero unless --skip-bad
    err = capsys.readouterr().err
    assert "skipped row 5 (id 'q005')" in err and "skipped row 9 (id 'q009')" in err
    listed = f"2 row(s) could not be read and were left out; listed in {tmp_path / 'out' / 'manifest.json'}"
    assert listed in err and "pass --skip-bad" in err
    assert main([*argv, "--skip-bad"]) == 0  # resumes (every shard done) and accepts the left-out rows
    err = capsys.readouterr().err
    assert listed in err and "pass --skip-bad" not in err and "0 shard(s) built, 4 already done" in err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [(bad["position"], bad["row_id"]) for bad in manifest["bad_rows"]] == [(5, "q005"), (9, "q009")]
    assert "cannot be decoded" in manifest["bad_rows"][0]["reason"]
    assert "cannot read image file" in manifest["bad_rows"][1]["reason"]
    for level in LEVELS:
        out_rows = [
            json.loads(line) for line in (tmp_path / "out" / level / "vqa.jsonl").read_text().splitlines()
        ]
        ids = [row["id"] for row in out_rows]
        assert len(ids) == ROWS - 2 and "q005" not in ids and "q009" not in ids and "q006" in ids
    assert not list((tmp_path / "out").glob("*/images/r0000005*"))


def test_full_mode_writes_every_type_for_every_row(tmp_path):
    source = make_source(tmp_path / "src", "jsonl_base64", rows=5)
    result = build_benchmark(_config(source, tmp_path / "out", mode="full", levels=("mid", "hard")))
    assert set(result.outputs) == {"mid", "hard"}
    for level in ("mid", "hard"):
        rows = [json.loads(line) for line in result.outputs[level].read_text().splitlines()]
        assert len(rows) == 5 * 16
        assert len({row["id"] for row in rows}) == len(rows)
        assert [row["clear_type"] for row in rows[:16]] == list(degradations.names())
        assert {row["clear_source_id"] for row in rows} == {f"q{i:03d}" for i in range(5)}


def test_sampled_mode_uses_one_type_per_row_at_every_level_and_the_weighting(tmp_path):
    source = make_source(tmp_path / "src", "jsonl_paths", rows=40)
    result = build_benchmark(_config(source, tmp_path / "out", weighting="uniform"))
    entries = json.loads(result.manifest_path.read_text())["entries"]
    types_per_row: dict[int, set[str]] = {}
    for entry in entries:
        types_per_row.setdefault(entry["position"], set()).add(entry["type"])
        assert entry["seed"] == derive_seed(0, entry["row_id"], entry["type"], entry["level"])
        assert entry["intensity"] == degradations.LEVELS[entry["level"]]
    assert all(len(types) == 1 for types in types_per_row.values())
    assert len(set().union(*types_per_row.values())) >= 8


def test_reference_jpeg_writes_jpeg_q95(tmp_path):
    source = make_source(tmp_path / "src", "jsonl_paths", rows=3)
    result = build_benchmark(_config(source, tmp_path / "out", reference_jpeg=True))
    files = sorted(result.output_dir.glob("*/images/*"))
    assert len(files) == 9 and all(f.suffix == ".jpg" and f.read_bytes()[:2] == b"\xff\xd8" for f in files)


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(0, "q1", "lens_blur", "low") == derive_seed(0, "q1", "lens_blur", "low")
    seeds = {
        derive_seed(s, r, t, lv) for s in (0, 1) for r in ("q1", "q2") for t in ("a", "b") for lv in LEVELS
    }
    assert len(seeds) == 24 and all(0 <= seed < 2**63 for seed in seeds)


def test_config_validation_names_the_field_and_fix():
    with pytest.raises(ClearConfigError, match="mode='some'"):
        BenchBuildConfig(source="s", output_dir="o", mode="some")
    with pytest.raises(ClearConfigError, match="repeats a level"):
        BenchBuildConfig(source="s", output_dir="o", levels=("low", "low"))
    with pytest.raises(ClearConfigError, match="jpeg_quality=80 only applies with reference_jpeg"):
        BenchBuildConfig(source="s", output_dir="o", jpeg_quality=80)


def test_source_errors_name_the_input_and_the_fix(tmp_path, capsys):
    with pytest.raises(ImageInputError, match="does not exist"):
        read_source(_config(tmp_path / "nope.jsonl", tmp_path / "o"))
    (tmp_path / "data.xlsx").write_text("x")
    assert main(["bench", "build", str(tmp_path / "data.xlsx"), "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "unknown suffix '.xlsx'" in err and "Traceback" not in err
    (tmp_path / "noimg.jsonl").write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    assert main(["bench", "build", str(tmp_path / "noimg.jsonl"), "-o", str(tmp_path / "o")]) == 2
    assert "no image column found among question, answer" in capsys.readouterr().err
    (tmp_path / "cut.json").write_text('[{"image": "a.png", ')
    assert main(["bench", "build", str(tmp_path / "cut.json"), "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert f"cannot read VQA source '{tmp_path / 'cut.json'}' as json" in err and "Traceback" not in err


def test_changed_settings_need_overwrite(tmp_path, capsys):
    source = make_source(tmp_path / "src", "jsonl_paths", rows=4)
    args = ["bench", "build", str(source), "-o", str(tmp_path / "out"), "--no-progress"]
    assert main(args) == 0
    assert main([*args, "--seed", "1"]) == 2
    assert "other settings (changed: seed)" in capsys.readouterr().err
    assert main([*args, "--levels", "low", "--seed", "1", "--overwrite"]) == 0
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["settings"]["seed"] == 1


def test_hf_datasets_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    photos = _photos()
    records = [{"id": f"q{i}", "image": photos[i % 3], **_row(i)} for i in range(6)]
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "image": datasets.Image(),
            **{k: datasets.Value("string") for k in _row(0)},
        }
    )
    datasets.Dataset.from_list(records, features=features).save_to_disk(str(tmp_path / "toy"))
    first = build_benchmark(_config(tmp_path / "toy", tmp_path / "a"))
    second = build_benchmark(_config(tmp_path / "toy", tmp_path / "b"))
    assert _tree(first.output_dir) == _tree(second.output_dir)
    degraded = datasets.load_from_disk(str(first.outputs["hard"]))
    assert degraded.num_rows == 6 and isinstance(degraded.features["image"], datasets.Image)
    entry = json.loads(first.manifest_path.read_text())["entries"][-1]
    expected = degradations.apply(
        np.asarray(photos[5 % 3]), entry["type"], entry["intensity"], seed=entry["seed"]
    )
    np.testing.assert_array_equal(np.asarray(degraded[5]["image"]), expected)

    splits = datasets.DatasetDict({"val": datasets.load_from_disk(str(tmp_path / "toy")), "test": degraded})
    splits.save_to_disk(str(tmp_path / "two_splits"))
    with pytest.raises(ClearConfigError, match=r"several splits \(val, test\) and no split was chosen"):
        build_benchmark(_config(tmp_path / "two_splits", tmp_path / "c"))
    chosen = build_benchmark(_config(tmp_path / "two_splits", tmp_path / "d", split="val", levels=("low",)))
    assert datasets.load_from_disk(str(chosen.outputs["low"])).num_rows == 6


def test_workers_never_import_torch(tmp_path):
    source = make_source(tmp_path / "src", "jsonl_paths", rows=2)
    code = (
        "import sys; from clear_plugins.bench.builder import build_benchmark; "
        "from clear_plugins.bench.config import BenchBuildConfig; "
        f"build_benchmark(BenchBuildConfig(source={str(source)!r}, output_dir={str(tmp_path / 'o')!r}, "
        "progress=False, workers=2, shard_size=1)); print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_config_choices_match_the_degradations_package():
    from clear_plugins.bench.config import LEVEL_NAMES, WEIGHTINGS

    assert tuple(degradations.WEIGHTINGS) == WEIGHTINGS
    assert tuple(degradations.LEVELS) == LEVEL_NAMES


def test_bench_has_only_build_and_points_to_eval(capsys):
    for name in ("evaluate", "report"):
        with pytest.raises(SystemExit) as exit_info:
            main(["bench", name])
        assert exit_info.value.code == 2
        assert "invalid choice" in capsys.readouterr().err
    assert main(["bench"]) == 2
    assert "clear-plugins eval run" in capsys.readouterr().err


def test_exact_runs_the_reference_mean_shift_and_is_recorded(tmp_path, capsys, clean_photos):
    source = make_source(tmp_path / "src", "jsonl_base64", rows=2)
    args = ["bench", "build", str(source), "--mode", "full", "--levels", "hard", "--no-progress"]
    assert main([*args, "-o", str(tmp_path / "fast")]) == 0
    assert main([*args, "-o", str(tmp_path / "exact"), "--exact"]) == 0
    fast, exact = (json.loads((tmp_path / name / "manifest.json").read_text()) for name in ("fast", "exact"))
    assert (fast["settings"]["exact"], exact["settings"]["exact"]) == (False, True)
    assert json.loads((tmp_path / "exact" / "build.json").read_text())["exact"] is True
    for before, after in zip(fast["entries"], exact["entries"], strict=True):
        assert (before["position"], before["type"], before["seed"]) == (
            after["position"],
            after["type"],
            after["seed"],
        )
        # mean_shift differs; watermark_damage inpaints at full resolution below 128 px either way
        assert (before["sha256"] != after["sha256"]) == (before["type"] == "mean_shift"), before["type"]
        if after["type"] == "mean_shift":
            image = np.asarray(Image.open(tmp_path / "exact" / after["file"]))
            clean = clean_photos[after["position"] % 3]
            expected = degradations.apply(
                clean, "mean_shift", after["intensity"], seed=after["seed"], exact=True
            )
            np.testing.assert_array_equal(image, expected)
    capsys.readouterr()
    assert main([*args, "-o", str(tmp_path / "fast"), "--exact"]) == 2
    assert "other settings (changed: exact)" in capsys.readouterr().err


def test_overwrite_deletes_only_what_the_previous_build_wrote(tmp_path, capsys):
    source = make_source(tmp_path / "src", "jsonl_paths", rows=4)
    out = tmp_path / "out"
    args = ["bench", "build", str(source), "-o", str(out), "--no-progress"]
    assert main(args) == 0
    first = json.loads((out / "manifest.json").read_text())
    mine = [out / "low" / "mine.txt", out / "mid" / "images" / "notes.md", out / "shards" / "keep.json"]
    mine.append(out / "README.txt")  # outside the build's folders: kept without a word
    for path in mine:
        path.write_text("the user's own file")
    capsys.readouterr()
    assert main([*args, "--levels", "low", "--seed", "1", "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert all(path.read_text() == "the user's own file" for path in mine)
    assert "--overwrite kept 3 file(s) the previous build did not write" in err
    assert all(str(path) in err for path in mine[:3])
    second = json.loads((out / "manifest.json").read_text())
    assert second["settings"]["seed"] == 1
    old_files = {e["file"] for e in first["entries"]} - {e["file"] for e in second["entries"]}
    assert len(old_files) == 8 and not any((out / name).exists() for name in old_files)
    assert not (out / "hard").exists() and not (out / "mid" / "vqa.jsonl").exists()
    assert all((out / e["file"]).is_file() for e in second["entries"])


def test_malformed_jsonl_keeps_the_full_json_error_detail(tmp_path, capsys):
    (tmp_path / "bad.jsonl").write_text('{"image": "a\tb.png", "question": "q"}\n')
    assert main(["bench", "build", str(tmp_path / "bad.jsonl"), "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "bad.jsonl:1 is not valid JSON (Invalid control character at: line 1 column 13 (char 12))" in err


def test_overwrite_after_an_interrupted_build_uses_the_shard_markers_and_stays_inside(tmp_path):
    from clear_plugins.bench.manifest import discard_previous_build

    source = make_source(tmp_path / "src", "jsonl_paths", rows=4)
    first = build_benchmark(_config(source, tmp_path / "out", shard_size=2))
    images = sorted(first.output_dir.glob("*/images/*.png"))
    first.manifest_path.unlink()  # as if interrupted before the manifest: only the markers list the images
    outside = tmp_path / "precious.txt"
    outside.write_text("not the build's")
    marker = first.output_dir / "shards" / "shard-00000.json"
    record = json.loads(marker.read_text())
    record["entries"].append({"file": "../precious.txt"})  # a tampered marker must not reach outside OUTDIR
    marker.write_text(json.dumps(record))
    kept = discard_previous_build(first.output_dir)
    assert images and not any(image.exists() for image in images)
    assert outside.read_text() == "not the build's"
    assert kept == [first.output_dir / level / "vqa.jsonl" for level in ("low", "mid", "hard")]  # no manifest
