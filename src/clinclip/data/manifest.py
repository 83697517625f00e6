"""The data manifest (docs/ARCHITECTURE.md "Data manifest") and the shared plumbing of the adapters:
reading a dataset's CSV with its required columns checked, skip accounting, views, patient-level splits,
and writing/reading the manifest file."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from clinclip.errors import ClinclipError

BASE_COLUMNS: tuple[str, ...] = ("image_path", "image_id", "study_id", "patient_id", "split", "view", "report")
SPLITS: tuple[str, ...] = ("train", "validate", "test")
DEFAULT_SPLIT_FRACTIONS: tuple[float, float, float] = (0.7, 0.1, 0.2)


# --- reading the dataset's own tables ---------------------------------------------------------------


def find_file(root: Path, names: Sequence[str], what: str) -> Path:
    """The first of ``names`` (relative to ``root``) that exists; otherwise an error listing them all."""
    for name in names:
        candidate = root / name
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(root / n) for n in names)
    raise ClinclipError(f"{what} not found: looked for {tried}")


def read_table(path: Path, required: Iterable[str], *, what: str = "", strip_headers: bool = False,
               **read_kwargs) -> pd.DataFrame:
    """Read a CSV (.csv/.csv.gz, by pandas) or Parquet and check its columns: a missing file or column is an
    error naming the file, the missing columns and the columns found."""
    path = Path(path)
    label = f"{what} {path}" if what else str(path)
    if not path.is_file():
        raise ClinclipError(f"{label} not found")
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, **read_kwargs)
    except Exception as err:  # noqa: BLE001 - pandas parser / gzip / encoding errors
        raise ClinclipError(f"{label} could not be read: {type(err).__name__}: {err}") from None
    if strip_headers:  # e.g. SIIM's " EncodedPixels" has a leading space in the published file
        frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ClinclipError(f"{label}: missing column(s) {missing}; columns found: {list(frame.columns)}")
    return frame


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


# --- the manifest file ------------------------------------------------------------------------------


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Parquet for .parquet, CSV otherwise; written to a temp file first, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".parquet":
        frame.to_parquet(tmp, index=False)
    else:
        frame.to_csv(tmp, index=False)
    tmp.replace(path)
    return path


def read_manifest(path: str | Path) -> pd.DataFrame:
    """A manifest written by ``write_table`` (Parquet or CSV); ``image_path`` made absolute relative to the
    manifest's folder when it is relative."""
    path = Path(path)
    frame = read_table(path, ["image_path"], what="manifest", dtype={c: str for c in BASE_COLUMNS if c != "report"}
                       ) if path.suffix != ".parquet" else read_table(path, ["image_path"], what="manifest")
    root = path.resolve().parent
    frame["image_path"] = [p if Path(p).is_absolute() else str(root / p) for p in frame["image_path"].astype(str)]
    return frame


def check_manifest(frame: pd.DataFrame, where: str = "manifest") -> None:
    """The contract every adapter's output satisfies (used by the adapters and their tests)."""
    missing = [c for c in BASE_COLUMNS if c not in frame.columns]
    if missing:
        raise ClinclipError(f"{where}: missing column(s) {missing}; columns found: {list(frame.columns)}")
    bad = sorted(set(frame["split"]) - set(SPLITS))
    if bad:
        raise ClinclipError(f"{where}: unknown split value(s) {bad}; expected {list(SPLITS)}")
    if frame["image_path"].duplicated().any():
        dup = frame.loc[frame["image_path"].duplicated(), "image_path"].iloc[0]
        raise ClinclipError(f"{where}: image_path {dup} appears more than once")
