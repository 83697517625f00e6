"""Each evaluation metric on a hand-made case whose answer is worked out by hand in the comments."""

import math

import numpy as np
import pytest

from clinclip.evaluate import metrics


def test_roc_auc_by_hand():
    # positives score 0.9 and 0.4, negatives 0.5 and 0.1: of the 4 (pos, neg) pairs, 3 are ordered right.
    assert metrics.roc_auc([1, 0, 1, 0], [0.9, 0.5, 0.4, 0.1]) == pytest.approx(0.75)
    # a tie between a positive and a negative counts one half: pairs (0.5,0.5)=0.5, (0.5,0.1)=1 -> 0.75
    assert metrics.roc_auc([1, 0, 0], [0.5, 0.5, 0.1]) == pytest.approx(0.75)
    assert math.isnan(metrics.roc_auc([1, 1], [0.2, 0.3]))


def test_binary_probability_is_softmax_of_the_two_similarities():
    p = metrics.binary_positive_probability(np.array([0.3]), np.array([0.1]))
    expected = math.exp(0.3) / (math.exp(0.3) + math.exp(0.1))
    assert p[0] == pytest.approx(expected)


def test_ensemble_similarity_is_mean_cosine():
    image = np.array([[1.0, 0.0]])
    prompts = np.array([[1.0, 0.0], [0.0, 1.0]])  # similarities 1 and 0
    assert metrics.ensemble_similarity(image, prompts)[0] == pytest.approx(0.5)


def test_multiclass_accuracy_per_class_macro_micro():
    # class a: 2 of 3 right; class b: 1 of 1 right; micro 3/4; macro (2/3 + 1)/2
    acc = metrics.multiclass_accuracy([0, 0, 0, 1], [0, 0, 1, 1], ["a", "b"])
    assert acc.per_class == {"a": pytest.approx(2 / 3), "b": 1.0}
    assert acc.micro == pytest.approx(0.75)
    assert acc.macro == pytest.approx((2 / 3 + 1) / 2)


def test_target_ranks_and_recall_on_a_fixed_table():
    sim = np.array([[0.9, 0.1, 0.5],   # target 0 is best -> rank 1
                    [0.2, 0.3, 0.8],   # target 1 scores 0.3, one better -> rank 2
                    [0.7, 0.7, 0.1]])  # target 2 is worst -> rank 3
    ranks = metrics.target_ranks(sim, np.array([0, 1, 2]))
    assert ranks.tolist() == [1, 2, 3]
    assert metrics.recall_at_k(ranks, ks=(1, 2)) == {"R@1": pytest.approx(1 / 3), "R@2": pytest.approx(2 / 3)}
    # a tie with the target counts against it (pessimistic): both 0.7 -> rank 2 for target 0
    assert metrics.target_ranks(np.array([[0.7, 0.7]]), np.array([0]))[0] == 2


def test_target_ranks_count_a_candidate_of_the_targets_group_as_the_target():
    # candidates 0 and 2 share a text (group 7): query 0's target 0 scores 0.1, but its twin 2 scores 0.8,
    # beaten only by candidate 1 (0.9): rank 2 (it was 3 without groups); query 1's twin ties candidate 1,
    # pessimistic: rank 2; the twin of a target does not count against it (query 2: rank 1)
    sim = np.array([[0.1, 0.9, 0.8, 0.2],
                    [0.3, 0.5, 0.5, 0.1],
                    [0.9, 0.1, 0.9, 0.3]])
    groups = np.array([7, 1, 7, 2])
    assert metrics.target_ranks(sim, np.array([0, 0, 2])).tolist() == [4, 3, 2]
    assert metrics.target_ranks(sim, np.array([0, 0, 2]), groups).tolist() == [2, 2, 1]
    # a singleton group ranks as without groups
    assert metrics.target_ranks(sim, np.array([3, 3, 3]), groups).tolist() == \
        metrics.target_ranks(sim, np.array([3, 3, 3])).tolist()


def test_label_prf_micro_and_example_based():
    true = np.array([[1, 1, 0], [0, 0, 0]])
    pred = np.array([[1, 0, 1], [0, 0, 0]])
    prf = metrics.label_prf(true, pred)
    # micro: tp=1, predicted=2, true=2
    assert prf["precision"] == pytest.approx(0.5)
    assert prf["recall"] == pytest.approx(0.5)
    assert prf["f1"] == pytest.approx(0.5)
    # example-based: row 1 P=R=F1=0.5, row 2 both empty -> 1; mean 0.75
    assert prf["example_f1"] == pytest.approx(0.75)


def test_pairwise_preference_is_cxr_align_decision():
    image = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    right = np.array([[0.8, 0.6], [0.6, 0.8], [0.6, 0.8]])
    wrong = np.array([[0.6, 0.8], [0.8, 0.6], [0.6, 0.8]])
    # image 0: 0.8 > 0.6 right; image 1: 0.8 > 0.6 right; image 2: tie 0.6 == 0.6 -> wrong
    assert metrics.pairwise_preference(image, right, wrong).tolist() == [True, True, False]


def test_adversarial_needs_both_queries_right():
    e = np.eye(4)
    image = np.array([e[0], e[0]])
    # image 0: "X" close (e0), "no X" far -> q1 right; "Y" far, "no Y" close -> q2 right
    # image 1: same X, but "Y" is close to the image and "no Y" far -> q2 wrong
    present_pos = np.array([e[0], e[0]])
    present_neg = np.array([e[1], e[1]])
    absent_pos = np.array([e[2], e[0]])
    absent_neg = np.array([e[0], e[3]])
    out = metrics.adversarial_outcomes(image, present_pos, present_neg, absent_pos, absent_neg)
    assert out["q1"].tolist() == [True, True]
    assert out["q2"].tolist() == [True, False]
    assert out["both"].tolist() == [True, False]


def test_precision_at_k():
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    relevant = np.array([True, False, True, True])
    assert metrics.precision_at_k(scores, relevant, 2) == pytest.approx(0.5)   # items 0,1
    assert metrics.precision_at_k(scores, relevant, 3) == pytest.approx(2 / 3)  # items 0,1,2
    assert metrics.precision_at_k(scores, relevant, 10) == pytest.approx(0.75)  # capped at 4


def test_mean_std_over_seeds():
    out = metrics.mean_std([0.8, 0.9, float("nan")])
    assert out["mean"] == pytest.approx(0.85)
    assert out["std"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert out["n"] == 2
