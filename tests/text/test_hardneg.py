"""Hard negatives r^n / r^r on real IU reports and on hand-made cases."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from clinclip.observations import FINDINGS, NO_FINDING, OBSERVATIONS
from clinclip.text.hardneg import (
    HardNegativePool, is_normal, load_templates, make_hard_negative, make_hard_negatives, positive_findings,
)
from textgen_helpers import iu_frame, split_and_label

IDX = {name: i for i, name in enumerate(OBSERVATIONS)}


@pytest.fixture(scope="module")
def labeler():
    from clinclip.text.labeler import get_labeler

    return get_labeler("rules")


@pytest.fixture(scope="module")
def iu(iu_reports_path):
    frame = iu_frame(iu_reports_path, 600)
    sentences, labels = split_and_label(frame["report"].tolist())
    keep = [i for i, s in enumerate(sentences) if s]
    return [sentences[i] for i in keep], labels[keep]


def test_every_template_is_negative_for_its_entity_only(labeler):
    templates = load_templates()
    assert set(templates) == set(FINDINGS)
    for entity, choices in templates.items():
        assert len(choices) >= 3, entity
        rows = labeler.label(list(choices))
        for sentence, row in zip(choices, rows):
            assert row[IDX[entity]] == 0.0, (entity, sentence, row)
            others = [OBSERVATIONS[j] for j in range(13) if row[j] in (1.0, -1.0)]
            assert not others, (sentence, others)


def test_real_reports(iu, labeler):
    from clinclip.text.rules import find_mentions

    sentences, labels = iu
    pool = HardNegativePool.from_reports(sentences, labels)
    assert len(pool) > 20
    out, counts = make_hard_negatives(sentences, labels, seed=0, pool=pool, labeler=labeler)
    templates = load_templates()
    abnormal = [i for i in range(len(sentences)) if not is_normal(labels[i])]
    assert len(abnormal) > 100
    failures = [i for i in range(len(out)) if out[i].failure]
    assert len(failures) <= 0.02 * len(out), (counts, [out[i].failure for i in failures[:5]])
    kept_other, checked_other = 0, 0
    for i in abnormal:
        hn = out[i]
        if hn.failure:
            continue
        e = hn.entity
        assert labels[i][IDX[e]] == 1.0  # the chosen entity is positive in r
        assert hn.negated_labels[IDX[e]] not in (1.0, -1.0)  # negative or absent in r^n
        assert hn.position in ("beginning", "middle", "end")
        inserted = [s for s in hn.sentences_negated if s in templates[e]]
        assert len(inserted) == 1, hn.sentences_negated
        # r^r lacks the entity's sentences and is r^n without the inserted negation.
        assert not any(m.observation == e for s in hn.sentences_removed for m in find_mentions(s))
        assert [s for s in hn.sentences_negated if s not in templates[e]] == list(hn.sentences_removed)
        assert set(hn.sentences_removed) <= set(sentences[i])
        # Every other positive finding stated in a kept sentence stays positive in r^n. (One stated only
        # in a sentence about the chosen entity, "opacity suggestive of atelectasis", goes with it.)
        for other in positive_findings(labels[i]):
            stated = any(m.observation == other and m.assertion == "positive"
                         for s in hn.sentences_removed for m in find_mentions(s))
            if other != e and stated:
                checked_other += 1
                assert hn.negated_labels[IDX[other]] == 1.0, (other, hn.text_negated)
            kept_other += other != e and hn.negated_labels[IDX[other]] == 1.0
    assert checked_other > 30
    assert kept_other >= 0.75 * sum(len(positive_findings(labels[i])) - 1 for i in abnormal if not out[i].failure)


def test_positions_cover_beginning_middle_end_and_match_the_text(iu, labeler):
    sentences, labels = iu
    i = next(k for k in range(len(sentences)) if not is_normal(labels[k]) and len(sentences[k]) >= 4)
    seen = Counter()
    for seed in range(30):
        hn = make_hard_negative(sentences[i], labels[i], seed, labeler=labeler)
        seen[hn.position] += 1
        negation = next(s for s in hn.sentences_negated if s in load_templates()[hn.entity])
        at = list(hn.sentences_negated).index(negation)
        expected = {"beginning": at == 0, "end": at == len(hn.sentences_negated) - 1,
                    "middle": 0 < at < len(hn.sentences_negated) - 1}
        assert expected[hn.position], (hn.position, at)
    assert set(seen) == {"beginning", "middle", "end"} and min(seen.values()) >= 4, seen


def test_normal_reports_draw_from_the_single_finding_pool(iu, labeler):
    sentences, labels = iu
    pool = HardNegativePool.from_reports(sentences, labels)
    for k in range(len(pool)):
        assert positive_findings(pool.labels[k]) == [pool.entities[k]]
        assert pool.labels[k][IDX[NO_FINDING]] != 1.0
    normal = [i for i in range(len(sentences)) if is_normal(labels[i])][:50]
    assert len(normal) >= 20
    out, counts = make_hard_negatives([sentences[i] for i in normal], labels[normal], seed=3, pool=pool,
                                      labeler=labeler, indices=normal)
    pool_texts = {" ".join(s): k for k, s in enumerate(pool.sentences)}
    for hn in out:
        assert hn.position == "pool" and hn.text_removed is None
        k = pool_texts[hn.text_negated]
        assert hn.entity == pool.entities[k] and hn.negated_labels == pool.labels[k]
    assert counts["normal report: r^n drawn from the pool"] == len(normal)
    assert len({hn.text_negated for hn in out}) > 10  # drawn at random, not one fixed report


def test_chunking_does_not_change_results(iu, labeler):
    sentences, labels = iu
    sentences, labels = sentences[:80], labels[:80]
    pool = HardNegativePool.from_reports(sentences, labels)
    whole, _ = make_hard_negatives(sentences, labels, seed=7, pool=pool, labeler=labeler)
    first, _ = make_hard_negatives(sentences[:33], labels[:33], seed=7, pool=pool, labeler=labeler)
    second, _ = make_hard_negatives(sentences[33:], labels[33:], seed=7, pool=pool, labeler=labeler,
                                    indices=range(33, 80))
    assert repr(whole) == repr(first + second)  # repr: NaN labels compare equal
    other_seed, _ = make_hard_negatives(sentences, labels, seed=8, pool=pool, labeler=labeler)
    assert repr(whole) != repr(other_seed)


class _BigHeartLabeler:
    """The rules labeler, plus: 'big heart' means cardiomegaly (a phrase the mention lexicon lacks)."""

    def __init__(self, base):
        self.base = base

    def label(self, texts):
        out = self.base.label(texts)
        for i, t in enumerate(texts):
            if "big heart" in t.lower():
                out[i, IDX["Cardiomegaly"]] = 1.0
        return out


def test_leftover_mentions_are_removed_by_sentence_labels(labeler):
    sentences = ["Moderate cardiomegaly.", "Big heart again.", "Small right pleural effusion."]
    labels = np.full((1, 14), np.nan)
    labels[0, IDX["Cardiomegaly"]] = 1.0
    out, counts = make_hard_negatives([sentences], labels, seed=0, labeler=_BigHeartLabeler(labeler))
    hn = out[0]
    assert hn.failure is None and hn.entity == "Cardiomegaly"
    assert hn.text_removed == "Small right pleural effusion."
    assert counts["fixed by per-sentence labels"] == 1


class _AlwaysPositive:
    def label(self, texts):
        return np.ones((len(texts), 14))


def test_failures_are_reported_never_silent(labeler):
    sentences = [["Moderate cardiomegaly.", "Small left pleural effusion."], ["Mild cardiomegaly."]]
    labels = np.full((2, 14), np.nan)
    labels[:, IDX["Cardiomegaly"]] = 1.0
    labels[0, IDX["Pleural Effusion"]] = 1.0
    out, counts = make_hard_negatives(sentences, labels, seed=0, labeler=_AlwaysPositive())
    assert all(hn.failure and hn.text_negated is None for hn in out)
    assert counts["retried with another entity"] == 1  # report 0 tried its second entity
    assert counts["failed: every positive entity stays positive after removal"] == 2
    # An entity the text never mentions (label given with the data): the next one is used, and counted.
    labels = np.full((1, 14), np.nan)
    labels[0, IDX["Fracture"]] = labels[0, IDX["Cardiomegaly"]] = 1.0
    out, counts = make_hard_negatives([["Mild cardiomegaly.", "No effusion."]], labels, seed=1, labeler=labeler)
    assert out[0].entity == "Cardiomegaly" and out[0].failure is None
    only_fracture = labels.copy()
    only_fracture[0, IDX["Cardiomegaly"]] = np.nan
    out, counts = make_hard_negatives([["Mild cardiomegaly."]], only_fracture, seed=1, labeler=labeler)
    assert out[0].failure and counts["entity not mentioned in the text: Fracture"] == 1
    # A normal report with an empty pool.
    normal = np.full((1, 14), np.nan)
    normal[0, IDX[NO_FINDING]] = 1.0
    out, counts = make_hard_negatives([["No acute disease."]], normal, seed=0, pool=HardNegativePool(), labeler=labeler)
    assert out[0].failure and counts["failed: normal report but the single-finding pool is empty"] == 1
