"""Each evaluation task on a manifest of a few images and an encoder with a fixed embedding table, so the
expected numbers are worked out by hand (in the comments)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from eval_helpers import KeyedEncoder, pil_loader, unit, write_gray_png
from clinclip.errors import ClinclipError
from clinclip.evaluate.adversarial import adversarial
from clinclip.evaluate.classification import zero_shot
from clinclip.evaluate.cxr_align import read_benchmark, score_benchmark, write_benchmark
from clinclip.evaluate.embeddings import EmbeddingStore
from clinclip.evaluate.negation_retrieval import negation_retrieval
from clinclip.evaluate.prompts import load_prompts
from clinclip.evaluate.retrieval import normal_detection, report_retrieval
from clinclip.observations import OBSERVATIONS

# image pixel value -> embedding
A, B, C = unit(1, 0, 0), unit(0, 1, 0), unit(0, 0, 1)
F = unit(0, 0.6, 0.8)
IMAGES = {10: A, 20: B, 30: C, 50: F}


def manifest(tmp_path, rows: list[dict]) -> str:
    records = []
    for i, row in enumerate(rows):
        rec = {c: np.nan for c in OBSERVATIONS}
        rec.update({"image_id": f"img{i}", "study_id": row.get("study", f"s{i}"), "split": "test"})
        value = row.get("pixel")
        rec["image_path"] = (write_gray_png(tmp_path / "img" / f"img{i}.png", value) if value is not None
                             else str(tmp_path / "img" / "missing.png"))
        rec.update({k: v for k, v in row.items() if k not in ("pixel", "study")})
        records.append(rec)
    path = tmp_path / "manifest.csv"
    pd.DataFrame(records).to_csv(path, index=False)
    return str(path)


def store(text_table, tmp_path=None) -> EmbeddingStore:
    return EmbeddingStore(KeyedEncoder(IMAGES, text_table), "test-model",
                          cache_dir=None if tmp_path is None else tmp_path / "cache", image_loader=pil_loader,
                          progress=False)


def frame_of(path):
    from clinclip.manifest import read_manifest

    return read_manifest(path)


def write_yaml(tmp_path, text: str) -> str:
    path = tmp_path / "prompts.yaml"
    path.write_text(text)
    return str(path)


def test_zero_shot_binary_auc_accuracy_and_counts(tmp_path):
    data = manifest(tmp_path, [
        {"pixel": 10, "Pleural Effusion": 1},   # A: p = sigmoid(0.98 - 0) high  -> predicted positive, right
        {"pixel": 20, "Pleural Effusion": 0},   # B: p = sigmoid(0.196 - 1) low  -> negative, right
        {"pixel": 30, "Pleural Effusion": 1},   # C: p = 0.5 exactly -> predicted negative, wrong
        {"pixel": 30},                          # C, blank = not mentioned = negative, right
        {"pixel": 30, "Pleural Effusion": -1},  # uncertain: left out, counted
        {"pixel": None, "Pleural Effusion": 1},  # unreadable image: left out, counted
    ])
    prompts = load_prompts(write_yaml(tmp_path, "name: toy\nkind: binary\nmetric: auc\nclasses:\n"
                                                "  - {name: Effusion, column: Pleural Effusion}\n"))
    texts = {"Effusion": unit(1, 0.2, 0), "No Effusion": B}
    result = zero_shot(store(texts), frame_of(data), prompts, data)
    per = result["per_class"]["Effusion"]
    # positives {A, C}, negatives {B, C}: pairs (A,B)=1 (A,C)=1 (C,B)=1 (C,C)=0.5 -> 3.5/4
    assert per["auc"] == pytest.approx(0.875)
    assert per["accuracy"] == pytest.approx(0.75)
    assert per["n"] == 4
    low, high = per["auc_ci"]  # 4 images: a wide bootstrap interval around the estimate
    assert low <= 0.875 <= high and high - low > 0.2 and result["metrics"]["auc_ci"] == per["auc_ci"]
    assert result["confidence_intervals"]["resamples"] == 1000
    assert result["skipped"]["uncertain label for Effusion (left out of that class)"] == 1
    assert sum(v for k, v in result["skipped"].items() if "unreadable image" in k) == 1


def test_zero_shot_multiclass_argmax_of_mean_similarity(tmp_path):
    data = manifest(tmp_path, [
        {"pixel": 10, "Edema": 1, "Atelectasis": 0},
        {"pixel": 20, "Edema": 0, "Atelectasis": 1},
        {"pixel": 30, "Edema": 1, "Atelectasis": 0},
        {"pixel": 30, "Edema": 1, "Atelectasis": 1},  # two positives: left out, counted
    ])
    prompts = load_prompts(write_yaml(tmp_path, """name: toy5
kind: multiclass
classes:
  - {name: Edema, compose: [["", "mild"], ["edema"]]}
  - {name: Atelectasis, positive: ["atelectasis"]}
