"""Adversarial prediction (paper Table 4, after ProbMed): for an image with a present entity X and an
absent entity Y, query 1 "X" vs "no X" must pick "X" and query 2 "Y" vs "no Y" must pick "no Y"; the
image counts as right only when both are right (chance: 25%).

Entities and prompts come from a prompt file (its classes with ``entity: true``; "X" = the class's
positive prompt ensemble, "no X" = its negative one). Present = label 1; absent = label 0 or blank (not
mentioned); uncertain labels are neither. Each image gets one (X, Y) pair drawn with a seeded generator
(``pairs="one"``), or every (X, Y) combination (``pairs="all"``, each pair one trial).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clinclip.errors import ClinclipError
from clinclip.evaluate import metrics
from clinclip.evaluate.classification import apply_prompt_filter
from clinclip.evaluate.confidence import Bootstrap
from clinclip.evaluate.data import label_matrix
from clinclip.evaluate.prompts import PromptSet


def adversarial_pairs(labels: np.ndarray, seed: int = 0, pairs: str = "one") -> list[tuple[int, int, int]]:
    """(row, present class, absent class) trials from a label matrix (N x C; 1 present, 0/NaN absent)."""
    rng = np.random.default_rng(seed)
    trials = []
    for i, row in enumerate(labels):
        present = np.where(row == 1.0)[0]
        absent = np.where((row == 0.0) | np.isnan(row))[0]
        if len(present) == 0 or len(absent) == 0:
            continue
        if pairs == "all":
            trials += [(i, int(x), int(y)) for x in present for y in absent]
        else:
            trials.append((i, int(present[rng.integers(len(present))]), int(absent[rng.integers(len(absent))])))
    return trials


def _ensemble(store, prompts: list[str]) -> np.ndarray:
    """One embedding per prompt ensemble: the mean of the prompt embeddings (a mean of similarities is
    the similarity to the mean embedding, so this keeps the ensemble convention of zero-shot)."""
    return store.text_embeddings(prompts).mean(axis=0)


def adversarial(store, frame: pd.DataFrame, prompts: PromptSet, manifest: str | Path = "manifest",
                seed: int = 0, pairs: str = "one", ci_seed: int = 0) -> dict:
    if pairs not in ("one", "all"):
        raise ClinclipError(f"--pairs must be one or all, got {pairs!r}")
    frame, skipped = apply_prompt_filter(frame, prompts, manifest)
    classes = [c for c in prompts.classes if c.entity]
    labels = label_matrix(frame, [c.column for c in classes], manifest)
    img, ok, fail = store.image_embeddings(list(frame["image_path"]), manifest)
    skipped.update(fail)
    usable_rows = np.where(ok)[0]
    trials = adversarial_pairs(labels[usable_rows], seed=seed, pairs=pairs)
    no_pair = len(usable_rows) - len({t[0] for t in trials})
    if no_pair:
        skipped["no present and absent entity pair (all positive or none positive)"] = no_pair
    if not trials:
        raise ClinclipError(f"{manifest}: no image has both a present and an absent entity among "
                            f"{[c.column for c in classes]}")
    pos = np.stack([_ensemble(store, c.positive) for c in classes])
    neg = np.stack([_ensemble(store, c.negative) for c in classes])
    rows = usable_rows[[t[0] for t in trials]]
    x = np.array([t[1] for t in trials])
    y = np.array([t[2] for t in trials])
    out = metrics.adversarial_outcomes(img[rows], pos[x], neg[x], pos[y], neg[y])
    per_entity = {}
    for k, c in enumerate(classes):
        as_x, as_y = x == k, y == k
        per_entity[c.name] = {"q1_present": float(out["q1"][as_x].mean()) if as_x.any() else float("nan"),
                              "q2_absent": float(out["q2"][as_y].mean()) if as_y.any() else float("nan"),
                              "n_present": int(as_x.sum()), "n_absent": int(as_y.sum())}
    boot = Bootstrap.draw(len(trials), seed=ci_seed)
    headline = {"accuracy": float(out["both"].mean()), "accuracy_ci": boot.accuracy_ci(out["both"]),
                "q1": float(out["q1"].mean()), "q2": float(out["q2"].mean()), "n": len(trials), "chance": 0.25}
    return {
        "task": "adversarial", "dataset": prompts.name, "prompts": prompts.source, "pairs": pairs, "seed": seed,
        "metrics": headline, "per_entity": per_entity, "confidence_intervals": boot.describe(),
        "table": {"columns": ["Adversarial CLS (both right)", "Adversarial CLS (both right) 95% CI",
                              "query 1 (present)", "query 2 (absent)", "chance", "trials (count)"],
                  "rows": [[headline["accuracy"], headline["accuracy_ci"], headline["q1"], headline["q2"], 0.25,
                            len(trials)]]},
        "skipped": skipped, "notes": [],
    }
