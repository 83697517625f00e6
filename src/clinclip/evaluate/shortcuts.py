"""Shortcut controls for CXR-Align: how much of tasks A and B a model gets without reading the image.

Three controls, for any model and any CXR-Align file (``score_benchmark`` adds them to every result):

- **Image-blind score**: A and B recomputed with every image embedding replaced by the mean embedding of
  the images scored. A model whose A barely moves decides from the text alone.
- **Swap control**: each triplet re-scored with the image of another study in which the chosen entity is
  negative by the manifest's labels (0 or blank; uncertain -1 is not negative), of the same view where
  one exists (else any view; counted). ``swap_delta_a`` = A(original images) - A(swapped images) over the
  triplets that found a partner. A model that ignores the image gets 0; one that reads it, up to A.
- **Text-only baselines**: "the longer text wins" (strictly; a tie is wrong) and a bag-of-words
  classifier trained on the train split's r (``text``) vs r^n (``text_negated``); task A right when it
  scores r above r^n, task B when it scores r above r^r. Neither sees an image.

Every function works on precomputed embeddings (L2-normalised rows) and texts, so a caller with its own
embeddings (the demo) uses them directly: ``control_decisions`` gives one value per triplet (NaN where a
control does not apply), ``summarise_controls`` the headline numbers of any subset of triplets, and
``shortcut_controls`` both in one call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from clinclip.evaluate.metrics import pairwise_preference
from clinclip.observations import LABEL_POSITIVE, LABEL_UNCERTAIN, OBSERVATIONS

if TYPE_CHECKING:  # only a type: cxr_align imports this module
    from clinclip.evaluate.cxr_align import AlignTriplets

NO_PARTNER = -1


@dataclass
class SwapPool:
    """Candidate images of the swap control, one per study: embeddings (P x D, L2-normalised), labels
    (P x 14, OBSERVATIONS order: 1 positive, 0 negative, -1 uncertain, NaN blank), views and study ids."""

    embeddings: np.ndarray
    labels: np.ndarray
    views: np.ndarray
    studies: np.ndarray

    def __post_init__(self):
        self.embeddings = np.asarray(self.embeddings, dtype=np.float32)
        self.labels = np.asarray(self.labels, dtype=np.float64)
        self.views = np.asarray(self.views, dtype=object).astype(str)
        self.studies = np.asarray(self.studies, dtype=object).astype(str)


@dataclass
class SwapDraw:
    """The partner of each triplet: a row of the pool (``NO_PARTNER`` when none), and whether it was
    found only by dropping the view match."""

    partner: np.ndarray
    view_fallback: np.ndarray


def draw_swap_partners(chosen: Sequence[str], views: Sequence[str], studies: Sequence[str], pool: SwapPool,
                       rng: np.random.Generator) -> SwapDraw:
    """For each triplet, a pool study other than its own in which the chosen entity is negative (0 or
    blank), drawn uniformly among those of the same view, else among all views. Deterministic for a
    given generator state: groups are visited in sorted (entity, view) order."""
    chosen = np.asarray(chosen, dtype=object).astype(str)
    views = np.asarray(views, dtype=object).astype(str)
    studies = np.asarray(studies, dtype=object).astype(str)
    partner = np.full(len(chosen), NO_PARTNER, dtype=np.int64)
    fallback = np.zeros(len(chosen), dtype=bool)
    negative = ~np.isin(pool.labels, (LABEL_POSITIVE, LABEL_UNCERTAIN))  # NaN (not mentioned) counts as negative
    own = pd.Series(np.arange(len(pool.studies))).groupby(pool.studies).first()
    own_row = own.reindex(studies).fillna(NO_PARTNER).to_numpy(dtype=np.int64)
    column = {name: i for i, name in enumerate(OBSERVATIONS)}
    groups = pd.DataFrame({"entity": chosen, "view": views}).groupby(["entity", "view"], sort=True).indices
    for (entity, view), members in sorted(groups.items()):
        if entity not in column:
            continue
        candidates = negative[:, column[entity]]
        same_view = np.flatnonzero(candidates & (pool.views == view))
        partner[members] = _draw(same_view, own_row[members], rng)
        missing = members[partner[members] == NO_PARTNER]
        if len(missing):
            partner[missing] = _draw(np.flatnonzero(candidates), own_row[missing], rng)
            fallback[missing] = partner[missing] != NO_PARTNER
    return SwapDraw(partner, fallback)


def _draw(candidates: np.ndarray, own_rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One candidate per member, uniformly, never the member's own row (``candidates`` sorted)."""
    out = np.full(len(own_rows), NO_PARTNER, dtype=np.int64)
    if len(candidates) == 0:
        return out
    position = np.searchsorted(candidates, own_rows)
    own_is_candidate = candidates[np.minimum(position, len(candidates) - 1)] == own_rows
    available = len(candidates) - own_is_candidate.astype(np.int64)
    pick = rng.integers(0, np.maximum(available, 1))
    pick += own_is_candidate & (pick >= position)  # skip over the member's own row
    has = available > 0
    out[has] = candidates[pick[has]]
    return out


