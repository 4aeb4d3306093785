"""``clear-plugins degrade``: a file, a folder, --all, the Fig. 6 grid, and errors without tracebacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clear_plugins import degradations
from clear_plugins.bench.grid import GAP, MARGIN, column_labels, grid_layout
from clear_plugins.cli import main


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """scikit-image's astronaut, shrunk to 64 x 48 (a real photo, tiny)."""
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((64, 48), Image.LANCZOS)


@pytest.fixture
def photo_file(tmp_path, photo) -> Path:
    path = tmp_path / "astronaut.png"
    photo.save(path)
    return path


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_file_default_output_is_next_to_the_input(photo_file, photo):
    assert main(["degrade", str(photo_file), "--type", "motion_blur", "--level", "hard", "--seed", "3"]) == 0
    out = photo_file.with_name("astronaut_motion_blur_hard.png")
    expected = degradations.apply(np.asarray(photo), "motion_blur", "hard", seed=3)
    np.testing.assert_array_equal(_pixels(out), expected)


def test_exact_flag_selects_the_reference_filter(photo_file, photo, tmp_path):
    fast, exact = tmp_path / "fast.png", tmp_path / "exact.png"
    assert main(["degrade", str(photo_file), str(fast), "-t", "mean_shift", "-l", "hard"]) == 0
    assert main(["degrade", str(photo_file), str(exact), "-t", "mean_shift", "-l", "hard", "--exact"]) == 0
    reference = degradations.apply(np.asarray(photo), "mean_shift", "hard", exact=True)
    np.testing.assert_array_equal(_pixels(exact), reference)
    assert not np.array_equal(_pixels(fast), reference)


def test_file_explicit_output_and_float_level(photo_file, photo, tmp_path):
    out = tmp_path / "sub" / "noisy.png"
    assert main(["degrade", str(photo_file), str(out), "-t", "gaussian_noise", "-l", "0.3"]) == 0
    np.testing.assert_array_equal(
        _pixels(out), degradations.apply(np.asarray(photo), "gaussian_noise", 0.3, seed=0)
    )
    assert main(["degrade", str(photo_file), "-o", str(tmp_path), "-t", "graffiti", "-l", "0.7"]) == 0
    assert (tmp_path / "astronaut_graffiti_0.7.png").is_file()


def test_folder_mirrors_subfolders_and_reports_unreadable_files(tmp_path, photo, capsys):
    folder = tmp_path / "photos"
    (folder / "deep").mkdir(parents=True)
    photo.save(folder / "a.png")
    photo.convert("L").save(folder / "deep" / "b.jpg")
    (folder / "notes.txt").write_text("not an image, not picked up")
    (folder / "broken.png").write_bytes(b"garbage")
    status = main(["degrade", str(folder), "--type", "dark_illumination", "--level", "mid", "--no-progress"])
    err = capsys.readouterr().err
    assert status == 1
    assert "broken.png" in err and "Traceback" not in err
    out = tmp_path / "photos_dark_illumination_mid"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a.png", "deep/b.png"]
    gray = Image.open(out / "deep" / "b.png")
    assert gray.mode == "L" and gray.size == photo.size
    expected = degradations.apply(np.asarray(photo), "dark_illumination", "mid", seed=0)
    np.testing.assert_array_equal(_pixels(out / "a.png"), expected)


def test_all_writes_16_types_by_3_levels(photo_file, tmp_path):
    out = tmp_path / "every"
    assert main(["degrade", str(photo_file), str(out), "--all", "--no-progress"]) == 0
    expected = {f"astronaut_{t}_{lv}.png" for t in degradations.names() for lv in ("low", "mid", "hard")}
    assert {p.name for p in out.iterdir()} == expected and len(expected) == 48


