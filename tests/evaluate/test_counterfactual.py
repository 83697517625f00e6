"""Counterfactual CXR-Align on a built phantom benchmark: a model without eyes scores 0, a model that
reads the chosen finding's pixels scores 1 on CF-order; the inserted negations are worded as training
reports word them; the counterfactual images differ from the originals only by the chosen finding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from clinclip.cli.main import app
from clinclip.data import build_manifest
from clinclip.evaluate.counterfactual import counterfactual_decisions, counterfactual_scores
from clinclip.evaluate.cxr_align import (attach_counterfactuals, build_benchmark, inserted_sentence_overlap,
                                         read_benchmark, score_benchmark)
from clinclip.manifest import read_manifest, select_split
from clinclip.phantom import PhantomConfig, generate_phantom, read_counterfactuals
from clinclip.phantom.generate import counterfactual_spec, load_truth, spec_from_truth_row
from clinclip.phantom.render import render_image
from clinclip.manifest import write_manifest
from clinclip.text.prepare import prepare_corpus


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A 300-study phantom through the real adapter and report pipeline, CXR-Align built on test."""
    tmp = tmp_path_factory.mktemp("cf")
    root = tmp / "phantom"
    generate_phantom(root, PhantomConfig(n_studies=300, seed=5), workers=1, progress=False)
    build_manifest("mimic-cxr", root, tmp / "manifest.parquet")
    prepared = prepare_corpus(read_manifest(tmp / "manifest.parquet"), labeler="csv", seed=5)
    write_manifest(prepared, tmp / "prepared.parquet")
    frame = read_manifest(tmp / "prepared.parquet")
    bench, _ = build_benchmark(select_split(frame, "test"), seed=5)
    attached = attach_counterfactuals(bench, read_counterfactuals(root))
    return {"root": root, "tmp": tmp, "frame": frame, "bench": bench, "attached": attached}


class HashedTextStore:
    """A model without eyes: every image gets the same embedding, texts a hashed bag of words."""

    dim = 64

    def image_embeddings(self, paths, manifest=None):
        emb = np.zeros((len(paths), self.dim), dtype=np.float32)
        emb[:, 0] = 1.0
        return emb, np.ones(len(paths), dtype=bool), {}

    def text_embeddings(self, texts, desc=""):
        emb = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                emb[i, hash(word) % self.dim] += 1.0
            emb[i, 0] += 0.5
        return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def test_decisions_by_hand():
    order, pair = counterfactual_decisions(np.array([0.2, 0.2, -0.1, 0.3, 0.1]),
                                           np.array([-0.1, 0.2, -0.3, 0.1, 0.0]))
    assert order.tolist() == [True, False, True, True, True]
    assert pair.tolist() == [True, False, False, False, False]  # Δ(I') = 0 is not a right decision


def test_every_triplet_gets_its_counterfactual(built):
    entries = built["bench"]["mimic"]
    assert built["attached"] == len(entries) > 10
    for image_id, entry in entries.items():
        assert Path(entry["counterfactual_image"]).exists()
        assert entry["chosen"].lower().replace(" ", "-") in entry["counterfactual_image"]


def test_counterfactual_is_the_study_without_the_chosen_finding(built):
    truth = load_truth(built["root"])
    cf_table = read_counterfactuals(built["root"])
    for row in cf_table.head(12).itertuples():
        spec = spec_from_truth_row(truth[truth["dicom_id"] == row.dicom_id].iloc[0])
        assert row.entity in spec.present
        cf_spec = counterfactual_spec(spec, row.entity)
        assert row.entity not in cf_spec.present and set(cf_spec.present) == set(spec.present) - {row.entity}
        written = np.asarray(Image.open(row.image_path), dtype=np.int16)
        original = render_image(spec, 5, written.shape[0]).astype(np.int16)
        redrawn = render_image(cf_spec, 5, written.shape[0]).astype(np.int16)
        # The written file is the counterfactual rendering (JPEG aside), not the original image.
        assert np.abs(written - redrawn).mean() < np.abs(written - original).mean()
        assert np.abs(redrawn - original).max() > 0


def test_text_only_model_scores_zero_on_counterfactuals(built):
    result = score_benchmark(HashedTextStore(), built["bench"], built["frame"])
    metrics = result["metrics"]
    assert metrics["cf_n"] == built["attached"]
    assert metrics["cf_order"] == 0.0 and metrics["cf_pair"] == 0.0
    assert metrics["cf_order_b"] == 0.0 and metrics["cf_pair_b"] == 0.0
    assert "CF-order A" in result["table"]["columns"]


def test_model_reading_the_findings_pixels_scores_one_on_cf_order(built):
    """Δ(x) grows with how far x departs from the finding-free image inside the finding's own region."""
    entries = list(built["bench"]["mimic"].items())
    paths = dict(zip(built["frame"]["image_id"].astype(str), built["frame"]["image_path"]))
    image, image_cf, report, negation = [], [], [], []
    for image_id, entry in entries:
        original = np.asarray(Image.open(paths[image_id]), dtype=np.float64)
        without = np.asarray(Image.open(entry["counterfactual_image"]), dtype=np.float64)
        region = np.abs(original - without) > 12
        assert region.any(), entry["chosen"]
        for x, out in ((original, image), (without, image_cf)):
            evidence = np.abs(x - without)[region].mean() / 255.0
            out.append([evidence, 1.0])
        report.append([1.0, 0.0])
        negation.append([-1.0, 0.0])
    scores = counterfactual_scores(np.array(image), np.array(image_cf), np.array(report), np.array(negation),
                                   np.array(negation), [e["chosen"] for _, e in entries])
    assert scores["cf_order"] == 1.0
    assert all(v["cf_order"] == 1.0 for v in scores["per_entity"].values())


def test_inserted_negations_are_worded_like_training_reports(built):
    frame = built["frame"]
    overlap = inserted_sentence_overlap(built["bench"], select_split(frame, "train"))
    assert overlap["n"] == len(built["bench"]["mimic"])
    assert overlap["share"] >= 0.6
    # ...and the measure can fail: against no training report nothing overlaps.
    assert inserted_sentence_overlap(built["bench"], frame.iloc[:0])["share"] == 0.0


def test_align_build_cli_attaches_counterfactuals_and_prints_overlap(built):
    tmp = built["tmp"]
    out = tmp / "align.json"
    result = CliRunner().invoke(app, ["align", "build", "--data", str(tmp / "prepared.parquet"), "--out", str(out),
                                      "--seed", "5", "--counterfactuals", str(built["root"])])
    assert result.exit_code == 0, result.output
    assert "counterfactual images attached" in result.output and "occurs in a training report" in result.output
    entries = read_benchmark(out)["mimic"]
    assert all("counterfactual_image" in e for e in entries.values())
