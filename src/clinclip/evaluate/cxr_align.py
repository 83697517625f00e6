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

Two extra entry fields, written by the builder and ignored by other readers: ``inserted`` (the negation
sentence put into r^n, for measuring whether its wording occurs in training reports) and, where the images
come with counterfactuals (the phantom), ``counterfactual_image`` (the same study without the chosen
entity). With the latter the scorer adds CF-order and CF-pair (``clinclip.evaluate.counterfactual``).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from clinclip.errors import ClinclipError
from clinclip.evaluate import metrics
from clinclip.evaluate.counterfactual import counterfactual_scores
from clinclip.files import read_mapping, write_text_atomic
from clinclip.observations import OBSERVATIONS
from clinclip.text.hardneg import is_normal, make_hard_negatives
from clinclip.text.labeler import get_labeler

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
    return write_text_atomic(path, json.dumps(benchmark, indent=1, ensure_ascii=False))


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
        inserted = [x for x in neg.sentences_negated if x not in set(sentences)]
        entries[str(row.image_id)] = {"report": " ".join(sentences), "negation": neg.text_negated,
                                      "omitted": neg.text_removed, "chosen": neg.entity,
                                      "inserted": " ".join(inserted)}
    for key, n in events.items():
        if key.startswith("failed"):
            continue  # already counted per study above
        counts[f"hard-negative generator: {key}"] += n
    counts = Counter({k: v for k, v in counts.items() if v})
    return {source: entries}, counts


def _normalised(sentence: str) -> str:
    return " ".join(str(sentence).lower().split())


def inserted_sentence_overlap(benchmark: dict[str, dict[str, dict]], train_frame: pd.DataFrame) -> dict:
    """Share of triplets whose inserted negation sentence occurs (case and spacing aside) among the
    sentences of some training report. Low overlap hands a text-only model the answer: r^n is then the
    text with the sentence that training reports never contain."""
    known = {_normalised(s) for value in train_frame.get("sentences", []) for s in _sentences_of(value)}
    hits: dict[str, list[bool]] = {}
    for entries in benchmark.values():
        for entry in entries.values():
            if entry.get("inserted"):
                hits.setdefault(str(entry.get("chosen", "")), []).append(_normalised(entry["inserted"]) in known)
    every = [h for values in hits.values() for h in values]
    return {"share": float(np.mean(every)) if every else float("nan"), "n": len(every),
            "per_entity": {k: float(np.mean(v)) for k, v in sorted(hits.items())}}


def attach_counterfactuals(benchmark: dict[str, dict[str, dict]], counterfactuals: pd.DataFrame) -> int:
    """Add ``counterfactual_image`` to each entry whose (image id, chosen entity) has a counterfactual
    image in ``counterfactuals`` (columns ``dicom_id``, ``entity``, ``image_path``); returns how many."""
    paths = {(str(d), str(e)): str(p) for d, e, p in
             zip(counterfactuals["dicom_id"], counterfactuals["entity"], counterfactuals["image_path"])}
    attached = 0
    for entries in benchmark.values():
        for image_id, entry in entries.items():
            path = paths.get((str(image_id), str(entry.get("chosen", ""))))
            if path is not None:
                entry["counterfactual_image"] = path
                attached += 1
    return attached


def _score_counterfactuals(store, entries: dict, ids: list[str], img: np.ndarray, r, rn, rr,
                           manifest, skipped: Counter) -> dict | None:
    """CF-order/CF-pair over the scored triplets that have a counterfactual image (None if none has)."""
    rows = [k for k, i in enumerate(ids) if entries[i].get("counterfactual_image")]
    if not rows:
        return None
    cf, ok, fail = store.image_embeddings([entries[ids[k]]["counterfactual_image"] for k in rows], manifest)
    skipped.update({f"counterfactual image: {k}": v for k, v in fail.items()})
    rows = [k for k, good in zip(rows, ok) if good]
    if not rows:
        return None
    return counterfactual_scores(img[rows], cf[ok], r[rows], rn[rows], rr[rows],
                                 [str(entries[ids[k]].get("chosen", "")) for k in rows])


def score_benchmark(store, benchmark: dict[str, dict[str, dict]], frame: pd.DataFrame,
                    manifest: str | Path = "manifest", benchmark_path: str = "") -> dict:
    """Score tasks A and B for every source dataset in the benchmark. ``frame`` maps image ids to image
    paths (its ``image_id`` and ``image_path`` columns; any split)."""
    paths = dict(zip(frame["image_id"].astype(str), frame["image_path"]))
    skipped: Counter = Counter()
    per_source: dict[str, dict] = {}
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
        counterfactual = _score_counterfactuals(store, entries, ids, img, r, rn, rr, manifest, skipped)
        if counterfactual is not None:
            per_source[source]["counterfactual"] = counterfactual
        all_decisions.append((task_a, task_b))
    if not per_source:
        raise ClinclipError(f"no CXR-Align image of {benchmark_path or 'the benchmark'} was found in {manifest} "
                            f"(matched on image_id): {dict(skipped)}")
    a = np.concatenate([d[0] for d in all_decisions])
    b = np.concatenate([d[1] for d in all_decisions])
    headline = {"A": float(a.mean()), "B": float(b.mean()), "n": int(len(a))}
    cf_sources = [p["counterfactual"] for p in per_source.values() if "counterfactual" in p]
    if cf_sources:  # pooled over sources, weighted by their counterfactual triplets
        n_cf = sum(c["n"] for c in cf_sources)
        for key in ("cf_order", "cf_pair", "cf_order_b", "cf_pair_b"):
            headline[key] = float(sum(c[key] * c["n"] for c in cf_sources) / n_cf)
        headline["cf_n"] = n_cf
    columns = ["source", "A (r vs r^n)", "B (r vs r^r)", "n (count)"]
    cf_columns = [("cf_order", "CF-order A"), ("cf_pair", "CF-pair A (chance 25)"), ("cf_order_b", "CF-order B"),
                  ("cf_pair_b", "CF-pair B")]
    if cf_sources:
        columns += [label for _, label in cf_columns] + ["n counterfactual (count)"]

    def row(name: str, values: dict, cf: dict | None) -> list:
        cells = [name, values["A"], values["B"], values["n"]]
        if cf_sources:
            cells += [cf[k] for k, _ in cf_columns] + [cf["n"]] if cf else [None] * (len(cf_columns) + 1)
        return cells

    rows = [row(source, p, p.get("counterfactual")) for source, p in per_source.items()]
    if len(per_source) > 1:
        rows.append(row("all", headline, {**headline, "n": headline.get("cf_n", 0)} if cf_sources else None))
    return {
        "task": "cxr-align", "dataset": "+".join(per_source), "benchmark": benchmark_path,
        "metrics": headline, "per_source": per_source,
        "table": {"columns": columns, "rows": rows},
        "skipped": dict(skipped), "notes": [],
    }
