"""Bootstrap confidence intervals (CheXzero's convention: 1,000 resamples of the test images with
replacement, seeded, percentile interval). Every resample draws the same images for every class, so the
interval of a mean over classes (the headline AUC) accounts for their correlation.

The resamples are counts (how often each image is drawn), and the AUC of a resample is computed from
those counts in one vectorised pass (the weighted Mann-Whitney statistic), so 1,000 resamples of 14
classes cost about as much as sorting the scores once per class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class Bootstrap:
    """Resampling counts (resamples × n) for ``n`` items, drawn from ``seed``."""

    counts: np.ndarray
    seed: int
    level: float = LEVEL

    @classmethod
    def draw(cls, n: int, n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = LEVEL) -> "Bootstrap":
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, max(n, 1), size=(n_resamples, n))
        offsets = np.arange(n_resamples)[:, None] * n
        counts = np.bincount((picks + offsets).ravel(), minlength=n_resamples * n).reshape(n_resamples, n)
        return cls(counts.astype(np.float64), seed, level)

    @property
    def n_resamples(self) -> int:
        return self.counts.shape[0]

    def describe(self) -> dict:
        """What a results file records about the intervals."""
        return {"method": "percentile bootstrap over test images", "resamples": self.n_resamples,
                "seed": self.seed, "level": self.level}

    def interval(self, values: np.ndarray) -> list[float]:
        """Percentile interval of per-resample values (resamples where the metric is undefined are left
        out); ``[nan, nan]`` when none is defined."""
        values = np.asarray(values, dtype=np.float64)
        values = values[~np.isnan(values)]
        if not len(values):
            return [float("nan"), float("nan")]
        tail = 100 * (1 - self.level) / 2
        low, high = np.percentile(values, [tail, 100 - tail])
        return [float(low), float(high)]

    # ------------------------------------------------------------------ per-resample metrics
    def subset(self, mask: np.ndarray) -> np.ndarray:
        """Counts restricted to the items under ``mask`` (resamples × mask.sum())."""
        return self.counts[:, np.asarray(mask, dtype=bool)]

    def means(self, values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Per-resample mean of ``values`` (e.g. 0/1 correct -> accuracy); NaN where no item was drawn."""
        counts = self.counts if mask is None else self.subset(mask)
        values = np.asarray(values, dtype=np.float64) if mask is None else \
            np.asarray(values, dtype=np.float64)[np.asarray(mask, dtype=bool)]
        total = counts.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, counts @ values / total, np.nan)

    def aucs(self, y_true: np.ndarray, scores: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Per-resample ROC AUC (ties count one half); NaN where a resample lacks one of the classes."""
        counts = self.counts if mask is None else self.subset(mask)
        y = np.asarray(y_true).astype(bool)
        s = np.asarray(scores, dtype=np.float64)
        if mask is not None:
            y, s = y[np.asarray(mask, dtype=bool)], s[np.asarray(mask, dtype=bool)]
        return weighted_auc(y, s, counts)

    def accuracy_ci(self, correct: np.ndarray, mask: np.ndarray | None = None) -> list[float]:
        return self.interval(self.means(correct, mask))

    def auc_ci(self, y_true: np.ndarray, scores: np.ndarray, mask: np.ndarray | None = None) -> list[float]:
        return self.interval(self.aucs(y_true, scores, mask))


def weighted_auc(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of each row of ``weights`` (item multiplicities, rows × n): the share of (positive, negative)
    pairs ordered right, ties one half. NaN for a row without positive or negative weight."""
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if len(scores) == 0:
        return np.full(weights.shape[0], np.nan)
    order = np.argsort(scores, kind="mergesort")
    s, y, w = np.asarray(scores)[order], np.asarray(y, dtype=bool)[order], weights[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # one group per distinct score
    pos = np.add.reduceat(w * y, starts, axis=1)
    neg = np.add.reduceat(w * ~y, starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (neg_below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)
