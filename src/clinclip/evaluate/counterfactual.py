"""Counterfactual CXR-Align: is negation decided from the image?

For a triplet (I, r, r^n) whose chosen entity is present in I, let I' be the same study rendered without
that entity (the phantom writes such images; see ``clinclip.phantom.generate``). With
Δ(x) = sim(x, r) − sim(x, r^n):

- **CF-order**: Δ(I) > Δ(I'). The image showing the finding prefers the affirmed report more than the same
  image without it. Chance 50 %; a model that ignores the image has Δ(I) = Δ(I') and scores 0 (ties are
  wrong).
- **CF-pair**: Δ(I) > 0 and Δ(I') < 0. Both decisions right. Chance 25 %; a text-only model scores 0
  (Δ(I) = Δ(I') cannot be both > 0 and < 0).

The same two with r^r in place of r^n (task B's omission) are ``cf_order_b`` and ``cf_pair_b``.
Plain numpy on L2-normalised embeddings, like ``clinclip.evaluate.metrics``.
"""

from __future__ import annotations

import numpy as np

CHANCE = {"cf_order": 0.5, "cf_pair": 0.25}


def preference_margin(image_embeds: np.ndarray, right_embeds: np.ndarray, wrong_embeds: np.ndarray) -> np.ndarray:
    """Δ per row: sim(image_i, right_i) − sim(image_i, wrong_i) (row-aligned tables)."""
    img = np.asarray(image_embeds, dtype=np.float64)
    return (img * np.asarray(right_embeds, dtype=np.float64)).sum(1) - (img * np.asarray(wrong_embeds, dtype=np.float64)).sum(1)


def counterfactual_decisions(margin: np.ndarray, margin_cf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(CF-order, CF-pair) decisions per triplet from Δ(I) and Δ(I')."""
    margin, margin_cf = np.asarray(margin, dtype=np.float64), np.asarray(margin_cf, dtype=np.float64)
    return margin > margin_cf, (margin > 0) & (margin_cf < 0)


def counterfactual_scores(image: np.ndarray, image_cf: np.ndarray, report: np.ndarray, negation: np.ndarray,
                          omitted: np.ndarray, entities: list[str]) -> dict:
    """CF-order and CF-pair for r^n (task A) and r^r (task B), overall and per chosen entity."""
    order_a, pair_a = counterfactual_decisions(preference_margin(image, report, negation),
                                               preference_margin(image_cf, report, negation))
    order_b, pair_b = counterfactual_decisions(preference_margin(image, report, omitted),
                                               preference_margin(image_cf, report, omitted))
    decisions = {"cf_order": order_a, "cf_pair": pair_a, "cf_order_b": order_b, "cf_pair_b": pair_b}
    entities = np.asarray(entities, dtype=object)
    per_entity = {}
    for entity in sorted(set(entities.tolist())):
        mask = entities == entity
        per_entity[entity] = {k: float(v[mask].mean()) for k, v in decisions.items()} | {"n": int(mask.sum())}
    overall = {k: float(v.mean()) for k, v in decisions.items()} if len(entities) else \
        {k: float("nan") for k in decisions}
    return {**overall, "n": int(len(entities)), "per_entity": per_entity}
