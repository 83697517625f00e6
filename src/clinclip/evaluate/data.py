"""The evaluation view of a manifest (read and split by ``clinclip.manifest``): label columns as floats and
the report text column chosen (the prepared ``text`` when present, else ``report``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clinclip.errors import ClinclipError


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
