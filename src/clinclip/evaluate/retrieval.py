"""Report retrieval (paper Table 5) and normal case detection (Table 3).

Report retrieval, image -> report over the test pool. The pool holds one report per study (images of
one study share it). Reported: top-5 accuracy (the image's own report, or one with the same text, among
the 5 most similar) and P/R/F1 of the 14 labels of the top-1 report against those of the true report
(positive = 1; micro average over all image x label pairs, and example-based means), the labels coming
from the configured
labeler backend (``rules``, ``chexbert``, ...) or from the manifest columns (``manifest``). Also, over
the DE-DUPLICATED report texts (templated normal reports are often identical), R@1/5/10, mean and
median rank.

Normal case detection: each normal image (No Finding = 1, whatever else is labelled: CheXpert lets Support
Devices be positive in a normal study) against its own report and a pool of 2,999 abnormal report texts
(distinct texts of the other studies with a positive finding, a seeded sample); right when its own
report is the most similar (strictly). Studies that are neither (no No Finding and no positive finding)
are counted under ``skipped``. A smaller pool is used, and said, when the split holds fewer abnormal
reports.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clinclip.errors import ClinclipError
from clinclip.evaluate import metrics
from clinclip.evaluate.data import label_matrix, report_column
from clinclip.observations import FINDINGS, NO_FINDING, OBSERVATIONS
from clinclip.text.labeler import get_labeler


def ranks_and_top1(queries: np.ndarray, candidates: np.ndarray, target: np.ndarray,
                   candidate_groups: np.ndarray | None = None, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each query's target candidate (1-based, pessimistic ties; a candidate of the target's
    ``candidate_groups`` counts as the target) and the top-1 candidate index, computed in chunks of
    queries so 10k x 10k never holds more than ``chunk`` rows of scores."""
    ranks = np.empty(len(queries), dtype=np.int64)
    top1 = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        sim = metrics.cosine_similarity(queries[start:start + chunk], candidates)
        ranks[start:start + chunk] = metrics.target_ranks(sim, target[start:start + chunk], candidate_groups)
        top1[start:start + chunk] = sim.argmax(axis=1)
    return ranks, top1


GIVEN_LABELS = ("manifest", "csv")  # labels given with the data, not computed from the texts


def report_labels(texts: list[str], frame_rows: pd.DataFrame | None, labeler: str,
                  manifest: str | Path = "manifest", labeler_options: dict | None = None) -> np.ndarray:
    """14 labels (N x 14, OBSERVATIONS order) of report texts: from the manifest's label columns
    (``manifest`` or ``csv`` without options), from a label file joined on a key column (``csv`` with
    ``path`` and ``key_column``), or by running a labeler backend (``rules``, ``chexbert`` with its
    ``labeler_options``) on the texts."""
    options = dict(labeler_options or {})
    if labeler == "csv" and options:
        key = options.get("key_column", "study_id")
        column = key if frame_rows is not None and key in frame_rows.columns else "study_id"
        if frame_rows is None or column not in frame_rows.columns:
            raise ClinclipError(f"{manifest}: no key column {key!r} to join with {options.get('path')}")
        return np.asarray(get_labeler("csv", **options).label(frame_rows[column].astype(str).tolist()),
                          dtype=np.float64)
    if labeler in GIVEN_LABELS:
        if frame_rows is None:
            raise ClinclipError("labeler 'manifest' needs the manifest rows of the reports")
        missing = [c for c in OBSERVATIONS if c not in frame_rows.columns]
        if missing:
            raise ClinclipError(f"{manifest}: labeler 'manifest' needs the 14 observation columns, missing "
                                f"{missing}; pass --labeler rules (or chexbert) to label the reports instead")
        return label_matrix(frame_rows, list(OBSERVATIONS), manifest)

    return np.asarray(get_labeler(labeler, **options).label(list(texts)), dtype=np.float64)


def _study_key(frame: pd.DataFrame) -> pd.Series:
    return frame["study_id"].astype(str) if "study_id" in frame.columns else frame["image_id"].astype(str)


def _with_reports(frame: pd.DataFrame, manifest) -> tuple[pd.DataFrame, str, dict[str, int]]:
    column = report_column(frame, manifest)
    text = frame[column]
    empty = text.isna() | (text.astype(str).str.strip() == "")
    skipped = {f"empty report ('{column}')": int(empty.sum())} if empty.any() else {}
    return frame[~empty.to_numpy()].reset_index(drop=True), column, skipped


