"""Zero-shot classification (CXR-CLIP's conventions) over a manifest and a prompt file.

binary files (RSNA, RSNA-ab, SIIM, VinDr, CXR14, the 14 CheXpert observations): for each class the
image's similarity to the positive and negative prompt ensembles (mean cosine similarity), softmax over
the two, AUROC on the positive probability and accuracy at 0.5. Labels: 1 positive; 0 and blank (not
mentioned) negative; uncertain (-1) left out and counted.
multiclass files (CheXpert 5x200): class score = mean similarity over all of the class's prompts,
prediction = argmax; per-class, macro and micro accuracy. Rows without exactly one positive class are
left out and counted.
Every AUC and accuracy carries a 95 % bootstrap interval (``*_ci``; see ``clinclip.evaluate.confidence``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clinclip.errors import ClinclipError
from clinclip.evaluate import metrics
from clinclip.evaluate.confidence import Bootstrap
from clinclip.evaluate.data import label_matrix
from clinclip.evaluate.prompts import PromptSet


def apply_prompt_filter(frame: pd.DataFrame, prompts: PromptSet, manifest="manifest"
                        ) -> tuple[pd.DataFrame, dict[str, int]]:
    """Keep the rows a prompt file's ``filter`` selects (e.g. RSNA-ab drops normal images)."""
    if not prompts.filter_column:
        return frame, {}
    if prompts.filter_column not in frame.columns:
        raise ClinclipError(f"{manifest}: prompt file {prompts.source} filters on column "
                            f"{prompts.filter_column!r}, which the manifest lacks")
    values = pd.to_numeric(frame[prompts.filter_column], errors="coerce")
    keep = values.isin(prompts.filter_keep)
    dropped = int((~keep).sum())
    skipped = {f"outside the '{prompts.name}' subset ({prompts.filter_column} not in {prompts.filter_keep})":
               dropped} if dropped else {}
    return frame[keep.to_numpy()].reset_index(drop=True), skipped


