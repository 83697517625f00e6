"""CXR-Align shortcut controls on hand-made embeddings and texts whose answers are worked out by hand:
image-blind score, swap control (partner choice and delta) and the two text-only baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clinclip.errors import ClinclipError
from clinclip.evaluate.cxr_align import AlignTriplets, text_classifier_from_manifest
from clinclip.evaluate.shortcuts import (NO_PARTNER, SwapPool, bag_of_words_prefers, control_decisions,
                                         draw_swap_partners, fit_bag_of_words, longer_text_wins,
                                         shortcut_controls)
from clinclip.observations import OBSERVATIONS

NAN = np.nan


def unit_rows(rows) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def triplets_of(chosen, views=None, studies=None, reports=None, negations=None, omitted=None) -> AlignTriplets:
    n = len(chosen)
    col = lambda values, default: np.asarray(values if values is not None else [default] * n, dtype=object)
    return AlignTriplets(source=col(None, "mimic"), image_id=col([f"i{k}" for k in range(n)], ""),
                         image_path=col(None, ""), study_id=col(studies, "s"), view=col(views, "PA"),
                         report=col(reports, "r"), negation=col(negations, "n"), omitted=col(omitted, "o"),
                         chosen=col(chosen, "Edema"), counterfactual_image=col(None, ""))


def labels_of(*rows: dict) -> np.ndarray:
    out = np.full((len(rows), len(OBSERVATIONS)), NAN)
    for i, row in enumerate(rows):
        for name, value in row.items():
            out[i, OBSERVATIONS.index(name)] = value
    return out


def test_image_blind_score_of_a_text_only_scorer_equals_its_score():
    # dim 0 carries the text's score s; images have a positive dim 0 and random other dims, texts are zero
    # on the image-only dims 1-2 (dim 3 only keeps them unit length): sim(I, t) = I_0 * s_t, whatever I is.
    rng = np.random.default_rng(0)
    n = 40
    images = unit_rows(np.c_[rng.uniform(0.2, 1, n), rng.normal(size=(n, 2)), np.zeros(n)])
    scores = rng.uniform(-1, 1, size=(3, n))
    r, rn, rr = (unit_rows(np.c_[s, np.zeros((n, 2)), np.sqrt(1 - s ** 2)]) for s in scores)
    controls = shortcut_controls(images, r, rn, rr, triplets_of(["Edema"] * n), None, rng)
    assert 0 < controls["cxr_align_a"] < 1 and 0 < controls["cxr_align_b"] < 1  # not a trivial case
    assert controls["cxr_align_a_blind"] == controls["cxr_align_a"]
    assert controls["cxr_align_b_blind"] == controls["cxr_align_b"]
    assert controls["swap_delta_a"] is None and controls["text_bag_of_words_a"] is None  # not computed


def test_image_blind_score_falls_for_a_model_that_reads_the_image():
    # images 0-1 show the finding (e1), 2-3 another one (e2); each report names what its image shows and
    # its r^n names the other: A = 1 with the images, but the mean image is equally close to r and r^n,
    # a tie, which is wrong: blind A = 0.
    images = unit_rows([[1, 0], [1, 0], [0, 1], [0, 1]])
    r = images.copy()
    rn = images[::-1].copy()
    controls = shortcut_controls(images, r, rn, rn, triplets_of(["Edema"] * 4), None, np.random.default_rng(0))
    assert controls["cxr_align_a"] == 1.0 and controls["cxr_align_a_blind"] == 0.0


POOL = SwapPool(
    embeddings=unit_rows([[1, 0], [0, 1], [0, 1], [1, 1], [1, 0]]),
    labels=labels_of({"Edema": 1}, {"Edema": 0}, {}, {"Edema": -1, "Cardiomegaly": 0}, {"Edema": 1}),
    views=["PA", "PA", "LATERAL", "PA", "AP"], studies=["s0", "s1", "s2", "s3", "s4"])


def test_swap_partner_is_a_negative_study_of_the_same_view_else_any_view():
    triplets = triplets_of(["Edema", "Edema", "Cardiomegaly", "", "Fracture"],
                           views=["PA", "AP", "PA", "PA", "PA"], studies=["s0", "s4", "s1", "s2", "s9"])
    seen = {k: set() for k in range(5)}
    for seed in range(60):
        draw = draw_swap_partners(triplets.chosen, triplets.view, triplets.study_id, POOL,
                                  np.random.default_rng(seed))
        for k, p in enumerate(draw.partner):
            seen[k].add(int(p))
        # Edema negative (0 or blank, not -1) of view PA: s1 only; of view AP: none, any view: s1, s2
        assert draw.partner[0] == 1 and not draw.view_fallback[0]
        assert draw.view_fallback[1] and draw.partner[1] in (1, 2)
        assert not draw.view_fallback[2]
        assert draw.partner[3] == NO_PARTNER  # no chosen entity named
    # Cardiomegaly is negative (blank or 0) in s0, s1, s3 of view PA, but s1 is the triplet's own study
    assert seen[2] == {0, 3}
    assert seen[1] == {1, 2}
    assert seen[4] == {0, 1, 3}  # Fracture blank everywhere in view PA, own study s9 not in the pool
    again = [draw_swap_partners(triplets.chosen, triplets.view, triplets.study_id, POOL,
                                np.random.default_rng(7)).partner for _ in range(2)]
    assert again[0].tolist() == again[1].tolist()  # seeded: deterministic


def test_swap_delta_is_zero_for_a_text_shortcut_and_large_for_an_image_reader():
    # Three Edema triplets of view PA; the pool's only PA study with Edema negative is s1 (embedding e2).
    triplets = triplets_of(["Edema"] * 3, views=["PA"] * 3, studies=["s0", "s0", "s4"])
    images = unit_rows([[1, 0]] * 3)  # the finding shown: e1
    r, rn, rr = unit_rows([[1, 0]] * 3), unit_rows([[0, 1]] * 3), unit_rows([[0.6, 0.8]] * 3)
    controls = shortcut_controls(images, r, rn, rr, triplets, POOL, np.random.default_rng(0))
    # originals: A = 1 (1 > 0), B = 1 (1 > 0.6); swapped onto e2: A = 0 (0 < 1), B = 0 (0 < 0.8)
    assert controls["swap_n"] == 3 and controls["swap_view_fallback"] == 0 and controls["swap_no_partner"] == 0
    assert controls["swap_a_original"] == 1.0 and controls["swap_a_swapped"] == 0.0
    assert controls["swap_delta_a"] == 1.0 and controls["swap_delta_b"] == 1.0
    # a model that ignores the image (every image embeds to v): the swap changes nothing, delta 0
    v = unit_rows([[2, 1]])
    blind_pool = SwapPool(np.repeat(v, 5, axis=0), POOL.labels, POOL.views, POOL.studies)
    r_mixed, rn_mixed = unit_rows([[1, 0], [0, 1], [1, 0]]), unit_rows([[0, 1], [1, 0], [0, 1]])
    controls = shortcut_controls(np.repeat(v, 3, axis=0), r_mixed, rn_mixed, rn_mixed, triplets, blind_pool,
                                 np.random.default_rng(0))
    assert controls["swap_a_original"] == pytest.approx(2 / 3)
    assert controls["swap_delta_a"] == 0.0 and controls["swap_delta_b"] == 0.0


def test_longer_text_wins_and_ties_are_wrong():
    assert longer_text_wins(["No effusion.", "Edema.", "abc"], ["Effusion.", "No edema.", "xyz"]).tolist() == \
        [True, False, False]


def test_bag_of_words_learns_the_negation_wording_without_an_image():
    originals = ["Pleural effusion.", "Mild edema.", "Cardiomegaly.", "Right pneumothorax."]
    negated = ["No pleural effusion.", "No edema.", "No cardiomegaly.", "No pneumothorax."]
    clf = fit_bag_of_words(originals, negated)
    # "no" appears only in the negated texts, so the report without it is the "original"
    assert bag_of_words_prefers(clf, ["Consolidation.", "No fracture. Edema."],
                                ["No consolidation.", "No fracture. No edema."]).tolist() == [True, True]
    decisions = control_decisions(unit_rows([[1, 0]] * 2), unit_rows([[1, 0]] * 2), unit_rows([[0, 1]] * 2),
                                  unit_rows([[0, 1]] * 2),
                                  triplets_of(["Edema"] * 2, reports=["Consolidation.", "Edema here."],
                                              negations=["No consolidation.", "No edema here."],
                                              omitted=["Consolidation. Edema.", "x"]),
                                  None, np.random.default_rng(0), clf)
    assert decisions["a_bag_of_words"].tolist() == [1.0, 1.0]
    assert decisions["b_longer_text"].tolist() == [0.0, 1.0]


def test_bag_of_words_is_trained_on_the_train_split_only(tmp_path):
    frame = pd.DataFrame({
        "image_path": [f"im{i}.png" for i in range(4)], "image_id": [f"i{i}" for i in range(4)],
        "split": ["train", "train", "test", "validate"],
        "text": ["Pleural effusion.", "Edema.", "Zebra testonly.", "Giraffe validonly."],
        "text_negated": ["No pleural effusion.", "No edema.", "No zebra.", "No giraffe."]})
    path = tmp_path / "prepared.parquet"
    frame.to_parquet(path)
    vocabulary = text_classifier_from_manifest(path)[0].vocabulary_
    assert "effusion" in vocabulary
    assert not {"zebra", "testonly", "giraffe", "validonly"} & set(vocabulary)
    frame.drop(columns="split").to_parquet(path)
    with pytest.raises(ClinclipError, match="no 'split' column"):
        text_classifier_from_manifest(path)