def report_retrieval(store, frame: pd.DataFrame, manifest: str | Path = "manifest", labeler: str = "rules",
                     dataset: str | None = None, ks=(1, 5, 10), labeler_options: dict | None = None) -> dict:
    frame, column, skipped = _with_reports(frame, manifest)
    if frame.empty:
        raise ClinclipError(f"{manifest}: no row with a report")
    study = _study_key(frame)
    pool = frame.assign(_study=study.to_numpy()).drop_duplicates("_study").reset_index(drop=True)
    study_index = {s: i for i, s in enumerate(pool["_study"])}
    target = np.array([study_index[s] for s in study], dtype=np.int64)
    pool_texts = [str(t) for t in pool[column]]

    img, ok, fail = store.image_embeddings(list(frame["image_path"]), manifest)
    skipped.update(fail)
    img, target = img[ok], target[ok]
    reports = store.text_embeddings(pool_texts, desc="encoding reports")
    unique_texts = list(dict.fromkeys(pool_texts))
    unique_index = {t: i for i, t in enumerate(unique_texts)}
    # top-k: a report with the same text as the true one is a hit (templated reports repeat verbatim)
    text_group = np.array([unique_index[t] for t in pool_texts], dtype=np.int64)
    ranks, top1 = ranks_and_top1(img, reports, target, text_group)

    labels = report_labels(pool_texts, pool, labeler, manifest, labeler_options) == 1.0
    prf = metrics.label_prf(labels[target], labels[top1])

    # De-duplicated texts: identical reports are one candidate.
    target_u = np.array([unique_index[pool_texts[t]] for t in target], dtype=np.int64)
    unique_embeds = store.text_embeddings(unique_texts, desc="encoding unique reports")
    ranks_u, _ = ranks_and_top1(img, unique_embeds, target_u)
    recall = metrics.recall_at_k(ranks_u, ks)

    headline = {"top5": float((ranks <= 5).mean()), "f1": prf["f1"], "recall": prf["recall"],
                "precision": prf["precision"], **recall, "mean_rank": float(ranks_u.mean()),
                "median_rank": float(np.median(ranks_u))}
    notes = []
    if len(pool) < 5:
        notes.append(f"the pool holds only {len(pool)} reports, so top-5 accuracy is trivially high")
    return {
        "task": "retrieval", "dataset": dataset or Path(str(manifest)).stem, "labeler": labeler,
        "metrics": headline, "label_scores": prf,
        "pool": {"images": int(len(img)), "reports": int(len(pool)), "unique_reports": len(unique_texts)},
        "table": {"columns": ["@5", "F1", "Recall", "Precision", "R@1 (dedup)", "R@5 (dedup)",
                              "R@10 (dedup)", "mean rank (dedup, count)", "reports (count)"],
                  "rows": [[headline["top5"], prf["f1"], prf["recall"], prf["precision"], recall["R@1"],
                            recall["R@5"], recall["R@10"], f"{headline['mean_rank']:.1f}", int(len(pool))]]},
        "skipped": skipped, "notes": notes,
    }


def normal_detection(store, frame: pd.DataFrame, manifest: str | Path = "manifest", n_abnormal: int = 2999,
                     seed: int = 0, labeler: str = "manifest", dataset: str | None = None,
                     labeler_options: dict | None = None) -> dict:
    frame, column, skipped = _with_reports(frame, manifest)
    texts = [str(t) for t in frame[column]]
    labels = report_labels(texts, frame, labeler, manifest, labeler_options)
    normal = labels[:, OBSERVATIONS.index(NO_FINDING)] == 1.0
    any_finding = (labels[:, [OBSERVATIONS.index(f) for f in FINDINGS]] == 1.0).any(axis=1)
    abnormal = any_finding & ~normal
    neither = int((~normal & ~abnormal).sum())
    if neither:
        skipped["neither normal (No Finding = 1) nor abnormal (a positive finding)"] = neither
    if not normal.any():
        raise ClinclipError(f"{manifest}: no normal image (No Finding = 1) in this split")
    abnormal_texts = list(dict.fromkeys(t for t, a in zip(texts, abnormal) if a))
    normal_texts = set(t for t, n in zip(texts, normal) if n)
    abnormal_texts = [t for t in abnormal_texts if t not in normal_texts]
    if not abnormal_texts:
        raise ClinclipError(f"{manifest}: no abnormal report in this split to build the pool")
    notes = []
    with_finding = int((normal & any_finding).sum())
    if with_finding:
        notes.append(f"{with_finding} normal image(s) (No Finding = 1) also have a positive label (e.g. Support "
                     "Devices); they count as normal, as No Finding defines")
    rng = np.random.default_rng(seed)
    if len(abnormal_texts) > n_abnormal:
        pick = np.sort(rng.choice(len(abnormal_texts), size=n_abnormal, replace=False))
        abnormal_texts = [abnormal_texts[i] for i in pick]
    elif len(abnormal_texts) < n_abnormal:
        notes.append(f"the split holds {len(abnormal_texts)} distinct abnormal reports, fewer than the "
                     f"{n_abnormal} of the protocol: each normal image competed against "
                     f"{len(abnormal_texts)} abnormal reports (an easier task than the paper's)")
    rows = frame[normal].reset_index(drop=True)
    img, ok, fail = store.image_embeddings(list(rows["image_path"]), manifest)
    skipped.update(fail)
    img = img[ok]
    own = store.text_embeddings([t for t, good in zip(np.array(texts, dtype=object)[normal], ok) if good],
                                desc="encoding normal reports")
    pool = store.text_embeddings(abnormal_texts, desc="encoding abnormal reports")
    own_sim = (img * own).sum(axis=1)
    best_abnormal = np.full(len(img), -np.inf, dtype=np.float32)
    for start in range(0, len(pool), 4096):
        best_abnormal = np.maximum(best_abnormal,
                                   metrics.cosine_similarity(img, pool[start:start + 4096]).max(axis=1))
    correct = own_sim > best_abnormal
    acc = float(correct.mean()) if len(correct) else float("nan")
    return {
        "task": "normal-detection", "dataset": dataset or Path(str(manifest)).stem, "labeler": labeler,
        "metrics": {"accuracy": acc, "n_normal": int(len(img)), "n_abnormal_reports": len(abnormal_texts)},
        "table": {"columns": ["NCD ACC", "normal images (count)", "abnormal reports (count)"],
                  "rows": [[acc, int(len(img)), len(abnormal_texts)]]},
        "skipped": skipped, "notes": notes,
    }
