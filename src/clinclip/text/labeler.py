"""Report labelers: text -> N x 14 CheXpert label matrix in ``OBSERVATIONS`` order.

Values: 1.0 positive, 0.0 negative, -1.0 uncertain, NaN blank (not mentioned).

Backends (``get_labeler(backend, **kwargs)``):

- ``rules``   ``RuleLabeler``: mention lexicon + NegEx-style scopes (``clinclip.text.rules``)
- ``csv``     ``CsvLabeler``: labels given with the data (e.g. MIMIC-CXR's ``chexpert.csv``)
- ``chexbert`` ``clinclip.text.chexbert.CheXbertLabeler`` (the published checkpoint; imported lazily)
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import pandas as pd

from clinclip.errors import ClinclipError
from clinclip.observations import NO_FINDING, OBSERVATIONS
from clinclip.text.rules import NEGATIVE, OTHER_FINDING, POSITIVE, UNCERTAIN, scan_observations

_INDEX = {name: i for i, name in enumerate(OBSERVATIONS)}
_NO_FINDING_INDEX = _INDEX[NO_FINDING]
_VALUE = {POSITIVE: 1.0, NEGATIVE: 0.0, UNCERTAIN: -1.0}
# CheXpert aggregation across mentions of one observation: positive > uncertain > negative.
_RANK = {1.0: 3, -1.0: 2, 0.0: 1}


class Labeler(Protocol):
    def label(self, texts: Sequence[str]) -> np.ndarray: ...


def aggregate(pairs) -> np.ndarray:
    """One label vector (14) from (observation, assertion) pairs, the CheXpert labeler's way.

    Several mentions of one observation: positive beats uncertain beats negative. No Finding is 1.0
    when no observation other than Support Devices (and no other abnormality, CheXpert's "No Finding"
    mentions) is positive or uncertain, and blank (NaN) otherwise, as the CheXpert labeler writes it.
    """
    vec = np.full(len(OBSERVATIONS), np.nan)
    finding = False
    for obs, assertion in pairs:
        value = _VALUE[assertion]
        if obs == OTHER_FINDING:
            finding |= value != 0.0
            continue
        if obs == NO_FINDING:
            continue  # normal statements do not set the label; the rule below does
        i = _INDEX[obs]
        if obs != "Support Devices" and value != 0.0:
            finding = True
        old = vec[i]
        if math.isnan(old) or _RANK[value] > _RANK[old]:
            vec[i] = value
    if not finding:
        vec[_NO_FINDING_INDEX] = 1.0
    return vec


class RuleLabeler:
    """The rule labeler. ``label(texts)`` returns an N x 14 float array (OBSERVATIONS order).

    An empty or whitespace-only text gets an all-blank row (nothing to label, not "No Finding").
    """

    name = "rules"

    def label_one(self, text: str) -> np.ndarray:
        if not isinstance(text, str) or not text.strip():
            return np.full(len(OBSERVATIONS), np.nan)
        return aggregate(scan_observations(text))

    def label(self, texts: Sequence[str]) -> np.ndarray:
        out = np.full((len(texts), len(OBSERVATIONS)), np.nan)
        for i, text in enumerate(texts):
            out[i] = self.label_one(text)
        return out


_PREFIXED_ID = re.compile(r"[sp](\d+)")


def _normalise_key(key) -> str:
    """Join keys written differently: MIMIC's study folder "s50414267" and chexpert.csv's 50414267,
    and integers read as floats ("50414267.0")."""
    if isinstance(key, float) and key.is_integer():
        key = int(key)
    k = str(key).strip()
    m = _PREFIXED_ID.fullmatch(k)
    if m:
        return m.group(1)
    if k.endswith(".0") and k[:-2].isdigit():
        return k[:-2]
    return k


class CsvLabeler:
    """Labels given with the data: a table with a key column and the 14 observation columns (by name).

    Keys are matched as strings, with MIMIC's "s"/"p" prefixes and a trailing ".0" ignored, so the
    report file ``s50414267.txt`` finds ``study_id`` 50414267 of ``mimic-cxr-2.0.0-chexpert.csv``.

    ``CsvLabeler(path, key_column="study_id")`` then ``label(keys)`` looks the keys up (the "texts"
    passed to ``label`` are the keys); or ``CsvLabeler.from_frame(df, key_column)``. Values are mapped
    to 1.0 / 0.0 / -1.0 / NaN; a key that is not in the table gets a blank row and is counted in
    ``missing``.
    """

    name = "csv"

    def __init__(self, path: str | Path | None = None, key_column: str = "study_id", frame=None):
        if frame is None:
            if path is None:
                raise ClinclipError("csv labeler: give the label file (path=...)")
            path = Path(path)
            if not path.exists():
                raise ClinclipError(f"csv labeler: label file not found: {path}")
            frame = pd.read_csv(path, compression="infer")
        self.source = str(path) if path is not None else "<frame>"
        missing_cols = [c for c in OBSERVATIONS if c not in frame.columns]
        if missing_cols or key_column not in frame.columns:
            need = ([key_column] if key_column not in frame.columns else []) + missing_cols
            raise ClinclipError(f"csv labeler: {self.source} lacks column(s) {need}; "
                                f"it has {list(frame.columns)}")
        values = frame[list(OBSERVATIONS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        bad = ~np.isin(values, (1.0, 0.0, -1.0)) & ~np.isnan(values)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ClinclipError(f"csv labeler: {self.source} row {r + 2} column {OBSERVATIONS[c]!r} has "
                                f"value {values[r, c]!r}; expected 1, 0, -1 or empty")
        keys = [_normalise_key(k) for k in frame[key_column].tolist()]
        self._table = dict(zip(keys, values))
        self.missing = 0

    @classmethod
    def from_frame(cls, frame, key_column: str = "study_id") -> "CsvLabeler":
        return cls(frame=frame, key_column=key_column)

    def label(self, texts: Sequence[str]) -> np.ndarray:
        out = np.full((len(texts), len(OBSERVATIONS)), np.nan)
        for i, key in enumerate(texts):
            row = self._table.get(_normalise_key(key))
            if row is None:
                self.missing += 1
            else:
                out[i] = row
        return out


BACKENDS = ("rules", "csv", "chexbert")


def get_labeler(backend: str = "rules", **kwargs) -> Labeler:
    """A labeler object with ``.label(texts) -> N x 14``. Backends: rules, csv, chexbert."""
    key = (backend or "").strip().lower()
    if key == "rules":
        if kwargs:
            raise ClinclipError(f"labeler 'rules' takes no options, got {sorted(kwargs)}")
        return RuleLabeler()
    if key == "csv":
        return CsvLabeler(**kwargs)
    if key == "chexbert":
        try:
            from clinclip.text.chexbert import CheXbertLabeler
        except ImportError as err:
            raise ClinclipError(f"labeler 'chexbert' is not available: {err}") from err
        return CheXbertLabeler(**kwargs)
    raise ClinclipError(f"unknown labeler backend {backend!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["RuleLabeler", "CsvLabeler", "get_labeler", "aggregate", "positive_agreement", "BACKENDS"]


def positive_agreement(pred: np.ndarray, gold: "dict[str, Sequence[float]]") -> "list[dict]":
    """Per-observation agreement of positive calls (pred == 1.0) with gold tags (1 / 0 / NaN = excluded).

    ``pred`` is N x 14 (OBSERVATIONS order); ``gold`` maps observation names to N values. Returns one
    dict per observation in ``gold`` with precision, recall, f1, support (gold positives), n (scored).
    """
    rows = []
    for obs, values in gold.items():
        g = np.asarray(values, dtype=float)
        keep = ~np.isnan(g)
        p = pred[:, _INDEX[obs]][keep] == 1.0
        t = g[keep] == 1.0
        tp, fp, fn = int(np.sum(p & t)), int(np.sum(p & ~t)), int(np.sum(~p & t))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"observation": obs, "precision": precision, "recall": recall, "f1": f1,
                     "support": int(t.sum()), "n": int(keep.sum()), "tp": tp, "fp": fp, "fn": fn})
    return rows