def binary_targets(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(targets 0/1, usable mask) from a label column: 1 -> 1, 0 or blank -> 0, uncertain -> unusable."""
    values = np.asarray(values, dtype=np.float64)
    usable = ~(values == -1.0)
    return (values == 1.0).astype(np.int64), usable


def multiclass_targets(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class index, usable mask): usable rows have exactly one positive class."""
    positive = labels == 1.0
    usable = positive.sum(axis=1) == 1
    return np.where(usable, positive.argmax(axis=1), -1), usable


def class_prompt_scores(store, image_embeds: np.ndarray, prompts: PromptSet) -> dict[str, np.ndarray]:
    """For each class: binary files -> positive probability (N,); multiclass -> mean similarity (N,)."""
    scores = {}
    for cls in prompts.classes:
        pos = metrics.ensemble_similarity(image_embeds, store.text_embeddings(cls.positive))
        if prompts.kind == "binary":
            neg = metrics.ensemble_similarity(image_embeds, store.text_embeddings(cls.negative))
            scores[cls.name] = metrics.binary_positive_probability(pos, neg)
        else:
            scores[cls.name] = pos
    return scores


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    """Mean over classes (columns) per resample, ignoring classes undefined in that resample."""
    defined = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(defined.any(axis=1), np.nansum(values, axis=1) / defined.sum(axis=1), np.nan)


def score_predictions(prompts: PromptSet, labels: np.ndarray, scores: dict[str, np.ndarray],
                      ok: np.ndarray, bootstrap: Bootstrap | None = None) -> tuple[dict, dict, dict[str, int]]:
    """Metrics of class scores against labels: (headline metrics, per-class details, skipped counts).
    ``scores`` are positive probabilities (binary) or class scores (multiclass); ``ok`` marks rows whose
    image was read. With ``bootstrap`` (drawn over the same rows) every AUC / accuracy gets a ``*_ci``."""
    skipped: dict[str, int] = {}
    per_class: dict[str, dict] = {}
    resampled_auc, resampled_acc = [], []
    if prompts.kind == "binary":
        for k, cls in enumerate(prompts.classes):
            y, usable = binary_targets(labels[:, k])
            if (~usable & ok).sum():
                skipped[f"uncertain label for {cls.name} (left out of that class)"] = int((~usable & ok).sum())
            m = usable & ok & ~np.isnan(scores[cls.name])  # NaN: no probe could be fitted
            prob = scores[cls.name][m]
            per_class[cls.name] = {"auc": metrics.roc_auc(y[m], prob),
                                   "accuracy": float(((prob > 0.5) == (y[m] == 1)).mean()) if m.any()
                                   else float("nan"),
                                   "n": int(m.sum()), "n_positive": int(y[m].sum())}
            if bootstrap is not None:
                score = np.nan_to_num(scores[cls.name])
                resampled_auc.append(bootstrap.aucs(y, score, m))
                resampled_acc.append(bootstrap.means((score > 0.5) == (y == 1), m))
                per_class[cls.name]["auc_ci"] = bootstrap.interval(resampled_auc[-1])
                per_class[cls.name]["accuracy_ci"] = bootstrap.interval(resampled_acc[-1])
        aucs = [v["auc"] for v in per_class.values()]
        accs = [v["accuracy"] for v in per_class.values()]
        headline = {"auc": float(np.nanmean(aucs)) if not np.all(np.isnan(aucs)) else float("nan"),
                    "accuracy": float(np.nanmean(accs)) if not np.all(np.isnan(accs)) else float("nan")}
        if bootstrap is not None:
            headline["auc_ci"] = bootstrap.interval(_nanmean_rows(np.stack(resampled_auc, axis=1)))
            headline["accuracy_ci"] = bootstrap.interval(_nanmean_rows(np.stack(resampled_acc, axis=1)))
        headline["score"] = headline[prompts.metric]
    else:
        y, usable = multiclass_targets(labels)
        if (~usable & ok).sum():
            skipped["not exactly one positive class"] = int((~usable & ok).sum())
        m = usable & ok
        matrix = np.stack([scores[c.name] for c in prompts.classes], axis=1)
        acc = metrics.multiclass_accuracy(y[m], matrix[m].argmax(axis=1), [c.name for c in prompts.classes])
        per_class = {name: {"accuracy": v, "n": int((y[m] == k).sum())}
                     for k, (name, v) in enumerate(acc.per_class.items())}
        headline = {"accuracy": acc.micro, "macro_accuracy": acc.macro, "score": acc.micro}
        if bootstrap is not None:
            correct = np.zeros(len(y), dtype=bool)
            correct[m] = matrix[m].argmax(axis=1) == y[m]
            for k, name in enumerate(per_class):
                resampled_acc.append(bootstrap.means(correct, m & (y == k)))
                per_class[name]["accuracy_ci"] = bootstrap.interval(resampled_acc[-1])
            headline["accuracy_ci"] = bootstrap.accuracy_ci(correct, m)
            headline["macro_accuracy_ci"] = bootstrap.interval(_nanmean_rows(np.stack(resampled_acc, axis=1)))
    if bootstrap is not None:
        headline["score_ci"] = headline[f"{prompts.metric}_ci"]
    return headline, per_class, skipped


def left_out_of_mean(per_class: dict[str, dict], kind: str) -> dict[str, str]:
    """Classes whose metric is undefined and so are not in the mean over classes, with the reason: the
    AUC needs positive and negative images; a class accuracy needs images of the class."""
    import math

    reasons = {}
    for name, d in per_class.items():
        value = d.get("auc" if kind == "binary" else "accuracy")
        if value is not None and not math.isnan(value):
            continue
        n, n_pos = d.get("n", 0), d.get("n_positive")
        if n == 0:
            reasons[name] = "no usable image"
        elif kind != "binary":
            reasons[name] = "no image of this class"
        elif n_pos == 0:
            reasons[name] = "no positive label"
        else:
            reasons[name] = "no negative label"
    return reasons


def mean_row_label(name: str, per_class: dict[str, dict], left_out: dict[str, str]) -> str:
    """``mean`` or ``mean of 12 of 14 classes (left out: A: no positive label; ...)`` for the table."""
    if not left_out:
        return name
    kept = len(per_class) - len(left_out)
    return (f"{name} of {kept} of {len(per_class)} classes (left out: "
            + "; ".join(f"{c}: {why}" for c, why in left_out.items()) + ")")


def zero_shot(store, frame: pd.DataFrame, prompts: PromptSet, manifest: str | Path = "manifest",
              ci_seed: int = 0) -> dict:
    """Zero-shot classification of the manifest rows (one split) with a prompt file; 95 % bootstrap
    intervals from 1,000 resamples drawn with ``ci_seed``."""
    frame, skipped = apply_prompt_filter(frame, prompts, manifest)
    if frame.empty:
        raise ClinclipError(f"{manifest}: no row left to classify")
    labels = label_matrix(frame, prompts.columns, manifest)
    embeds, ok, failures = store.image_embeddings(list(frame["image_path"]), manifest)
    skipped.update(failures)
    scores = class_prompt_scores(store, np.nan_to_num(embeds), prompts)
    bootstrap = Bootstrap.draw(len(frame), seed=ci_seed)
    headline, per_class, more = score_predictions(prompts, labels, scores, ok, bootstrap)
    skipped.update(more)
    keys = ["auc", "accuracy"] if prompts.kind == "binary" else ["accuracy"]
    names = {"auc": "AUC", "accuracy": "ACC"}
    metric_cols = [c for key in keys for c in (names[key], f"{names[key]} 95% CI")]

    def cells(d: dict) -> list:
        return [v for key in keys for v in (d[key], d.get(f"{key}_ci"))]

    rows = [[name] + cells(d) + [d["n"]] for name, d in per_class.items()]
    left_out = left_out_of_mean(per_class, prompts.kind)
    rows.append([mean_row_label("mean", per_class, left_out) if prompts.kind == "binary" else "micro (all images)"]
                + cells(headline) + [int(ok.sum())])
    if prompts.kind == "multiclass":
        rows.append([mean_row_label("macro (mean of classes)", per_class, left_out), headline["macro_accuracy"],
                     headline["macro_accuracy_ci"], int(ok.sum())])
    notes = [f"{c} is left out of the mean over classes: {why}" for c, why in left_out.items()]
    return {
        "task": "zero-shot", "dataset": prompts.name, "prompts": prompts.source, "kind": prompts.kind,
        "headline_metric": prompts.metric, "metrics": headline, "per_class": per_class,
        "classes_left_out_of_mean": left_out, "confidence_intervals": bootstrap.describe(),
        "table": {"columns": ["class"] + metric_cols + ["n (count)"], "rows": rows},
        "skipped": skipped, "notes": notes,
    }
