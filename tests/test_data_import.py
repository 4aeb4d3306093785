"""``data import`` on a fixture written in the format of the authors' release (CLEAR_Train_Set)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from clear_plugins.cli import main
from clear_plugins.data.release import ORIGIN, import_release
from clear_plugins.data.schema import TrainingRow, read_jsonl, resolve_image_path, row_problem
from clear_plugins.errors import ClearConfigError

RESTORE = "<think>Heavy blur hides the sign.</think>\n<image_restore>\n<think>Now the sign reads STOP.</think><answer>STOP</answer>"
DIRECT = "<think>Slight noise; the cat is clearly visible.</think>\n<answer>cat</answer>"


def _row(i: int, trace: str, *, tool: bool, image: str | None = None, turns=None) -> dict:
    name = f"llava_sub_{i}.jpg" if image is None else image
    conversations = turns or [
        {"from": "human", "value": f"<image>\nQuestion {i}?"},
        {"from": "gpt", "value": trace},
    ]
    return {
        "id": str(i),
        "subset": "llava_sub",
        "image": name,
        "conversations": conversations,
        "split_type": "sft",
        "tool_used": tool,
    }


def write_release(root, size: int = 16):
    """Two release files, images for rows 0-5, and one bad row of each kind (indices documented inline)."""
    sft = root / "processed_dataset" / "sft"
    for folder in ("images", "corruption_images"):
        (sft / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        for folder in ("images", "corruption_images"):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
                sft / folder / f"llava_sub_{i}.jpg"
            )
    (sft / "corruption_images" / "llava_sub_9.jpg").write_bytes(
        (sft / "corruption_images" / "llava_sub_0.jpg").read_bytes()
    )
    tool = [
        _row(0, RESTORE, tool=True),  # 0 ok
        _row(1, RESTORE, tool=True),  # 1 ok
        _row(7, RESTORE, tool=True),  # 2 degraded image missing
        _row(2, "<think>unclosed <image_restore> <answer>x</answer>", tool=True),  # 3 malformed
        _row(9, RESTORE, tool=True),  # 4 clean image (restore target) missing
    ]
    no_tool = [
        _row(3, DIRECT, tool=False),  # 0 ok
        _row(4, RESTORE, tool=False),  # 1 tool_used contradicts the trace
        _row(5, DIRECT, tool=False, turns=[{"from": "human", "value": "<image>\nQ?"}]),  # 2 no gpt turn
        _row(6, DIRECT, tool=False, image=""),  # 3 no image name
    ]
    lines = {
        "agent_interleave_data_filtered_tool.jsonl": [json.dumps(r) for r in tool],
        "agent_interleave_data_filtered_no_tool.jsonl": [json.dumps(r) for r in no_tool] + ["{not json"],  # 4
    }
    for name, content in lines.items():
        (sft / name).write_text("\n".join(content) + "\n", encoding="utf-8")
    return root


def test_import_converts_release_rows_and_reports_the_rest_with_their_index(tmp_path):
    release = write_release(tmp_path / "release")
    out = tmp_path / "imported"
    report = import_release(release, out)
    rows = [TrainingRow.from_mapping(r) for _, r, _ in read_jsonl(out / "train.jsonl")]
    assert [r.id for r in rows] == ["llava_sub_3", "llava_sub_0", "llava_sub_1"]  # files in sorted order
    assert [r.pathway for r in rows] == ["direct", "restore", "restore"]
    assert all(row_problem(r) is None for r in rows)
    assert rows[1].question == "Question 0?" and rows[1].answer == "STOP" and rows[1].trajectory == RESTORE
    assert rows[0].answer == "cat" and rows[1].trace_writer == ORIGIN and rows[1].source == "llava_sub"
    sft = release / "processed_dataset" / "sft"
    assert (
        resolve_image_path(rows[1].degraded_image, out).resolve()
        == (sft / "corruption_images" / "llava_sub_0.jpg").resolve()
    )
    assert (
        resolve_image_path(rows[1].clean_image, out).resolve()
        == (sft / "images" / "llava_sub_0.jpg").resolve()
    )

    saved = json.loads((out / "import_report.json").read_text())
    assert saved["rows_read"] == 10 and saved["converted"] == 3 and saved["unconvertible"] == 7
    assert saved["pathways"] == {"direct": 1, "restore": 2}
    reasons = {(p["file"], p["index"]): p["reason"] for p in saved["unconvertible_rows"]}
    tool, no_tool = (
        "agent_interleave_data_filtered_tool.jsonl",
        "agent_interleave_data_filtered_no_tool.jsonl",
    )
    assert "degraded image" in reasons[(tool, 2)] and "missing" in reasons[(tool, 2)]
    assert "malformed" in reasons[(tool, 3)]
    assert "clean image" in reasons[(tool, 4)]
    assert "tool_used=False" in reasons[(no_tool, 1)]
    assert "one human and one gpt turn" in reasons[(no_tool, 2)]
    assert "no 'image'" in reasons[(no_tool, 3)]
    assert "not JSON" in reasons[(no_tool, 4)]
    assert len(reasons) == 7
    assert report.problem_count == 7


def test_import_copy_images_and_cli(tmp_path, capsys):
    release = write_release(tmp_path / "release")
    out = tmp_path / "copied"
    code = main(["data", "import", str(release), "-o", str(out), "--copy-images", "--limit", "2"])
    assert code == 0
    rows = [TrainingRow.from_mapping(r) for _, r, _ in read_jsonl(out / "train.jsonl")]
    assert len(rows) == 2 and rows[0].degraded_image.startswith("images/degraded/")
    assert (out / rows[1].clean_image).read_bytes() == (
        release / "processed_dataset/sft/images/llava_sub_0.jpg"
    ).read_bytes()
    text = capsys.readouterr().out
    assert "converted 2" in text and "unconvertible" in text


def test_import_refuses_a_missing_release_and_output_equal_to_input(tmp_path):
    with pytest.raises(ClearConfigError, match="does not exist"):
        import_release(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClearConfigError, match="extract"):
        import_release(tmp_path / "empty", tmp_path / "out")
    release = tmp_path / "r"
    release.mkdir()
    (release / "train.jsonl").write_text(json.dumps(_row(0, DIRECT, tool=False)) + "\n")
    with pytest.raises(ClearConfigError, match="one of the release files"):
        import_release(release / "train.jsonl", release)
    assert json.loads((release / "train.jsonl").read_text())["id"] == "0"  # the input is untouched


def test_import_reads_degradation_metadata_when_kept(tmp_path):
    release = write_release(tmp_path / "release")
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "llava_sub_0.jpg.json").write_text(json.dumps({"method": "motion_blur", "intensity": 0.9}))
    (meta / "llava_sub_1.jpg.json").write_text(json.dumps({"method": "graffiti", "intensity": 0.6}))
    import_release(release, tmp_path / "out", metadata_dir=str(meta))
    rows = {r["id"]: r for _, r, _ in read_jsonl(tmp_path / "out" / "train.jsonl")}
    assert (rows["llava_sub_0"]["degradation"], rows["llava_sub_0"]["level"]) == ("motion_blur", "hard")
    assert (rows["llava_sub_1"]["degradation"], rows["llava_sub_1"]["level"]) == ("graffiti", 0.6)
    assert (rows["llava_sub_3"]["degradation"], rows["llava_sub_3"]["level"]) == (None, None)


def _split_archive(release, folder, parts: int = 3):
    """The release as CLEAR_Train_Set.tar.gz cut into ``parts`` byte ranges named like the Hub's parts."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(release / "processed_dataset", arcname="processed_dataset")
    data = buffer.getvalue()
    folder.mkdir()
    step = len(data) // parts + 1
    for number in range(parts):
        suffix = "a" + "abcdefgh"[number]
        (folder / f"CLEAR_Train_Set.tar.gz.part.{suffix}").write_bytes(
            data[number * step : (number + 1) * step]
        )
    return folder


