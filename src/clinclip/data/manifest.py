"""The shared plumbing of the data adapters: finding a dataset's files, identifiers, skip accounting, views and
patient-level splits. The manifest itself (schema, reader, writer) is ``clinclip.manifest``."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from clinclip.errors import ClinclipError
from clinclip.manifest import SPLITS
DEFAULT_SPLIT_FRACTIONS: tuple[float, float, float] = (0.7, 0.1, 0.2)


# --- finding the dataset's own tables ---------------------------------------------------------------


def find_file(root: Path, names: Sequence[str], what: str) -> Path:
    """The first of ``names`` (relative to ``root``) that exists; otherwise an error listing them all."""
    for name in names:
        candidate = root / name
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(root / n) for n in names)
    raise ClinclipError(f"{what} not found: looked for {tried}")


def as_id(values: pd.Series) -> pd.Series:
    """Identifiers as clean strings: integers without a trailing '.0', blanks as ''."""
    def one(value) -> str:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return ""
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value).strip()

    return values.map(one).astype(str)


# --- skips ------------------------------------------------------------------------------------------


@dataclass
class SkipLog:
    """Every row an adapter does not keep, with the file it came from and why; nothing is dropped silently.
    ``notes`` counts kept-but-noteworthy rows (e.g. a study without a label row, kept with blank labels)."""

    dataset: str
    rows: list[dict] = field(default_factory=list)
    notes: Counter = field(default_factory=Counter)

    def add(self, reason: str, source: str | Path, keys: Iterable[str] | str, image_path: Iterable[str] | None = None):
        keys = [keys] if isinstance(keys, str) else list(keys)
        paths = list(image_path) if image_path is not None else [""] * len(keys)
        for key, img in zip(keys, paths):
            self.rows.append({"dataset": self.dataset, "source": str(source), "key": str(key),
                              "image_path": str(img), "reason": reason})

    def note(self, message: str, count: int = 1) -> None:
        if count:
            self.notes[message] += count

    def counts(self) -> dict[str, int]:
        return dict(Counter(r["reason"] for r in self.rows).most_common())

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["dataset", "source", "key", "image_path", "reason"])


# --- views ------------------------------------------------------------------------------------------

FRONTAL = "FRONTAL"
LATERAL = "LATERAL"
VIEW_CHOICES = ("frontal", "all")


def normalize_view(value) -> str:
    """Upper-case view names: PA, AP, AP AXIAL, LATERAL, LL, FRONTAL (when only 'Frontal' is known), ''."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    text = " ".join(str(value).strip().upper().split())
    return {"POSTEROANTERIOR": "PA", "ANTEROPOSTERIOR": "AP", "LAT": LATERAL}.get(text, text)


def is_frontal(view: str) -> bool:
    view = normalize_view(view)
    return view == FRONTAL or view.split(" ")[0] in ("PA", "AP")


# --- splits -----------------------------------------------------------------------------------------


def normalize_split(value) -> str:
    text = str(value).strip().lower()
    return {"val": "validate", "valid": "validate", "validation": "validate", "dev": "validate",
            "training": "train", "testing": "test"}.get(text, text)


def patient_split(patient_ids: Iterable[str], fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
                  seed: int = 0) -> dict[str, str]:
    """Assign each patient to train/validate/test by a seeded hash of its id, so every image of a patient
    lands in one split and a patient keeps its split when others are added (stable, order-free)."""
    fractions = np.asarray(fractions, dtype=float)
    if fractions.shape != (3,) or (fractions < 0).any() or not np.isclose(fractions.sum(), 1.0):
        raise ClinclipError(f"split fractions must be three non-negative numbers summing to 1, got {[float(f) for f in fractions]}")
    edges = np.cumsum(fractions)
    assignment = {}
    for pid in sorted(set(map(str, patient_ids))):
        digest = hashlib.sha256(f"{seed}:{pid}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        assignment[pid] = SPLITS[int(np.searchsorted(edges, u, side="right").clip(0, 2))]
    return assignment