def _lengths(texts: Sequence[str]) -> np.ndarray:
    return pd.Series(list(texts), dtype=object).astype(str).str.len().to_numpy()


def longer_text_wins(right_texts: Sequence[str], wrong_texts: Sequence[str]) -> np.ndarray:
    """True where the right text has strictly more characters than the wrong one."""
    return _lengths(right_texts) > _lengths(wrong_texts)


def fit_bag_of_words(originals: Sequence[str], negated: Sequence[str], seed: int = 0):
    """A text-only classifier of "original report" (1) vs "hard negative r^n" (0): word and word-pair
    counts and a logistic regression (scikit-learn). Train it on the train split only."""
    texts = [str(t) for t in originals] + [str(t) for t in negated]
    target = np.r_[np.ones(len(originals), dtype=int), np.zeros(len(negated), dtype=int)]
    model = make_pipeline(CountVectorizer(ngram_range=(1, 2)),
                          LogisticRegression(max_iter=2000, random_state=seed))
    return model.fit(texts, target)


def bag_of_words_prefers(classifier, right_texts: Sequence[str], wrong_texts: Sequence[str]) -> np.ndarray:
    """True where the classifier scores the right text as more "original" than the wrong one (strictly)."""
    right = classifier.decision_function([str(t) for t in right_texts])
    wrong = classifier.decision_function([str(t) for t in wrong_texts])
    return right > wrong