def test_import_streams_the_split_archive_like_the_extracted_folder(tmp_path):
    release = write_release(tmp_path / "release")
    parts = _split_archive(release, tmp_path / "parts")
    from_folder = import_release(release, tmp_path / "a")
    from_parts = import_release(parts / "CLEAR_Train_Set.tar.gz.part.ab", tmp_path / "b")
    assert (
        (from_parts.converted, from_parts.problem_count)
        == (from_folder.converted, from_folder.problem_count)
        == (3, 7)
    )
    rows_a = [r for _, r, _ in read_jsonl(tmp_path / "a" / "train.jsonl")]
    rows_b = [r for _, r, _ in read_jsonl(tmp_path / "b" / "train.jsonl")]
    strip = lambda rows: [{k: v for k, v in r.items() if not k.endswith("_image")} for r in rows]  # noqa: E731
    assert strip(rows_a) == strip(rows_b)
    assert rows_b[0]["degraded_image"].startswith("extracted/processed_dataset/sft/corruption_images/")
    again = import_release(parts, tmp_path / "b")  # a folder of parts; extracted files are kept
    assert again.converted == 3


def test_a_truncated_archive_is_a_clear_error(tmp_path):
    release = write_release(tmp_path / "release")
    parts = _split_archive(release, tmp_path / "parts")
    (parts / "CLEAR_Train_Set.tar.gz.part.ac").unlink()
    with pytest.raises(ClearConfigError, match="every part is present"):
        import_release(parts, tmp_path / "out")


def test_an_archive_member_outside_the_folder_is_refused(tmp_path):
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"hi"))
    (tmp_path / "evil.tar.gz").write_bytes(buffer.getvalue())
    with pytest.raises(ClearConfigError, match="outside the extraction folder"):
        import_release(tmp_path / "evil.tar.gz", tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()