def test_grid_has_a_labelled_cell_per_type_and_level(photo_file, photo, tmp_path):
    out = tmp_path / "grid.png"
    assert (
        main(["degrade", "--grid", str(photo_file), "-o", str(out), "--cell", "32", "--work-size", "64"]) == 0
    )
    grid = np.asarray(Image.open(out).convert("RGB"))
    names = list(degradations.names())
    layout = grid_layout(photo.size, cell=32, work_size=64)
    assert (layout.rows, layout.columns, layout.cell_width, layout.cell_height) == (16, 4, 32, 24)
    assert layout.label_width > 60 and layout.header_height > 8
    assert (grid.shape[1], grid.shape[0]) == layout.size
    assert layout.size[0] == layout.label_width + 4 * 32 + 2 * MARGIN + 4 * GAP
    assert layout.size[1] == layout.header_height + 16 * 24 + 2 * MARGIN + 16 * GAP
    labels_width = layout.label_width
    clean = np.asarray(photo.resize((32, 24), Image.LANCZOS))
    for row, name in enumerate(names):
        left, top, right, bottom = layout.cell_box(row, 0)
        np.testing.assert_array_equal(grid[top:bottom, left:right], clean)
        for column, level in enumerate(("low", "mid", "hard"), start=1):
            left, top, right, bottom = layout.cell_box(row, column)
            degraded = degradations.apply(photo, name, level, seed=0).resize((32, 24), Image.LANCZOS)
            np.testing.assert_array_equal(grid[top:bottom, left:right], np.asarray(degraded))
        label = grid[top:bottom, 12 : 12 + labels_width]
        assert (label < 128).any(), f"no label text drawn for {name}"
    header = grid[12 : 12 + layout.header_height, layout.cell_box(0, 0)[0] :]
    assert (header < 128).any()
    assert column_labels(("low", "mid", "hard")) == ["clean", "low (0.23)", "mid (0.45)", "hard (0.90)"]


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (
            ["--type", "motion_blurr"],
            2,
            "unknown degradation type 'motion_blurr'. Did you mean 'motion_blur'?",
        ),
        ([], 2, "pass --type TYPE"),
        (["--type", "graffiti", "--all"], 2, "either --type or --all"),
        (["--type", "graffiti", "--level", "extreme"], 2, "--level 'extreme' is neither a level name"),
        (["--type", "graffiti", "--level", "1.5"], 2, "intensity in [0, 1]"),
        (["out.xyz", "--type", "graffiti"], 2, "has no image suffix Pillow can write"),
    ],
)
def test_usage_errors_exit_non_zero_with_a_message(photo_file, capsys, argv, status, message):
    assert main(["degrade", str(photo_file), *argv]) == status
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unreadable_or_missing_input_names_the_file(tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    assert main(["degrade", str(broken), "--type", "graffiti"]) == 1
    err = capsys.readouterr().err
    assert f"cannot read image '{broken}'" in err and "Pillow can open" in err
    assert main(["degrade", str(tmp_path / "nothing.png"), "--type", "graffiti"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["degrade", "--grid", str(tmp_path / "nothing.png")]) == 1
    assert "not a file" in capsys.readouterr().err
    deep = tmp_path / "sixteen_bit.png"
    Image.fromarray(np.zeros((8, 8), dtype=np.uint16)).save(deep)
    assert main(["degrade", str(deep), "--type", "graffiti"]) == 1
    err = capsys.readouterr().err
    assert f"cannot degrade '{deep}'" in err and "I;16" in err and "Traceback" not in err


def test_help_lists_every_type_by_category():
    import argparse

    from clear_plugins.commands import degrade

    parser = argparse.ArgumentParser()
    degrade.configure(parser)
    for category, names in degradations.categories().items():
        assert f"{' '.join(names)} ({category})" in parser.epilog


def test_output_that_is_an_input_is_refused_in_every_mode(tmp_path, photo, capsys):
    keep = tmp_path / "keep.png"
    photo.save(keep)
    before = keep.read_bytes()
    folder = tmp_path / "photos"
    folder.mkdir()
    photo.save(folder / "a.png")
    (folder / "a_graffiti_low.png").write_bytes(before)  # an input that --all would write over
    runs = [
        ["degrade", str(keep), str(keep), "-t", "gaussian_noise", "-l", "mid"],
        ["degrade", str(keep), "-o", str(tmp_path / "." / "keep.png"), "-t", "gaussian_noise"],
        ["degrade", str(folder), str(folder), "-t", "gaussian_noise", "--no-progress"],
        ["degrade", str(folder), str(folder), "--all", "--no-progress"],
        ["degrade", "--grid", str(keep), "-o", str(keep)],
    ]
    snapshot = {p: p.read_bytes() for p in folder.iterdir()}
    for argv in runs:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "would overwrite it" in err and "Traceback" not in err, argv
    assert keep.read_bytes() == before
    assert {p: p.read_bytes() for p in folder.iterdir()} == snapshot


def test_images_sharing_a_stem_get_distinct_deterministic_outputs(tmp_path, photo, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    photo.save(folder / "a.png")
    photo.transpose(Image.FLIP_LEFT_RIGHT).save(folder / "a.jpg", quality=95)
    photo.save(folder / "b.png")
    assert main(["degrade", str(folder), "-t", "graffiti", "-l", "low", "--no-progress"]) == 0
    assert "wrote 3 image(s)" in capsys.readouterr().err
    out = tmp_path / "photos_graffiti_low"
    assert sorted(p.name for p in out.iterdir()) == ["a_jpg.png", "a_png.png", "b.png"]
    for name, file in (("a_png.png", "a.png"), ("a_jpg.png", "a.jpg")):
        expected = degradations.apply(Image.open(folder / file), "graffiti", "low", seed=0)
        np.testing.assert_array_equal(_pixels(out / name), np.asarray(expected))
    every = tmp_path / "every"
    assert main(["degrade", str(folder), str(every), "--all", "--no-progress"]) == 0
    assert len(list(every.iterdir())) == 3 * 48


def test_unreadable_files_fail_unless_skip_bad_and_are_listed(tmp_path, photo, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    photo.save(folder / "a.png")
    (folder / "broken.png").write_bytes(b"garbage")
    out = tmp_path / "out"
    argv = ["degrade", str(folder), str(out), "-t", "graffiti", "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    listing = out / "skipped.txt"
    assert f"1 file(s) could not be read and were left out; listed in {listing}" in err
    assert "pass --skip-bad" in err
    assert listing.read_text().startswith(f"{folder / 'broken.png'}\t")
    assert (out / "a.png").is_file()
    assert main([*argv, "--skip-bad"]) == 0
    err = capsys.readouterr().err
    assert "1 file(s) could not be read" in err and "pass --skip-bad" not in err
