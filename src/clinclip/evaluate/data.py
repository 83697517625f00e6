"""Reading a manifest for evaluation: the rows of one split, image paths made absolute, label columns
as floats, and the report text column chosen (the prepared ``text`` when present, else ``report``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clinclip.errors import ClinclipError


def read_manifest(path: str | Path) -> pd.DataFrame:
    """A data or prepared manifest (Parquet or CSV) read by ``clinclip.data.manifest.read_manifest``
    (``image_path`` made absolute relative to the manifest's folder), with ``image_id`` filled from the
    file stem where the manifest lacks it and the id columns as strings (CXR-Align matches on them)."""
    from clinclip.data.manifest import read_manifest as read_data_manifest

    frame = read_data_manifest(path)
    if "image_id" not in frame.columns:
        frame["image_id"] = [Path(p).stem for p in frame["image_path"]]
    frame["image_id"] = frame["image_id"].astype(str)
    if "study_id" in frame.columns:
        frame["study_id"] = frame["study_id"].astype(str)
    return frame


def select_split(frame: pd.DataFrame, split: str | None, manifest: str | Path = "manifest") -> pd.DataFrame:
    """Rows of one split (all rows when ``split`` is None or the manifest has no split column and the
    split asked for is 'all'). Rows skipped by text preparation (``skip_reason``) are left out."""
    if split and split != "all":
        if "split" not in frame.columns:
            raise ClinclipError(f"{manifest}: no 'split' column; pass --split all to use every row")
        sub = frame[frame["split"].astype(str) == split]
        if sub.empty:
            found = sorted(frame["split"].astype(str).unique())
            raise ClinclipError(f"{manifest}: no row with split == {split!r} (splits present: {found})")
        frame = sub
    return frame.reset_index(drop=True)


def drop_skipped(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Leave out rows that text preparation marked with a ``skip_reason``; count them by reason."""
    if "skip_reason" not in frame.columns:
        return frame, {}
    reasons = frame["skip_reason"]
    mask = reasons.isna() | (reasons.astype(str) == "")
    counts = {f"prepared row skipped: {r}": int(n) for r, n in reasons[~mask].value_counts().items()}
    return frame[mask].reset_index(drop=True), counts


def report_column(frame: pd.DataFrame, manifest: str | Path = "manifest") -> str:
    """The report text column: the prepared report ``text`` (single-entity sentences, no temporal
    statements) when present, else the raw ``report``."""
    for column in ("text", "report"):
        if column in frame.columns:
            return column
    raise ClinclipError(f"{manifest}: no report text column ('text' from clinclip text prepare, or 'report')")


def label_matrix(frame: pd.DataFrame, columns: list[str], manifest: str | Path = "manifest") -> np.ndarray:
    """The label columns as a float array (N x L): 1 positive, 0 negative, -1 uncertain, NaN blank."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ClinclipError(f"{manifest}: label column(s) {missing} not found (columns: {list(frame.columns)})")
    try:
        return frame[columns].apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as err:
        raise ClinclipError(f"{manifest}: label columns {columns} must be numeric: {err}") from err
