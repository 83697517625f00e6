"""CXR-Align (paper section 3, Table 6): builder and scorer.

File format -- the published benchmark's (PhysioNet), read and written unchanged: one JSON object whose
top-level keys name the source dataset (``"mimic"``, ``"chexpert"``, ``"openi"``), each mapping image ids
to ``{"report": r, "negation": r^n, "omitted": r^r, "chosen": entity}``. Extra fields are kept on read.

Builder: from a prepared test manifest, abnormal studies only (a finding positive), one image per study
(the first frontal image by image id), one positive entity chosen per study with a seeded generator, r^r
and r^n made by ``clinclip.text.hardneg.make_hard_negatives`` (the same code as training's hard
negatives, verified by the labeler). Studies for which no hard negative can be made are counted.

Scorer: task A right when sim(I, r) > sim(I, r^n); task B right when sim(I, r) > sim(I, r^r) (strictly;
a tie is wrong). Accuracy per source dataset and per chosen entity, each beside the shortcut controls of
``clinclip.evaluate.shortcuts`` (image-blind score, swap control, text-only baselines).

Two extra entry fields, written by the builder and ignored by other readers: ``inserted`` (the negation
sentence put into r^n, for measuring whether its wording occurs in training reports) and, where the images
come with counterfactuals (the phantom), ``counterfactual_image`` (the same study without the chosen
entity). With the latter the scorer adds CF-order and CF-pair (``clinclip.evaluate.counterfactual``).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

from clinclip.errors import ClinclipError
from clinclip.evaluate.confidence import Bootstrap
from clinclip.evaluate.counterfactual import counterfactual_scores
from clinclip.evaluate.shortcuts import SwapPool, control_decisions, fit_bag_of_words, summarise_controls
from clinclip.files import read_mapping, write_text_atomic
from clinclip.manifest import drop_skipped, read_manifest, select_split
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


def one_image_per_study(frame: pd.DataFrame) -> pd.DataFrame:
    """The first frontal image of each study (by image id; any view when the study has no frontal one),
    sorted by study. Studies are ``study_id`` (the image id where the manifest has none)."""
    study = frame["study_id"].astype(str) if "study_id" in frame.columns else frame["image_id"].astype(str)
    frame = frame.assign(_study=study.to_numpy())
    if "view" in frame.columns:  # frontal first, then image id: one deterministic image per study
        frame = frame.assign(_lateral=frame["view"].astype(str).str.upper().str.startswith("LAT"))
        frame = frame.sort_values(["_study", "_lateral", "image_id"]).drop(columns="_lateral")
    else:
        frame = frame.sort_values(["_study", "image_id"])
    return frame.drop_duplicates("_study").drop(columns="_study").reset_index(drop=True)


def build_benchmark(frame: pd.DataFrame, source: str = "mimic", seed: int = 0, labeler_backend: str = "rules",
                    manifest: str | Path = "manifest", labeler_options: dict | None = None
                    ) -> tuple[dict[str, dict[str, dict]], Counter]:
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
    firsts = one_image_per_study(frame)
    counts["extra images of a study left out (one image per study)"] += len(frame) - len(firsts)
    labels = firsts[list(OBSERVATIONS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    abnormal = np.array([not is_normal(row) for row in labels], dtype=bool)
    counts["normal study left out"] += int((~abnormal).sum())
    chosen = firsts[abnormal].reset_index(drop=True)
    sentence_lists = [_sentences_of(v) for v in chosen["sentences"]]
    # The generator of study i is seeded by (seed, position in the sorted study list): reproducible.
    negatives, events = make_hard_negatives(sentence_lists, labels[abnormal], seed=seed,
                                            indices=list(range(len(chosen))),
                                            labeler=get_labeler(labeler_backend, **(labeler_options or {})))
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


def _score_counterfactuals(store, triplets: "AlignTriplets", img: np.ndarray, r, rn, rr, manifest,
                           skipped: Counter) -> dict | None:
    """CF-order/CF-pair over the scored triplets that have a counterfactual image (None if none has)."""
    rows = np.flatnonzero(triplets.counterfactual_image != "")
    if not len(rows):
        return None
    cf, ok, fail = store.image_embeddings(list(triplets.counterfactual_image[rows]), manifest)
    skipped.update({f"counterfactual image: {k}": v for k, v in fail.items()})
    rows = rows[ok]
    if not len(rows):
        return None
    return counterfactual_scores(img[rows], cf[ok], r[rows], rn[rows], rr[rows], list(triplets.chosen[rows]))


@dataclass
class AlignTriplets:
    """The triplets of a CXR-Align file whose image is in the manifest, as aligned arrays (one row per
    triplet, in file order): source dataset, image id and path, study id, view ('' where the manifest has
    no view column), r, r^n, r^r, the chosen entity ('' where the file names none) and the counterfactual
    image path ('' where the entry has none)."""

    source: np.ndarray
    image_id: np.ndarray
    image_path: np.ndarray
    study_id: np.ndarray
    view: np.ndarray
    report: np.ndarray
    negation: np.ndarray
    omitted: np.ndarray
    chosen: np.ndarray
    counterfactual_image: np.ndarray

    def __len__(self) -> int:
        return len(self.image_id)

    def subset(self, mask) -> "AlignTriplets":
        return replace(self, **{f.name: getattr(self, f.name)[mask] for f in fields(self)})

    @classmethod
    def from_benchmark(cls, benchmark: dict[str, dict[str, dict]], frame: pd.DataFrame
                       ) -> tuple["AlignTriplets", Counter]:
        """The triplets whose image id is in ``frame`` (``image_id``, ``image_path``; ``study_id`` and
        ``view`` when present), and the count of those that are not, by source."""
        rows = frame.assign(image_id=frame["image_id"].astype(str)).drop_duplicates("image_id").set_index("image_id")
        studies = rows["study_id"].astype(str) if "study_id" in rows.columns else rows.index.to_series()
        views = rows["view"].fillna("").astype(str) if "view" in rows.columns else pd.Series("", index=rows.index)
        skipped: Counter = Counter()
        records = []
        for source, entries in benchmark.items():
            found = [i for i in entries if i in rows.index]
            if len(found) < len(entries):
                skipped[f"{source}: image id not in the manifest"] += len(entries) - len(found)
            records += [(source, i, rows.at[i, "image_path"], studies[i], views[i], entries[i]["report"],
                         entries[i]["negation"], entries[i]["omitted"], str(entries[i].get("chosen") or ""),
                         str(entries[i].get("counterfactual_image") or ""))
                        for i in found]
        columns = list(zip(*records)) if records else [()] * len(fields(cls))
        return cls(*(np.asarray(c, dtype=object) for c in columns)), skipped


def swap_pool(store, frame: pd.DataFrame, manifest: str | Path = "manifest") -> tuple[SwapPool | None, Counter,
                                                                                     list[str]]:
    """The swap control's candidates: one image per study of ``frame`` (as the builder picks it), with
    its labels and view. None (and a note why) when the manifest has no label columns."""
    notes: list[str] = []
    missing = [c for c in OBSERVATIONS if c not in frame.columns]
    if missing:
        return None, Counter(), [f"swap control not computed: {manifest} has no label column(s) {missing}"]
    if "view" not in frame.columns:
        notes.append(f"swap control: {manifest} has no 'view' column; partners are of any view")
    firsts = one_image_per_study(frame)
    emb, ok, fail = store.image_embeddings(list(firsts["image_path"]), manifest)
    firsts = firsts[ok]
    labels = firsts[list(OBSERVATIONS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    study = firsts["study_id"] if "study_id" in firsts.columns else firsts["image_id"]
    view = firsts["view"].fillna("") if "view" in firsts.columns else pd.Series("", index=firsts.index)
    skipped = Counter({f"swap pool: {k}": v for k, v in fail.items()})
    return SwapPool(emb[ok], labels, view.to_numpy(), study.to_numpy()), skipped, notes


def text_classifier_from_manifest(path: str | Path, seed: int = 0):
    """The bag-of-words baseline fitted on the train split of a prepared manifest: ``text`` (r) against
    ``text_negated`` (r^n) of the rows that have one. Only train rows are used, so the manifest must
    have a ``split`` column."""
    frame = read_manifest(path)
    for column in ("split", "text", "text_negated"):
        if column not in frame.columns:
            raise ClinclipError(f"{path}: no '{column}' column; the text-only baseline needs a prepared "
                                "manifest (clinclip text prepare) with a train split")
    frame, _ = drop_skipped(select_split(frame, "train", path))
    frame = frame[frame["text"].notna() & frame["text_negated"].notna()]
    if frame.empty:
        raise ClinclipError(f"{path}: no train row has both 'text' and 'text_negated'")
    return fit_bag_of_words(frame["text"].astype(str).tolist(), frame["text_negated"].astype(str).tolist(),
                            seed=seed)


def _shown(summary: dict) -> list:
    return [summary[k] for k in ("A", "A_ci", "B", "B_ci", "cxr_align_a_blind", "cxr_align_b_blind",
                                 "swap_delta_a", "swap_delta_b", "text_longer_a", "text_longer_b",
                                 "text_bag_of_words_a", "text_bag_of_words_b")]


CF_KEYS = {"cf_order": "CF-order A", "cf_pair": "CF-pair A (chance 25)", "cf_order_b": "CF-order B",
           "cf_pair_b": "CF-pair B"}
TABLE_COLUMNS = ["source", "A (r vs r^n)", "A (r vs r^n) 95% CI", "B (r vs r^r)", "B (r vs r^r) 95% CI",
                 "A image-blind", "B image-blind", "swap ΔA", "swap ΔB",
                 "longer-text A", "longer-text B", "bag-of-words A", "bag-of-words B", "n (count)"]


def score_benchmark(store, benchmark: dict[str, dict[str, dict]], frame: pd.DataFrame,
                    manifest: str | Path = "manifest", benchmark_path: str = "",
                    swap_frame: pd.DataFrame | None = None, text_classifier=None, seed: int = 0,
                    ci_seed: int = 0) -> dict:
    """Score tasks A and B for every source dataset in the benchmark, with the shortcut controls.
    ``frame`` maps image ids to image paths (its ``image_id`` and ``image_path`` columns; any split).
    ``swap_frame``: the studies whose images the swap control draws (the test split; None: no swap
    control). ``text_classifier``: a fitted bag-of-words baseline (``text_classifier_from_manifest``;
    None: not computed). ``seed`` seeds the swap draw.

    ``metrics`` holds ``A``, ``B``, ``n`` and every key of ``shortcuts.summarise_controls`` (fractions;
    ``swap_delta_*`` differences in [-1, 1]); ``per_source`` the same per source, with ``per_entity``.
    Entries with a ``counterfactual_image`` add CF-order/CF-pair (``cf_*`` keys; ``counterfactual`` per
    source). ``A_ci`` / ``B_ci``: 95 % bootstrap intervals (1,000 resamples of the triplets, ``ci_seed``)."""
    triplets, skipped = AlignTriplets.from_benchmark(benchmark, frame)
    notes: list[str] = []
    images = np.zeros((len(triplets), 0), dtype=np.float32)
    keep = np.zeros(len(triplets), dtype=bool)
    for source in dict.fromkeys(triplets.source):
        rows = np.flatnonzero(triplets.source == source)
        emb, ok, fail = store.image_embeddings(list(triplets.image_path[rows]), manifest)
        skipped.update({f"{source}: {k}": v for k, v in fail.items()})
        if images.shape[1] == 0:
            images = np.full((len(triplets), emb.shape[1]), np.nan, dtype=np.float32)
        images[rows[ok]] = emb[ok]
        keep[rows[ok]] = True
    triplets, images = triplets.subset(keep), images[keep]
    if not len(triplets):
        raise ClinclipError(f"no CXR-Align image of {benchmark_path or 'the benchmark'} was found in {manifest} "
                            f"(matched on image_id): {dict(skipped)}")
    r = store.text_embeddings(list(triplets.report), desc="encoding reports")
    rn = store.text_embeddings(list(triplets.negation), desc="encoding r^n")
    rr = store.text_embeddings(list(triplets.omitted), desc="encoding r^r")
    pool = None
    if swap_frame is not None:
        pool, pool_skipped, pool_notes = swap_pool(store, swap_frame, manifest)
        skipped.update(pool_skipped)
        notes += pool_notes
    else:
        notes.append("swap control not computed: no swap pool given")
    if text_classifier is None:
        notes.append("bag-of-words baseline not computed: pass the prepared training manifest "
                     "(clinclip eval cxr-align --train-manifest)")
    decisions = control_decisions(images, r, rn, rr, triplets, pool, np.random.default_rng(seed), text_classifier)

    boot = Bootstrap.draw(len(triplets), seed=ci_seed)

    def summary(mask) -> dict:
        numbers = summarise_controls(decisions, mask)
        return {"A": numbers.pop("cxr_align_a"), "A_ci": boot.accuracy_ci(decisions["a"], mask),
                "B": numbers.pop("cxr_align_b"), "B_ci": boot.accuracy_ci(decisions["b"], mask),
                "n": int(np.sum(mask)), **numbers}

    per_source: dict[str, dict] = {}
    for source in dict.fromkeys(triplets.source):
        in_source = triplets.source == source
        per_source[source] = {**summary(in_source), "per_entity": {
            ent: summary(in_source & (triplets.chosen == ent)) for ent in sorted(set(triplets.chosen[in_source]))}}
        counterfactual = _score_counterfactuals(store, triplets.subset(in_source), images[in_source], r[in_source],
                                                rn[in_source], rr[in_source], manifest, skipped)
        if counterfactual is not None:
            per_source[source]["counterfactual"] = counterfactual
    headline = summary(np.ones(len(triplets), dtype=bool))
    cf_sources = [p["counterfactual"] for p in per_source.values() if "counterfactual" in p]
    if cf_sources:  # pooled over sources, weighted by their counterfactual triplets
        n_cf = sum(c["n"] for c in cf_sources)
        for key in CF_KEYS:
            headline[key] = float(sum(c[key] * c["n"] for c in cf_sources) / n_cf)
        headline["cf_n"] = n_cf
    columns = list(TABLE_COLUMNS)
    if cf_sources:
        columns += list(CF_KEYS.values()) + ["n counterfactual (count)"]

    def row(name: str, values: dict, cf: dict | None) -> list:
        cells = [name, *_shown(values), values["n"]]
        if cf_sources:
            cells += [cf[k] for k in CF_KEYS] + [cf["n"]] if cf else [None] * (len(CF_KEYS) + 1)
        return cells

    rows = [row(source, p, p.get("counterfactual")) for source, p in per_source.items()]
    if len(per_source) > 1:
        rows.append(row("all", headline, {**headline, "n": headline.get("cf_n", 0)} if cf_sources else None))
    if headline["swap_view_fallback"]:
        notes.append(f"swap control: {headline['swap_view_fallback']} partner(s) of another view (none of the "
                     "same view had the entity negative)")
    if pool is not None and headline["swap_no_partner"]:
        notes.append(f"swap control: {headline['swap_no_partner']} triplet(s) without a partner (no study "
                     "with the chosen entity negative), left out of the swap numbers")
    return {
        "task": "cxr-align", "dataset": "+".join(per_source), "benchmark": benchmark_path,
        "metrics": headline, "per_source": per_source, "confidence_intervals": boot.describe(),
        "table": {"columns": columns, "rows": rows},
        "skipped": dict(skipped), "notes": notes,
    }
