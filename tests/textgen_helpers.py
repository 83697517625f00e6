"""Helpers for the text-generation tests (tests/test_textgen_*.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clinclip.observations import OBSERVATIONS


def iu_frame(path: Path, n: int | None = None) -> pd.DataFrame:
    """The IU reports as a frame with a MIMIC-style ``report`` column (FINDINGS: ... IMPRESSION: ...)."""
    frame = pd.read_csv(path)
    if n is not None:
        frame = frame.head(n)
    findings, impression = frame["findings"].fillna(""), frame["impression"].fillna("")
    frame = frame.drop(columns=["findings", "impression"])
    frame["report"] = ("FINDINGS: " + findings + "\nIMPRESSION: " + impression).str.strip()
    return frame.reset_index(drop=True)


def split_and_label(reports: list[str]) -> tuple[list[list[str]], np.ndarray]:
    """Single-entity sentences and rules labels of raw reports (the first half of the pipeline)."""
    from clinclip.text.labeler import get_labeler
    from clinclip.text.sentences import split_report

    sentences = [list(split_report(r)) for r in reports]
    labels = get_labeler("rules").label([" ".join(s) for s in sentences])
    assert labels.shape == (len(reports), len(OBSERVATIONS))
    return sentences, labels