def control_decisions(image_emb: np.ndarray, text_emb_r: np.ndarray, text_emb_rn: np.ndarray,
                      text_emb_rr: np.ndarray, triplets: "AlignTriplets", pool: SwapPool | None,
                      rng: np.random.Generator, text_classifier=None,
                      mean_image: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-triplet outcomes (float: 1 right, 0 wrong, NaN where the control does not apply) of tasks A
    and B and of every control. Rows of the embeddings align with ``triplets`` (its ``report``,
    ``negation``, ``omitted``, ``chosen``, ``view`` and ``study_id``). ``pool``: the swap candidates
    (None: no swap control). ``mean_image``: the blind image (default: the mean of ``image_emb``)."""
    img = np.asarray(image_emb, dtype=np.float32)
    n = len(img)
    out: dict[str, np.ndarray] = {
        "a": pairwise_preference(img, text_emb_r, text_emb_rn).astype(np.float64),
        "b": pairwise_preference(img, text_emb_r, text_emb_rr).astype(np.float64),
    }
    blind = img.mean(axis=0) if mean_image is None else np.asarray(mean_image, dtype=np.float32)
    blind = np.broadcast_to(blind, img.shape)
    out["a_blind"] = pairwise_preference(blind, text_emb_r, text_emb_rn).astype(np.float64)
    out["b_blind"] = pairwise_preference(blind, text_emb_r, text_emb_rr).astype(np.float64)
    nan = np.full(n, np.nan)
    out["a_swapped"], out["b_swapped"], out["swap_view_fallback"] = nan.copy(), nan.copy(), nan.copy()
    if pool is not None and len(pool.embeddings):
        draw = draw_swap_partners(triplets.chosen, triplets.view, triplets.study_id, pool, rng)
        has = draw.partner != NO_PARTNER
        swapped = pool.embeddings[draw.partner[has]]
        out["a_swapped"][has] = pairwise_preference(swapped, np.asarray(text_emb_r)[has],
                                                    np.asarray(text_emb_rn)[has])
        out["b_swapped"][has] = pairwise_preference(swapped, np.asarray(text_emb_r)[has],
                                                    np.asarray(text_emb_rr)[has])
        out["swap_view_fallback"][has] = draw.view_fallback[has]
    out["a_longer_text"] = longer_text_wins(triplets.report, triplets.negation).astype(np.float64)
    out["b_longer_text"] = longer_text_wins(triplets.report, triplets.omitted).astype(np.float64)
    if text_classifier is not None:
        out["a_bag_of_words"] = bag_of_words_prefers(text_classifier, triplets.report, triplets.negation) * 1.0
        out["b_bag_of_words"] = bag_of_words_prefers(text_classifier, triplets.report, triplets.omitted) * 1.0
    else:
        out["a_bag_of_words"], out["b_bag_of_words"] = nan.copy(), nan.copy()
    return out


def _mean(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else None


def summarise_controls(decisions: dict[str, np.ndarray], mask: np.ndarray | None = None) -> dict:
    """Headline numbers of ``control_decisions`` over the triplets in ``mask`` (all by default); None
    where a control was not computed. Keys: ``cxr_align_a``/``_b`` and their ``_blind`` versions,
    ``swap_a_original``/``swap_a_swapped``/``swap_delta_a`` (and ``_b``) over the triplets with a swap
    partner, ``swap_n``, ``swap_view_fallback`` (partners of another view), ``swap_no_partner``,
    ``text_longer_a``/``_b`` and ``text_bag_of_words_a``/``_b``."""
    d = decisions if mask is None else {k: v[np.asarray(mask, dtype=bool)] for k, v in decisions.items()}
    swapped = ~np.isnan(d["a_swapped"])
    result = {"cxr_align_a": _mean(d["a"]), "cxr_align_b": _mean(d["b"]),
              "cxr_align_a_blind": _mean(d["a_blind"]), "cxr_align_b_blind": _mean(d["b_blind"]),
              "swap_n": int(swapped.sum()), "swap_no_partner": int((~swapped).sum()),
              "swap_view_fallback": int(np.nansum(d["swap_view_fallback"]))}
    for task in ("a", "b"):
        original, after = _mean(d[task][swapped]), _mean(d[f"{task}_swapped"])
        result[f"swap_{task}_original"] = original
        result[f"swap_{task}_swapped"] = after
        result[f"swap_delta_{task}"] = None if after is None else original - after
    for task in ("a", "b"):
        result[f"text_longer_{task}"] = _mean(d[f"{task}_longer_text"])
        result[f"text_bag_of_words_{task}"] = _mean(d[f"{task}_bag_of_words"])
    return result


def shortcut_controls(image_emb: np.ndarray, text_emb_r: np.ndarray, text_emb_rn: np.ndarray,
                      text_emb_rr: np.ndarray, triplets: "AlignTriplets", pool: SwapPool | None,
                      rng: np.random.Generator, text_classifier=None) -> dict:
    """``summarise_controls`` of ``control_decisions`` over all triplets (see both)."""
    return summarise_controls(control_decisions(image_emb, text_emb_r, text_emb_rn, text_emb_rr, triplets,
                                                pool, rng, text_classifier))
