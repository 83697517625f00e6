"""Bad input (structural -> one clear error naming the file; single rows -> counted, reported skips),
patient-level splits, the CLI summary, and prepare-images (resumable, atomic, failures by file)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from clinclip.cli.main import app
from clinclip.data import build_manifest, load_image
from clinclip.data.images import resize_shorter_side
from clinclip.data.manifest import patient_split
from clinclip.data.prepare_images import prepare_images, target_path
from clinclip.errors import ClinclipError
from data_helpers import gradient, make_mimic, make_rsna, write_csv, write_dicom

runner = CliRunner()


def test_missing_csv_is_an_error_naming_the_file(tmp_path):
    make_mimic(tmp_path)
    (tmp_path / "mimic-cxr-2.0.0-metadata.csv.gz").unlink()
    with pytest.raises(ClinclipError, match=r"metadata CSV not found: looked for .*mimic-cxr-2.0.0-metadata.csv.gz"):
        build_manifest("mimic-cxr", tmp_path, tmp_path / "m.parquet")
    assert not (tmp_path / "m.parquet").exists()


def test_renamed_column_names_file_missing_column_and_columns_found(tmp_path):
    make_rsna(tmp_path)
    labels = pd.read_csv(tmp_path / "stage_2_train_labels.csv").rename(columns={"Target": "target"})
    write_csv(labels, tmp_path / "stage_2_train_labels.csv")
    with pytest.raises(ClinclipError) as info:
        build_manifest("rsna-pneumonia", tmp_path, tmp_path / "r.parquet")
    message = str(info.value)
    assert "stage_2_train_labels.csv" in message and "['Target']" in message and "'target'" in message


def test_unknown_dataset_and_bad_options(tmp_path):
    with pytest.raises(ClinclipError, match="unknown dataset 'mimic'; known"):
        build_manifest("mimic", tmp_path, tmp_path / "m.parquet")
    with pytest.raises(ClinclipError, match="not a folder"):
        build_manifest("mimic-cxr", tmp_path / "nope", tmp_path / "m.parquet")
    with pytest.raises(ClinclipError, match="unknown adapter option"):
        build_manifest("mimic-cxr", tmp_path, tmp_path / "m.parquet", view="all")


def test_patient_split_is_seeded_stable_and_patient_level():
    patients = [f"p{i}" for i in range(2000)]
    a = patient_split(patients, (0.7, 0.1, 0.2), seed=1)
    assert a == patient_split(list(reversed(patients)), (0.7, 0.1, 0.2), seed=1)  # order-free
    assert a != patient_split(patients, (0.7, 0.1, 0.2), seed=2)
    shares = pd.Series(a).value_counts(normalize=True)
    assert abs(shares["train"] - 0.7) < 0.04 and abs(shares["validate"] - 0.1) < 0.03 and abs(shares["test"] - 0.2) < 0.03
    grown = patient_split(patients + ["new1", "new2"], (0.7, 0.1, 0.2), seed=1)
    assert all(grown[p] == a[p] for p in patients)  # adding patients never moves the others
    with pytest.raises(ClinclipError, match="summing to 1"):
        patient_split(patients, (0.5, 0.1, 0.1))


def test_rsna_split_keeps_patients_together_with_fractions(tmp_path):
    make_rsna(tmp_path)
    summary = build_manifest("rsna-pneumonia", tmp_path, tmp_path / "r.parquet", split_fractions=(0.0, 0.0, 1.0))
    assert summary.splits == {"test": 3}


def test_cli_prepare_prints_summary_and_writes_side_file(tmp_path):
    make_mimic(tmp_path / "mimic")
    out = tmp_path / "m.parquet"
    result = runner.invoke(app, ["prepare", "mimic-cxr", "--root", str(tmp_path / "mimic"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    for text in ("read", "kept", "image file not found", "no report for the study", "not a frontal view",
                 "m.skipped.csv"):
        assert text in result.output
    assert len(pd.read_parquet(out)) == 3 and len(pd.read_csv(tmp_path / "m.skipped.csv")) == 4


def test_cli_prepare_bad_input_is_one_line_exit_2(tmp_path):
    result = runner.invoke(app, ["prepare", "vindr-cxr", "--root", str(tmp_path), "--out", str(tmp_path / "v.parquet")])
    assert result.exit_code == 2
    assert "error: vindr-cxr: no label file found" in result.output
    bad = runner.invoke(app, ["prepare", "csv", "--root", str(tmp_path), "--out", str(tmp_path / "c.parquet"),
                              "--split-fractions", "70/30"])
    assert bad.exit_code == 2 and "--split-fractions" in bad.output


def _dicom_manifest(tmp_path, n=4):
    rows = []
    for i in range(n):
        path = write_dicom(tmp_path / "dcm" / f"img{i}.dcm", gradient(300, 200 + i, high=4095, dtype=np.uint16),
                           bits_stored=12, photometric="MONOCHROME1" if i % 2 else "MONOCHROME2",
                           window=(2048, 4096) if i == 2 else None)
        rows.append({"image_path": str(path), "image_id": f"img{i}", "study_id": f"s{i}", "patient_id": f"p{i}",
                     "split": "train", "view": "PA", "report": "Normal.", "Cardiomegaly": float(i % 2)})
    broken = tmp_path / "dcm" / "broken.dcm"
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x04\x00abcd" + b"\xff" * 30)
    rows.append({"image_path": str(broken), "image_id": "broken", "study_id": "s9", "patient_id": "p9",
                 "split": "test", "view": "PA", "report": "x", "Cardiomegaly": 0.0})
    rows.append({"image_path": str(tmp_path / "dcm" / "absent.dcm"), "image_id": "absent", "study_id": "s8",
                 "patient_id": "p8", "split": "test", "view": "PA", "report": "x", "Cardiomegaly": 0.0})
    manifest = tmp_path / "m.parquet"
    pd.DataFrame(rows).to_parquet(manifest)
    return manifest


def test_prepare_images_resized_resumable_failures_by_file(tmp_path):
    manifest = _dicom_manifest(tmp_path)
    out = tmp_path / "png"
    summary = prepare_images(manifest, out, size=64, workers=1, progress=False)
    assert (summary.images, summary.written, summary.already_done) == (6, 4, 0)
    assert set(summary.failed) == {str(tmp_path / "dcm" / "broken.dcm"), str(tmp_path / "dcm" / "absent.dcm")}
    assert "file not found" in summary.failed[str(tmp_path / "dcm" / "absent.dcm")]
    prepared = pd.read_parquet(summary.manifest)
    assert list(prepared["image_id"]) == ["img0", "img1", "img2", "img3"]
    assert list(prepared["Cardiomegaly"]) == [0.0, 1.0, 0.0, 1.0]  # every other column carried over
    for row in prepared.to_dict("records"):
        png = load_image(row["image_path"])
        assert min(png.shape) == 64 and row["image_path"].startswith(str(out))
        expected = resize_shorter_side(load_image(row["source_image_path"]), 64)
        assert np.abs(png.astype(int) - expected.astype(int)).max() == 0
    skipped = pd.read_csv(summary.skipped_file)
    assert sorted(skipped["key"]) == ["absent", "broken"]
    assert skipped["reason"].str.startswith("image could not be read").all()

    # Resume: nothing to redo; a deleted output (an interrupted run) is the only one rewritten; a stray
    # temp file from a killed writer does not count as done.
    again = prepare_images(manifest, out, size=64, workers=1, progress=False, overwrite=True)
    assert (again.written, again.already_done) == (0, 4)
    victim = target_path(out.resolve(), str(tmp_path / "dcm" / "img1.dcm"), "img1")
    victim.unlink()
    (victim.parent / f".{victim.stem}.abc.tmp.png").write_bytes(b"partial")
    third = prepare_images(manifest, out, size=64, workers=2, progress=False, overwrite=True)
    assert (third.written, third.already_done) == (1, 3) and victim.is_file()


def test_cli_prepare_images(tmp_path):
    manifest = _dicom_manifest(tmp_path, n=2)
    result = runner.invoke(app, ["prepare-images", "--manifest", str(manifest), "--out", str(tmp_path / "o"),
                                 "--size", "32", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "4 images: 2 written, 0 already done, 2 failed" in result.output
    assert "failed: " + str(tmp_path / "dcm" / "broken.dcm") in result.output
    assert len(pd.read_parquet(tmp_path / "o" / "manifest.parquet")) == 2
