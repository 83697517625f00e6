"""Negation retrieval (the second source document): for each finding X, the prompts "X" and "no X"
each retrieve the top-k images by similarity. An image is relevant to "X" when X is positive (label 1)
and to "no X" when X is negative or absent (0 or blank); uncertain images are left out of that finding.
Reported: precision@k of each prompt, and the gap P@k("X") - P@k("no X") -- a model that ignores the
negation retrieves the same images for both and shows a large gap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clinclip.errors import ClinclipError
from clinclip.evaluate import metrics
from clinclip.evaluate.classification import apply_prompt_filter
from clinclip.evaluate.data import label_matrix
from clinclip.evaluate.prompts import PromptSet


def negation_retrieval(store, frame: pd.DataFrame, prompts: PromptSet, manifest: str | Path = "manifest",
                       ks=(5, 10, 50)) -> dict:
    frame, skipped = apply_prompt_filter(frame, prompts, manifest)
    classes = [c for c in prompts.classes if c.entity]
    labels = label_matrix(frame, [c.column for c in classes], manifest)
    img, ok, fail = store.image_embeddings(list(frame["image_path"]), manifest)
    skipped.update(fail)
    img, labels = img[ok], labels[ok]
    if len(img) == 0:
        raise ClinclipError(f"{manifest}: no readable image")
    per_finding: dict[str, dict] = {}
    rows = []
    for k, cls in enumerate(classes):
        usable = labels[:, k] != -1.0
        positive = labels[usable, k] == 1.0
        if not positive.any():
            skipped[f"{cls.name}: no positive image (finding left out)"] = 1
            continue
        pos_scores = metrics.ensemble_similarity(img[usable], store.text_embeddings(cls.positive))
        neg_scores = metrics.ensemble_similarity(img[usable], store.text_embeddings(cls.negative))
        entry = {"n_positive": int(positive.sum()), "n_negative": int((~positive).sum())}
        for kk in ks:
            p_pos = metrics.precision_at_k(pos_scores, positive, kk)
            p_neg = metrics.precision_at_k(neg_scores, ~positive, kk)
            entry[f"P@{kk}"] = p_pos
            entry[f"P@{kk} (no)"] = p_neg
            entry[f"gap@{kk}"] = p_pos - p_neg
        per_finding[cls.name] = entry
        rows.append([cls.name] + [entry[f"{m}@{kk}{s}"] for kk in ks
                                  for m, s in (("P", ""), ("P", " (no)"), ("gap", ""))]
                    + [entry["n_positive"]])
    if not per_finding:
        raise ClinclipError(f"{manifest}: no finding has a positive image")
    headline = {}
    for kk in ks:
        for key in (f"P@{kk}", f"P@{kk} (no)", f"gap@{kk}"):
            headline[key] = float(np.mean([e[key] for e in per_finding.values()]))
    rows.append(["mean"] + [headline[f"{m}@{kk}{s}"] for kk in ks
                            for m, s in (("P", ""), ("P", " (no)"), ("gap", ""))] + [None])
    columns = ["finding"] + [c for kk in ks for c in (f"P@{kk} X", f"P@{kk} no X", f"gap@{kk}")] + [
        "positives (count)"]
    return {
        "task": "negation-retrieval", "dataset": prompts.name, "prompts": prompts.source, "ks": list(ks),
        "metrics": headline, "per_finding": per_finding, "table": {"columns": columns, "rows": rows},
        "skipped": skipped, "notes": [],
    }
