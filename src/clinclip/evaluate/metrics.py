"""Metric functions on plain arrays (numpy), shared by every evaluation task.

Embeddings handed in here are L2-normalised rows, so a dot product is the cosine similarity. Nothing in
this file touches a model or a file: each function is tested on small hand-made tables whose answer is
known (tests/evaluate/test_metrics.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise similarity matrix ``a @ b.T`` of two L2-normalised embedding tables (float32)."""
    return np.asarray(a, dtype=np.float32) @ np.asarray(b, dtype=np.float32).T


def ensemble_similarity(image_embeds: np.ndarray, prompt_embeds: np.ndarray) -> np.ndarray:
    """Similarity of each image to a prompt ensemble: the mean of the cosine similarities to each
    prompt (N,). This is GLoRIA's/CXR-CLIP's class score (mean similarity over a class's prompts)."""
    return cosine_similarity(image_embeds, prompt_embeds).mean(axis=1)


def binary_positive_probability(pos_scores: np.ndarray, neg_scores: np.ndarray) -> np.ndarray:
    """Softmax over the two similarities [positive, negative]; the probability of the positive prompt.
    softmax([a, b])[0] = sigmoid(a - b)."""
    diff = np.asarray(pos_scores, dtype=np.float64) - np.asarray(neg_scores, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-diff))


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half: the Mann-Whitney statistic). NaN when one of the
    two classes is absent, since the AUC is then undefined."""
    y = np.asarray(y_true).astype(bool)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, np.asarray(scores, dtype=np.float64)))


@dataclass
class MulticlassAccuracy:
    per_class: dict[str, float]  # accuracy (recall) within each true class
    macro: float  # mean of the per-class accuracies
    micro: float  # fraction of all samples right
    n: int


def multiclass_accuracy(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> MulticlassAccuracy:
    """Per-class accuracy (share of the samples of a true class predicted as that class), their
    macro mean over the classes present, and the micro accuracy over all samples."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    per_class: dict[str, float] = {}
    for k, name in enumerate(class_names):
        mask = y_true == k
        per_class[name] = float((y_pred[mask] == k).mean()) if mask.any() else float("nan")
    present = [v for v in per_class.values() if not math.isnan(v)]
    macro = float(np.mean(present)) if present else float("nan")
    micro = float((y_true == y_pred).mean()) if len(y_true) else float("nan")
    return MulticlassAccuracy(per_class, macro, micro, int(len(y_true)))


def target_ranks(similarity: np.ndarray, target: np.ndarray,
                 candidate_groups: np.ndarray | None = None) -> np.ndarray:
    """1-based rank of each query's target column in its row of ``similarity`` (Q x C), highest first.
    Ties are broken pessimistically (a candidate with the same score as the target ranks before it),
    so a model that scores everything alike does not get credit. ``candidate_groups`` (C,): candidates
    of the target's group count as the target (e.g. reports with the same text as the true one): the
    rank is that of the best of them, and the others do not count against it."""
    sim = np.asarray(similarity, dtype=np.float32)
    target = np.asarray(target, dtype=np.int64)
    if candidate_groups is None:
        target_scores = sim[np.arange(len(sim)), target][:, None]
        return (sim >= target_scores).sum(axis=1).astype(np.int64)  # includes the target itself
    groups = np.asarray(candidate_groups)
    same = groups[None, :] == groups[target][:, None]
    best = np.where(same, sim, -np.inf).max(axis=1, keepdims=True)
    return (1 + ((sim >= best) & ~same).sum(axis=1)).astype(np.int64)


def recall_at_k(ranks: np.ndarray, ks=(1, 5, 10)) -> dict[str, float]:
    """Share of queries whose target ranks within the top k, for each k (keys ``R@k``)."""
    ranks = np.asarray(ranks)
    return {f"R@{k}": float((ranks <= k).mean()) if len(ranks) else float("nan") for k in ks}


def label_prf(true_labels: np.ndarray, pred_labels: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of predicted positive labels against true positive labels (N x L 0/1
    arrays), micro-averaged over all (sample, label) pairs -- the CheXbert-based scores of report
    retrieval and generation. Also the example-based means (per sample, then averaged; a sample with
    no true and no predicted positive scores 1)."""
    t = np.asarray(true_labels).astype(bool)
    p = np.asarray(pred_labels).astype(bool)
    tp = float((t & p).sum())
    n_pred, n_true = float(p.sum()), float(t.sum())
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    tp_i = (t & p).sum(axis=1).astype(np.float64)
    pred_i = p.sum(axis=1).astype(np.float64)
    true_i = t.sum(axis=1).astype(np.float64)
    both_empty = (pred_i == 0) & (true_i == 0)
    prec_i = np.where(pred_i > 0, tp_i / np.maximum(pred_i, 1), np.where(both_empty, 1.0, 0.0))
    rec_i = np.where(true_i > 0, tp_i / np.maximum(true_i, 1), np.where(both_empty, 1.0, 0.0))
    f1_i = np.where(prec_i + rec_i > 0, 2 * prec_i * rec_i / np.maximum(prec_i + rec_i, 1e-12), 0.0)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "example_precision": float(prec_i.mean()) if len(t) else float("nan"),
        "example_recall": float(rec_i.mean()) if len(t) else float("nan"),
        "example_f1": float(f1_i.mean()) if len(t) else float("nan"),
    }


def pairwise_preference(image_embeds: np.ndarray, right_embeds: np.ndarray,
                        wrong_embeds: np.ndarray) -> np.ndarray:
    """For aligned rows (image i, right text i, wrong text i): True where sim(I, right) > sim(I, wrong)
    strictly (a tie is wrong). CXR-Align task A uses (r, r^n), task B (r, r^r)."""
    img = np.asarray(image_embeds, dtype=np.float32)
    right = (img * np.asarray(right_embeds, dtype=np.float32)).sum(axis=1)
    wrong = (img * np.asarray(wrong_embeds, dtype=np.float32)).sum(axis=1)
    return right > wrong


def adversarial_outcomes(image_embeds: np.ndarray, present_pos: np.ndarray, present_neg: np.ndarray,
                         absent_pos: np.ndarray, absent_neg: np.ndarray) -> dict[str, np.ndarray]:
    """ProbMed-style adversarial pair for each image (aligned rows): query 1 asks about a present
    entity X ("X" vs "no X") and must pick "X"; query 2 about an absent entity Y ("Y" vs "no Y") and
    must pick "no Y". Returns boolean arrays ``q1``, ``q2`` and ``both`` (chance level of both: 25%)."""
    q1 = pairwise_preference(image_embeds, present_pos, present_neg)
    q2 = pairwise_preference(image_embeds, absent_neg, absent_pos)
    return {"q1": q1, "q2": q2, "both": q1 & q2}


def precision_at_k(scores: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """Precision@k of a ranking: the share of relevant items among the k highest scores (k is capped
    at the number of items). Ties at the cut are broken by the item order (stable sort)."""
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant).astype(bool)
    k = min(int(k), len(scores))
    if k <= 0:
        return float("nan")
    top = np.argsort(-scores, kind="mergesort")[:k]
    return float(relevant[top].mean())


def mean_std(values) -> dict[str, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) ignoring NaN."""
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if len(arr) == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
            "n": int(len(arr))}
