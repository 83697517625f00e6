"""Any CSV or Parquet table: one row per image, columns named by options.

``table`` (required) is the file; ``image_column`` holds the image path (absolute, or relative to the
dataset root); ``report_column``, ``label_columns`` (labels named like clinclip's observations become those
columns; others are kept as dataset classes), ``patient_column``, ``study_column``, ``split_column``,
``view_column`` are optional. Without a patient column every image is its own patient; without a split
column a seeded patient-level split is drawn; without a view column every image counts as frontal.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from clinclip.data.adapters.base import DatasetAdapter
from clinclip.data.labels import IDENTITY_TO_OBSERVATIONS
from clinclip.data.manifest import FRONTAL, as_id
from clinclip.errors import ClinclipError
from clinclip.manifest import read_table


class CsvAdapter(DatasetAdapter):
    name = "csv"
    to_observations = IDENTITY_TO_OBSERVATIONS
    description = "any CSV/Parquet: --table FILE --image-column C [--report-column C --label-columns A,B ...]"

    def __init__(self, root, options=None, **kwargs):
        super().__init__(root, options, **kwargs)

    @property
    def has_reports(self) -> bool:  # type: ignore[override]
        return bool(self.options.report_column)

    def read(self) -> pd.DataFrame:
        o = self.options
        if not o.table:
            raise ClinclipError("csv: give the table with --table FILE (CSV or Parquet)")
        path = Path(o.table)
        if not path.is_absolute() and not path.exists():
            path = self.root / path
        optional = [o.report_column, o.patient_column, o.study_column, o.split_column, o.view_column]
        required = [o.image_column, *[c for c in optional if c], *o.label_columns]
        table = read_table(path, required, what="csv adapter table", low_memory=False)
        self.rows_read = len(table)
        images = table[o.image_column].astype(str).str.strip()
        paths = [p if Path(p).is_absolute() else str(self.root / p) for p in images]
        image_id = [Path(p).stem for p in paths]
        frame = pd.DataFrame({
            "image_path": paths,
            "image_id": image_id,
            "patient_id": as_id(table[o.patient_column]) if o.patient_column else image_id,
            "split": table[o.split_column].fillna("").astype(str) if o.split_column else "",
            "view": table[o.view_column] if o.view_column else FRONTAL,
            "report": table[o.report_column].astype(object).where(table[o.report_column].notna(), None)
            if o.report_column else None,
        })
        frame["study_id"] = as_id(table[o.study_column]) if o.study_column else frame["image_id"]
        for column in o.label_columns:
            frame[column] = pd.to_numeric(table[column], errors="coerce")
        self.class_columns = list(o.label_columns)
        return frame
