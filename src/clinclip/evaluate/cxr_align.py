"""CXR-Align (paper section 3, Table 6): builder and scorer.

File format -- the published benchmark's (PhysioNet), read and written unchanged: one JSON object whose
top-level keys name the source dataset (``"mimic"``, ``"chexpert"``, ``"openi"``), each mapping image ids
to ``{"report": r, "negation": r^n, "omitted": r^r, "chosen": entity}``. Extra fields are kept on read.

Builder: from a prepared test manifest, abnormal studies only (a finding positive), one image per study
(the first frontal image by image id), one positive entity chosen per study with a seeded generator, r^r
and r^n made by ``clinclip.text.hardneg.make_hard_negatives`` (the same code as training's hard
negatives, verified by the labeler). Studies for which no hard negative can be made are counted.

Scorer: task A right when sim(I, r) > sim(I, r^n); task B right when sim(I, r) > sim(I, r^r) (strictly;
a tie is wrong). Accuracy per source dataset and per chosen entity.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from clinclip.errors import ClinclipError
from clinclip.files import read_mapping
from clinclip.evaluate import metrics
from clinclip.observations import OBSERVATIONS

ENTRY_FIELDS = ("report", "negation", "omitted", "chosen")


def read_benchmark(path: str | Path) -> dict[str, dict[str, dict]]:
    """Read and validate a CXR-Align JSON file (official or built here)."""
    path = Path(path)
    data = read_mapping(path, "CXR-Align file")
    if not data:
        raise ClinclipError(f"CXR-Align file {path}: expected an object {{source: {{image_id: entry}}}}")
    for source, entries in data.items():
        if not isinstance(entries, dict):
            raise ClinclipError(f"CXR-Align file {path}: '{source}' must map image ids to entries")
        for image_id, entry in entries.items():
            missing = [f for f in ("report", "negation", "omitted") if not isinstance(entry, dict)
                       or not isinstance(entry.get(f), str)]
            if missing:
                raise ClinclipError(f"CXR-Align file {path}: {source}/{image_id} lacks text field(s) {missing}")
    return data


def write_benchmark(benchmark: dict[str, dict[str, dict]], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(benchmark, indent=1, ensure_ascii=False))
    tmp.replace(path)
    return path


def _sentences_of(value) -> list[str]:
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
            if isinstance(parsed, list):
                return [str(s) for s in parsed]
        except json.JSONDecodeError:
            pass
        return [value] if value.strip() else []
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return [str(s) for s in list(value)]


def build_benchmark(frame: pd.DataFrame, source: str = "mimic", seed: int = 0, labeler_backend: str = "rules",
                    manifest: str | Path = "manifest") -> tuple[dict[str, dict[str, dict]], Counter]:
    """Build CXR-Align triplets from the rows of a prepared manifest (already restricted to one split).
    Returns the benchmark ``{source: {image_id: entry}}`` and counts of what was left out and why."""
    from clinclip.text.hardneg import is_normal, make_hard_negatives
    from clinclip.text.labeler import get_labeler

    if "sentences" not in frame.columns:
        raise ClinclipError(f"{manifest}: no 'sentences' column; run `clinclip text prepare` on it first")
    missing = [c for c in OBSERVATIONS if c not in frame.columns]
    if missing:
        raise ClinclipError(f"{manifest}: label column(s) {missing} missing; run `clinclip text prepare`")
    counts: Counter = Counter()
    frame = frame.copy()
    if "skip_reason" in frame.columns:
        bad = frame["skip_reason"].notna() & (frame["skip_reason"].astype(str) != "")
        counts.update({f"prepared row skipped: {r}": 1 for r in frame.loc[bad, "skip_reason"]})
        frame = frame[~bad]
    study = frame["study_id"].astype(str) if "study_id" in frame.columns else frame["image_id"].astype(str)
    frame = frame.assign(_study=study.to_numpy())
    if "view" in frame.columns:  # frontal first, then image id: one deterministic image per study
        frame = frame.assign(_lateral=frame["view"].astype(str).str.upper().str.startswith("LAT"))
        frame = frame.sort_values(["_study", "_lateral", "image_id"])
    else:
        frame = frame.sort_values(["_study", "image_id"])
    firsts = frame.drop_duplicates("_study").reset_index(drop=True)
    counts["extra images of a study left out (one image per study)"] += len(frame) - len(firsts)
    labels = firsts[list(OBSERVATIONS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    abnormal = np.array([not is_normal(row) for row in labels], dtype=bool)
    counts["normal study left out"] += int((~abnormal).sum())
    chosen = firsts[abnormal].reset_index(drop=True)
    sentence_lists = [_sentences_of(v) for v in chosen["sentences"]]
    # The generator of study i is seeded by (seed, position in the sorted study list): reproducible.
    negatives, events = make_hard_negatives(sentence_lists, labels[abnormal], seed=seed,
                                            indices=list(range(len(chosen))),
                                            labeler=get_labeler(labeler_backend))
    entries: dict[str, dict] = {}
    for row, sentences, neg in zip(chosen.itertuples(index=False), sentence_lists, negatives):
        if neg.failure is not None or neg.text_negated is None or neg.text_removed is None:
            counts[f"no hard negative: {neg.failure}"] += 1
            continue
        entries[str(row.image_id)] = {"report": " ".join(sentences), "negation": neg.text_negated,
                                      "omitted": neg.text_removed, "chosen": neg.entity}
    for key, n in events.items():
        if key.startswith("failed"):
            continue  # already counted per study above
        counts[f"hard-negative generator: {key}"] += n
    counts = Counter({k: v for k, v in counts.items() if v})
    return {source: entries}, counts


def score_benchmark(store, benchmark: dict[str, dict[str, dict]], frame: pd.DataFrame,
                    manifest: str | Path = "manifest", benchmark_path: str = "") -> dict:
    """Score tasks A and B for every source dataset in the benchmark. ``frame`` maps image ids to image
    paths (its ``image_id`` and ``image_path`` columns; any split)."""
    paths = dict(zip(frame["image_id"].astype(str), frame["image_path"]))
    skipped: Counter = Counter()
    per_source: dict[str, dict] = {}
    rows = []
    all_decisions = []
    for source, entries in benchmark.items():
        ids = [i for i in entries if i in paths]
        if len(ids) < len(entries):
            skipped[f"{source}: image id not in the manifest"] += len(entries) - len(ids)
        if not ids:
            continue
        img, ok, fail = store.image_embeddings([paths[i] for i in ids], manifest)
        skipped.update({f"{source}: {k}": v for k, v in fail.items()})
        ids = [i for i, good in zip(ids, ok) if good]
        img = img[ok]
        if not ids:
            continue
        r = store.text_embeddings([entries[i]["report"] for i in ids], desc="encoding reports")
        rn = store.text_embeddings([entries[i]["negation"] for i in ids], desc="encoding r^n")
        rr = store.text_embeddings([entries[i]["omitted"] for i in ids], desc="encoding r^r")
        task_a = metrics.pairwise_preference(img, r, rn)
        task_b = metrics.pairwise_preference(img, r, rr)
        by_entity: dict[str, dict] = {}
        entities = [str(entries[i].get("chosen", "")) for i in ids]
        for ent in sorted(set(entities)):
            m = np.array([e == ent for e in entities])
            by_entity[ent] = {"A": float(task_a[m].mean()), "B": float(task_b[m].mean()), "n": int(m.sum())}
        per_source[source] = {"A": float(task_a.mean()), "B": float(task_b.mean()), "n": len(ids),
                              "per_entity": by_entity}
        rows.append([source, per_source[source]["A"], per_source[source]["B"], len(ids)])
        all_decisions.append((task_a, task_b))
    if not per_source:
        raise ClinclipError(f"no CXR-Align image of {benchmark_path or 'the benchmark'} was found in {manifest} "
                            f"(matched on image_id): {dict(skipped)}")
    a = np.concatenate([d[0] for d in all_decisions])
    b = np.concatenate([d[1] for d in all_decisions])
    headline = {"A": float(a.mean()), "B": float(b.mean()), "n": int(len(a))}
    if len(per_source) > 1:
        rows.append(["all", headline["A"], headline["B"], int(len(a))])
    return {
        "task": "cxr-align", "dataset": "+".join(per_source), "benchmark": benchmark_path,
        "metrics": headline, "per_source": per_source,
        "table": {"columns": ["source", "A (r vs r^n)", "B (r vs r^r)", "n (count)"], "rows": rows},
        "skipped": dict(skipped), "notes": [],
    }
