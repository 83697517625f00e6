"""Phantom generator: exact MIMIC-CXR-JPG layout, determinism, label-image consistency measured from the
written JPEGs, negations never reaching the image, report realism, throughput."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from clinclip.errors import ClinclipError
from clinclip.observations import OBSERVATIONS
from clinclip.phantom import PhantomConfig, generate_phantom
from clinclip.phantom.generate import (
    CHEXPERT_COLUMNS,
    CHEXPERT_CSV,
    METADATA_COLUMNS,
    METADATA_CSV,
    SPLIT_CSV,
    load_truth,
    spec_from_truth_row,
)
from clinclip.phantom.render import render_image

from phantom_helpers import (
    basal_lateral_density,
    heart_width,
    mediastinum_width,
    metal_pixels,
    read_collection,
)

N_MEASURED = 500


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("phantom") / "mimic"
    generate_phantom(root, PhantomConfig(n_studies=N_MEASURED, seed=3), workers=2, progress=False)
    return root


@pytest.fixture(scope="module")
def measured(collection):
    return read_collection(collection)


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_files_whatever_the_worker_count(tmp_path):
    generate_phantom(tmp_path / "a", PhantomConfig(n_studies=70, seed=5), workers=2, progress=False)
    generate_phantom(tmp_path / "b", PhantomConfig(n_studies=70, seed=5), workers=1, progress=False)
    generate_phantom(tmp_path / "c", PhantomConfig(n_studies=70, seed=6), workers=1, progress=False)
    a, b, c = (_tree_digest(tmp_path / x) for x in "abc")
    assert a == b
    counterfactuals = [k for k in a if k.startswith("counterfactual/")]
    assert len(counterfactuals) == len(pd.read_csv(tmp_path / "a" / "phantom-counterfactuals.csv.gz")) > 0
    assert len(a) == 5 + 70 * 2 + len(counterfactuals)  # 5 CSVs, one image and one report per study
    assert a != c


def test_layout_and_columns_are_mimic_cxr_jpg(collection):
    split = pd.read_csv(collection / SPLIT_CSV, dtype={"dicom_id": str})
    meta = pd.read_csv(collection / METADATA_CSV, dtype={"dicom_id": str})
    chex = pd.read_csv(collection / CHEXPERT_CSV)
    assert list(split.columns) == ["dicom_id", "study_id", "subject_id", "split"]
    assert list(meta.columns) == list(METADATA_COLUMNS)
    assert list(chex.columns) == list(CHEXPERT_COLUMNS)
    assert list(chex.columns[2:]) == sorted(chex.columns[2:])  # alphabetical, as MIMIC's file
    assert set(split["split"]) == {"train", "validate", "test"}
    assert split.groupby("subject_id")["split"].nunique().max() == 1  # patient-level split
    assert len(split) == len(meta) == len(chex) == N_MEASURED
    assert set(meta["ViewPosition"]) <= {"PA", "AP"}
    assert (meta["Rows"] == 128).all() and (meta["Columns"] == 128).all()
    values = chex[list(OBSERVATIONS)].to_numpy()
    assert set(np.unique(values[~np.isnan(values)])) <= {-1.0, 0.0, 1.0}
    assert set(chex["No Finding"].dropna()) == {1.0}
    for row in split.itertuples():
        subject = f"{row.subject_id:08d}"
        assert re.fullmatch(r"1\d{7}", subject) and re.fullmatch(r"5\d{7}", str(row.study_id))
        assert re.fullmatch(r"([0-9a-f]{8}-){4}[0-9a-f]{8}", row.dicom_id)
        study = collection / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{row.study_id}"
        assert (study / f"{row.dicom_id}.jpg").is_file()
        assert study.with_suffix(".txt").is_file()
    with Image.open(study / f"{row.dicom_id}.jpg") as img:
        assert img.mode == "L" and img.size == (128, 128)


def test_chexpert_labels_follow_the_truth(measured):
    truth, chex, _ = measured
    for name in OBSERVATIONS[:-1]:
        stated = chex[name].isin([1.0, -1.0]).to_numpy()
        assert (stated == (truth[name] == 1).to_numpy()).all(), name  # every present finding is reported
        assert not ((chex[name] == 0.0) & (truth[name] == 1)).any(), name  # nothing present is negated
    assert ((chex["No Finding"] == 1.0).to_numpy() == (truth["No Finding"] == 1).to_numpy()).all()
    prevalence = truth[list(OBSERVATIONS[:-1])].mean()
    assert 0.35 < truth["No Finding"].mean() < 0.55  # normal-heavy prior
    assert (prevalence > 0.02).all()  # every finding occurs
    assert (chex[list(OBSERVATIONS)] == -1.0).any().any()  # uncertain mentions exist


def test_findings_co_occur_realistically(measured):
    truth = measured[0]

    def lift(a: str, b: str) -> float:
        both = ((truth[a] == 1) & (truth[b] == 1)).mean()
        return both / (truth[a].mean() * truth[b].mean())

    assert lift("Pleural Effusion", "Atelectasis") > 1.3
    assert lift("Consolidation", "Pneumonia") > 2.0
    assert lift("Edema", "Cardiomegaly") > 2.0
    assert truth["Support Devices"].mean() > 0.12


@pytest.mark.parametrize(
    ("finding", "measure", "min_auc"),
    [
        ("Cardiomegaly", heart_width, 0.8),
        ("Enlarged Cardiomediastinum", mediastinum_width, 0.85),
        ("Pleural Effusion", basal_lateral_density, 0.85),
        ("Support Devices", metal_pixels, 0.85),
    ],
)
def test_image_features_follow_the_labels(measured, finding, measure, min_auc):
    truth, _, images = measured
    auc = roc_auc_score(truth[finding], measure(images))
    assert auc >= min_auc, f"{finding}: AUC of {measure.__name__} = {auc:.3f}"


def test_negated_findings_leave_no_trace(measured):
    """Studies whose report negates cardiomegaly look like those that do not mention it."""
    truth, chex, images = measured
    width = heart_width(images)
    absent = (truth["Cardiomegaly"] == 0) & (truth["Edema"] == 0)
    negated = width[(absent & (chex["Cardiomegaly"] == 0.0)).to_numpy()]
    unmentioned = width[(absent & chex["Cardiomegaly"].isna()).to_numpy()]
    present = width[(truth["Cardiomegaly"] == 1).to_numpy()]
    assert len(negated) > 20 and len(unmentioned) > 20
    spread = width[absent.to_numpy()].std()
    assert abs(negated.mean() - unmentioned.mean()) < 0.35 * spread
    assert present.mean() - unmentioned.mean() > 1.0 * spread


def test_image_is_a_function_of_true_labels_and_seed(collection, measured):
    """Re-rendering from the truth table alone (no report) reproduces the written image."""
    truth, _, images = measured
    for i in range(0, N_MEASURED, 50):
        spec = spec_from_truth_row(truth.iloc[i])
        buffer = io.BytesIO()
        defaults = PhantomConfig()
        Image.fromarray(render_image(spec, 3, defaults.image_size)).save(buffer, format="JPEG",
                                                                         quality=defaults.jpeg_quality)
        again = np.asarray(Image.open(buffer), dtype=np.float32)
        assert np.array_equal(again, images[i])


def test_a_finding_changes_only_its_own_region():
    specs_cfg = PhantomConfig(n_studies=10, seed=1)
    from clinclip.phantom.studies import sample_collection

    base = dataclasses.replace(sample_collection(specs_cfg)[0][0], present=(), uncertain=(), attrs={})
    clean = render_image(base, 1, 160).astype(int)
    cases = {
        "Pleural Effusion": ({"severity": 2, "side": "left"}, lambda yy, xx: (yy > -0.3) & (xx > 0)),
        "Pneumothorax": ({"severity": 2, "side": "right"}, lambda yy, xx: (yy < 0.2) & (xx < 0)),
        "Lung Lesion": ({"severity": 2, "side": "left", "count": 1, "kind": "nodule"}, lambda yy, xx: xx > -0.05),
        "Fracture": ({"severity": 1, "side": "right", "rib": 6}, lambda yy, xx: xx < 0.05),
    }
    axis = np.linspace(-1, 1, 160)
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    for name, (attrs, region) in cases.items():
        with_finding = dataclasses.replace(base, present=(name,), attrs={name: attrs})
        diff = np.abs(render_image(with_finding, 1, 160).astype(int) - clean)
        assert (diff > 8).sum() > 30, name  # visible
        # Soft edges have long (invisible) tails: outside its region a finding moves no pixel by > 1 level.
        assert not ((diff > 1) & ~region(yy, xx)).any(), f"{name} changed pixels outside its region"


def test_reports_are_mimic_style_with_negation_uncertainty_and_time(collection, measured):
    truth, chex, _ = measured
    texts = [p.read_text() for p in sorted((collection / "files").rglob("*.txt"))]
    assert all("FINAL REPORT" in t and "EXAMINATION:" in t and "IMPRESSION:" in t for t in texts)
    assert not any(re.search(r"-\n", t) for t in texts)  # wrapping never splits "right-sided"
    assert sum("FINDINGS:" in t for t in texts) > 0.5 * len(texts)
    joined = "\n".join(" ".join(t.split()) for t in texts)
    assert "No pleural effusion or pneumothorax." in joined  # coordinated negation
    assert re.search(r"(Possible|Cannot exclude|cannot be excluded|Questionable)", joined)
    assert re.search(r"(Unchanged|Interval|compared to the prior|again seen|Stable)", joined, re.I)
    # Template duplicates dominate among normals, as in the paper's Table 1.
    bodies = pd.Series([" ".join(t[t.find("IMPRESSION:"):].split()) for t in texts])
    top = bodies.value_counts()
    assert top.iloc[0] > 0.1 * len(texts)


def test_invalid_requests_fail_clearly(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(ClinclipError, match="not empty"):
        generate_phantom(tmp_path / "full", PhantomConfig(n_studies=5), progress=False)
    with pytest.raises(ClinclipError, match="n_studies"):
        generate_phantom(tmp_path / "zero", PhantomConfig(n_studies=0), progress=False)
    with pytest.raises(ClinclipError, match=r"phantom-truth"):
        load_truth(tmp_path / "full")


def test_cli_writes_a_collection_and_reports_bad_input(tmp_path):
    from clinclip.cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["phantom", "--out", str(tmp_path / "p"), "--n", "12", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "12 studies" in result.output
    assert len(list((tmp_path / "p" / "files").rglob("*.jpg"))) == 12
    again = runner.invoke(app, ["phantom", "--out", str(tmp_path / "p"), "--n", "12"])
    assert again.exit_code == 2 and "not empty" in again.output
