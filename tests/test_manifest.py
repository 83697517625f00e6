"""The one manifest reader/writer: relative image paths, ids as text, split selection, skipped rows."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from clinclip.errors import ClinclipError
from clinclip.files import atomic_path
from clinclip.manifest import drop_skipped, read_manifest, select_split, write_manifest


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"image_path": ["img/a.png", "/abs/b.png", ""], "image_id": ["007", "8", "9"],
                         "study_id": ["s1", "s2", "s3"], "split": ["train", "test", "test"],
                         "text": ["no effusion .", "edema .", None], "skip_reason": [None, "", "missing report"],
                         "Edema": [math.nan, 1.0, None]})


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_round_trip_resolves_relative_paths_against_the_manifest_folder(tmp_path, suffix):
    path = write_manifest(_frame(), tmp_path / "sub" / f"m{suffix}")
    back = read_manifest(path)
    assert back["image_path"].tolist() == [str(tmp_path / "sub" / "img/a.png"), "/abs/b.png", ""]
    assert back["image_id"].tolist() == ["007", "8", "9"]  # ids stay text (leading zeros kept)
    assert back["Edema"].isna().tolist() == [True, False, True]
    assert [p.name for p in (tmp_path / "sub").iterdir()] == [path.name]  # no temporary file left behind
    other_root = read_manifest(path, image_root=tmp_path / "images")
    assert other_root["image_path"][0] == str(tmp_path / "images" / "img/a.png")


def test_parquet_is_byte_identical_for_the_same_frame(tmp_path):
    a = write_manifest(_frame(), tmp_path / "a.parquet").read_bytes()
    assert a == write_manifest(_frame(), tmp_path / "b.parquet").read_bytes()


def test_select_split_and_drop_skipped(tmp_path):
    frame = read_manifest(write_manifest(_frame(), tmp_path / "m.parquet"))
    test = select_split(frame, "test", "m.parquet")
    assert test["image_id"].tolist() == ["8", "9"]
    assert len(select_split(frame, "all")) == 3
    with pytest.raises(ClinclipError, match=r"m.parquet: no row with split == 'validate' .*'test', 'train'"):
        select_split(frame, "validate", "m.parquet")
    kept, counts = drop_skipped(test)
    assert kept["image_id"].tolist() == ["8"] and counts == {"prepared row skipped: missing report": 1}


def test_missing_manifest_and_column_name_the_file(tmp_path):
    with pytest.raises(ClinclipError, match="manifest .*nope.csv not found"):
        read_manifest(tmp_path / "nope.csv")
    pd.DataFrame({"x": [1]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ClinclipError, match=r"bad.csv: missing column\(s\) \['image_path'\]"):
        read_manifest(tmp_path / "bad.csv")


def test_atomic_path_leaves_the_target_untouched_on_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