"""))
    assert prompts.classes[0].positive == ["edema", "mild edema"]
    # Edema score = mean(sim to "edema", sim to "mild edema"); C=(0,0,1): Edema mean(0, 0.6) = 0.3 > 0
    texts = {"edema": A, "mild edema": unit(0, 0, 1) * 0.6 + unit(1, 0, 0) * 0.8, "atelectasis": B}
    result = zero_shot(store(texts), frame_of(data), prompts, data)
    assert result["per_class"]["Edema"]["accuracy"] == 1.0       # A and C -> Edema
    assert result["per_class"]["Atelectasis"]["accuracy"] == 1.0  # B -> Atelectasis
    assert result["metrics"]["accuracy"] == 1.0
    assert result["skipped"]["not exactly one positive class"] == 1


def test_report_retrieval_ranks_labels_and_dedup(tmp_path):
    r1, r2, r3 = "effusion report", "normal report", "cardiomegaly and effusion"
    data = manifest(tmp_path, [
        {"pixel": 10, "study": "s1", "text": r1, "Pleural Effusion": 1},
        {"pixel": 20, "study": "s2", "text": r2, "No Finding": 1},
        {"pixel": 30, "study": "s3", "text": r3, "Cardiomegaly": 1, "Pleural Effusion": 1},
        {"pixel": 10, "study": "s4", "text": r1, "Pleural Effusion": 1},  # duplicate text of s1
    ])
    texts = {r1: unit(0.6, 0, 0.8), r2: B, r3: unit(0, 0.8, 0.6)}
    result = report_retrieval(store(texts), frame_of(data), data, labeler="manifest")
    m = result["metrics"]
    # pool of 4 study reports: every own report is within the top 5
    assert m["top5"] == 1.0
    # top-1: A->s1 (PE), B->s2 (NF), C->s1 (PE, true CM+PE), D->s1 (PE): tp 4, predicted 4, true 5
    assert m["precision"] == pytest.approx(1.0)
    assert m["recall"] == pytest.approx(0.8)
    assert m["f1"] == pytest.approx(2 * 0.8 / 1.8)
    # de-duplicated texts (3): A, B, D rank 1; C's own r3 (0.6) is beaten by r1 (0.8): rank 2
    assert m["R@1"] == pytest.approx(0.75)
    assert m["mean_rank"] == pytest.approx(1.25)
    assert result["pool"] == {"images": 4, "reports": 4, "unique_reports": 3}


def test_report_retrieval_counts_a_report_with_the_true_text_as_a_hit(tmp_path):
    # studies s1 and s6 share the text "twin" and the image A; four other studies have image B and texts
    # closer to A than "twin" is (0.91-0.99 vs 0.8). For A, the four others come first and the two twins
    # tie: own report rank 6 under pessimistic ties (a miss at 5), but rank 5 when the twin with the same
    # text counts as the own report. For B, "twin" scores 0 and the others 0.41, 0.32, 0.22, 0.11: ranks
    # 1-4. top-5 = 6/6 (it was 4/6 when duplicates counted against the true report).
    others = {f"other {k}": unit(0.9, b, 0) for k, b in enumerate((0.4, 0.3, 0.2, 0.1))}
    rows = [{"pixel": 10, "study": "s1", "text": "twin"}]
    rows += [{"pixel": 20, "study": f"o{k}", "text": t} for k, t in enumerate(others)]
    rows += [{"pixel": 10, "study": "s6", "text": "twin"}]
    data = manifest(tmp_path, rows)
    result = report_retrieval(store({"twin": unit(0.8, 0, 0.6), **others}), frame_of(data), data,
                              labeler="manifest")
    assert result["pool"] == {"images": 6, "reports": 6, "unique_reports": 5}
    assert result["metrics"]["top5"] == pytest.approx(1.0)
    assert result["metrics"]["R@5"] == pytest.approx(1.0)  # de-duplicated: the twins are one candidate


def test_normal_detection_counts_a_smaller_pool(tmp_path):
    data = manifest(tmp_path, [
        {"pixel": 20, "text": "normal one", "No Finding": 1},   # own sim 1.0 > best abnormal 0.8: right
        {"pixel": 50, "text": "normal two", "No Finding": 1},   # own sim 0.6 < r3 0.96: wrong
        {"pixel": 10, "text": "effusion", "Pleural Effusion": 1},
        {"pixel": 30, "text": "cardiomegaly", "Cardiomegaly": 1},
    ])
    texts = {"normal one": B, "normal two": B, "effusion": unit(0.6, 0, 0.8), "cardiomegaly": unit(0, 0.8, 0.6)}
    result = normal_detection(store(texts), frame_of(data), data, n_abnormal=2999)
    assert result["metrics"]["accuracy"] == pytest.approx(0.5)
    assert result["metrics"]["n_abnormal_reports"] == 2
    assert any("fewer than the 2999" in n for n in result["notes"])


def test_cxr_align_decisions_and_format_round_trip(tmp_path):
    data = manifest(tmp_path, [{"pixel": 10}, {"pixel": 20}, {"pixel": 30}])
    bench = {"mimic": {
        # img0 = A: sim(r)=1 > sim(r^n)=0 (A right); sim(r^r)=1 tie -> B wrong
        "img0": {"report": "r0", "negation": "n0", "omitted": "o0", "chosen": "Pleural Effusion"},
        # img1 = B: sim(r)=0.8 < sim(r^n)=1 (A wrong); sim(r^r)=0 (B right)
        "img1": {"report": "r1", "negation": "n1", "omitted": "o1", "chosen": "Edema"},
        # img2 = C: r 0.6 > n 0 (A right), r 0.6 > o 0 (B right)
        "img2": {"report": "r2", "negation": "n2", "omitted": "o2", "chosen": "Edema"},
        "not-in-manifest": {"report": "x", "negation": "y", "omitted": "z", "chosen": "Edema"},
    }}
    path = write_benchmark(bench, tmp_path / "cxr_align.json")
    assert read_benchmark(path) == bench  # published format, unchanged
    assert list(json.loads(path.read_text())) == ["mimic"]
    texts = {"r0": A, "n0": B, "o0": A, "r1": unit(0, 0.8, 0.6), "n1": B, "o1": A,
             "r2": unit(0.8, 0, 0.6), "n2": A, "o2": B}
    result = score_benchmark(store(texts), read_benchmark(path), frame_of(data), data)
    assert result["metrics"]["A"] == pytest.approx(2 / 3)
    assert result["metrics"]["B"] == pytest.approx(2 / 3)
    edema = result["per_source"]["mimic"]["per_entity"]["Edema"]
    assert {k: edema[k] for k in ("A", "B", "n")} == {"A": 0.5, "B": 1.0, "n": 2}
    assert result["skipped"] == {"mimic: image id not in the manifest": 1}


def test_cxr_align_rejects_a_malformed_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"mimic": {"i1": {"report": "r", "negation": "n"}}}))
    with pytest.raises(ClinclipError, match="omitted"):
        read_benchmark(bad)


TWO_CLASSES = """name: toy
kind: binary
classes:
  - {name: X1, column: Edema, positive: ["X1"], negative: ["no X1"]}
  - {name: X2, column: Atelectasis, positive: ["X2"], negative: ["no X2"]}
"""


def test_adversarial_both_queries(tmp_path):
    data = manifest(tmp_path, [
        {"pixel": 10, "Edema": 1, "Atelectasis": 0},  # q1 X1: 1 > 0 right; q2 X2: no X2 .707 > 0 right
        {"pixel": 30, "Edema": 1},                    # q1 X1: tie 0 = 0 wrong; q2: X2 1 > 0 -> picks X2, wrong
        {"pixel": 20, "Atelectasis": 1, "Edema": 0},  # q1 X2: 0 < .707 wrong; q2 X1: no X1 1 > 0 right
        {"pixel": 20, "Atelectasis": 0, "Edema": 0},  # nothing present: no pair, counted
    ])
    texts = {"X1": A, "no X1": B, "X2": C, "no X2": unit(1, 1, 0)}
    result = adversarial(store(texts), frame_of(data), load_prompts(write_yaml(tmp_path, TWO_CLASSES)), data)
    m = result["metrics"]
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["q1"] == pytest.approx(1 / 3)
    assert m["q2"] == pytest.approx(2 / 3)
    assert m["n"] == 3
    assert sum(result["skipped"].values()) == 1


def test_negation_retrieval_precision_and_gap(tmp_path):
    data = manifest(tmp_path, [
        {"pixel": 10, "Edema": 1}, {"pixel": 20, "Edema": 0}, {"pixel": 30, "Edema": 1}, {"pixel": 10},
    ])
    prompts = load_prompts(write_yaml(tmp_path, TWO_CLASSES))
    texts = {"X1": A, "no X1": B, "X2": C, "no X2": B}
    result = negation_retrieval(store(texts), frame_of(data), prompts, data, ks=(2,))
    x1 = result["per_finding"]["X1"]
    # "X1" scores A 1, B 0, C 0, D 1 -> top2 {A, D}: A relevant (Edema 1), D not (blank) -> 0.5
    assert x1["P@2"] == pytest.approx(0.5)
    # "no X1" scores B 1, then ties at 0 in row order -> {B, A}: B relevant (0), A not -> 0.5
    assert x1["P@2 (no)"] == pytest.approx(0.5)
    assert x1["gap@2"] == pytest.approx(0.0)
    assert "X2: no positive image (finding left out)" in result["skipped"]


def test_image_embeddings_are_cached_on_disk(tmp_path):
    data = manifest(tmp_path, [{"pixel": 10}, {"pixel": 20}])
    paths = list(frame_of(data)["image_path"])
    first = store({}, tmp_path)
    emb1, ok1, _ = first.image_embeddings(paths, data)
    assert first.encoder.images_seen == 2
    second = store({}, tmp_path)  # a new process would build a new store: the cache is on disk
    emb2, ok2, _ = second.image_embeddings(paths, data)
    assert second.encoder.images_seen == 0
    np.testing.assert_array_equal(emb1, emb2)
    assert ok2.all()
