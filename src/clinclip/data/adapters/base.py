"""The adapter contract (torchxrayvision style): each dataset is one class, driven by its own published
files, exposing

- ``.metadata``: a DataFrame with the manifest's base columns (``image_path`` absolute, ``image_id``,
  ``study_id``, ``patient_id``, ``split``, ``view``, ``report``) and dataset extras, one row per image;
- ``.pathologies``: the label column names (the dataset's own classes, then the CheXpert observations they
  map to, see ``clinclip.data.labels``);
- ``.labels``: N×P float array aligned row by row with ``.metadata`` (1 / 0 / -1 uncertain / NaN blank);
- ``.skips``: a :class:`SkipLog` of every row not kept, with its source file and reason;
- ``.manifest()``: metadata and labels as one frame;
- ``adapter[i]`` / ``.dataset(transform, split, uncertain)``: a torch ``Dataset`` of ``{"img", "lab", "idx"}``
  items (``clinclip.data.dataset``), like torchxrayvision's.

A subclass implements ``read()`` returning one row per candidate image with the base columns (``split``
may be blank: a seeded patient-level split is then drawn) and its label columns; the base class applies
the rules every dataset shares: view filter, image-file check, report requirement, split, column order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from clinclip.data.labels import map_to_observations
from clinclip.data.manifest import (
    DEFAULT_SPLIT_FRACTIONS,
    VIEW_CHOICES,
    SkipLog,
    is_frontal,
    normalize_split,
    normalize_view,
    patient_split,
)
from clinclip.errors import ClinclipError
from clinclip.manifest import BASE_COLUMNS, SPLITS, check_manifest
from clinclip.observations import OBSERVATIONS


@dataclass
class AdapterOptions:
    """Options shared by the adapters (each reads the ones that concern it)."""

    views: str = "frontal"  # "frontal" (PA/AP/...) or "all"
    seed: int = 0
    split_fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS  # where the dataset has no split
    check_images: bool = True  # skip (and report) rows whose image file is absent
    require_report: bool = True  # datasets with reports: skip (and report) images without one
    reports_root: Path | None = None  # MIMIC-CXR: where files/pNN/pSUBJECT/sSTUDY.txt live (default: root)
    labels: Path | None = None  # CheXpert Plus: CheXbert/CheXpert label file (JSON lines or CSV)
    labeler: str = "chexpert"  # MIMIC-CXR: chexpert or negbio label file
    split_dir: Path | None = None  # RSNA / SIIM: folder with GLoRIA's train/val(id)/test CSVs
    vindr_aggregate: str = "majority"  # VinDr train: majority (>= 2 of 3 radiologists) or any
    per_class: int = 200  # CheXpert 5x200: images per class
    # generic csv adapter
    table: Path | None = None
    image_column: str = "image_path"
    report_column: str | None = None
    label_columns: tuple[str, ...] = ()
    patient_column: str | None = None
    study_column: str | None = None
    split_column: str | None = None
    view_column: str | None = None

    @classmethod
    def from_kwargs(cls, **kwargs) -> "AdapterOptions":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ClinclipError(f"unknown adapter option(s) {unknown}; known: {sorted(known)}")
        return cls(**kwargs)


class DatasetAdapter:
    """Base class; see the module docstring for the contract."""

    name: ClassVar[str] = ""
    classes: ClassVar[tuple[str, ...]] = ()  # the dataset's own label columns (may be extended in read())
    to_observations: ClassVar[dict[str, tuple[str, ...]]] = {}
    has_reports: ClassVar[bool] = False
    description: ClassVar[str] = ""

    def __init__(self, root: str | os.PathLike, options: AdapterOptions | None = None, **kwargs):
        self.options = options or AdapterOptions.from_kwargs(**kwargs)
        if self.options.views not in VIEW_CHOICES:
            raise ClinclipError(f"--views must be one of {list(VIEW_CHOICES)}, got {self.options.views!r}")
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise ClinclipError(f"{self.name}: dataset root {self.root} is not a folder")
        self.skips = SkipLog(self.name)
        self.rows_read = 0  # candidate images read from the dataset's files
        self.class_columns: list[str] = list(self.classes)
        frame = self.read()
        self.rows_read = self.rows_read or len(frame)
        frame = self._finish(frame)
        if "_note" in frame.columns:  # per-row notes, counted over the rows kept
            for note, count in frame["_note"].dropna().value_counts().items():
                self.skips.note(str(note), int(count))
            frame = frame.drop(columns="_note")
        label_frame = self._label_frame(frame)
        self.pathologies: list[str] = list(label_frame.columns)
        self.labels: np.ndarray = label_frame.to_numpy(dtype=float) if len(self.pathologies) else np.zeros((len(frame), 0))
        self.metadata: pd.DataFrame = frame.drop(columns=[c for c in self.pathologies if c in frame.columns])

    # --- to implement ----------------------------------------------------------------------------------

    def read(self) -> pd.DataFrame:  # pragma: no cover - abstract
        raise NotImplementedError

    # --- shared rules -----------------------------------------------------------------------------------

    def skip(self, frame: pd.DataFrame, mask, reason: str, source) -> pd.DataFrame:
        """Record the rows of ``frame`` under ``mask`` as skipped (with reason and source); return the rest."""
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            dropped = frame[mask]
            keys = dropped["image_id"] if "image_id" in dropped.columns else dropped.index.astype(str)
            paths = dropped["image_path"] if "image_path" in dropped.columns else None
            self.skips.add(reason, source, keys.astype(str), paths.astype(str) if paths is not None else None)
        return frame[~mask].copy()

    def _finish(self, frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.reset_index(drop=True).copy()
        for column in BASE_COLUMNS:
            if column not in frame.columns:
                frame[column] = None if column == "report" else ""
        frame["image_path"] = frame["image_path"].astype(str)
        dup = frame["image_path"].duplicated(keep="first").to_numpy()
        frame = self.skip(frame, dup, "image listed more than once (first row kept)", "image_path")
        if self.options.check_images and len(frame):
            exists = np.fromiter((os.path.isfile(p) for p in frame["image_path"]), dtype=bool, count=len(frame))
            frame = self.skip(frame, ~exists, "image file not found", "image_path")
        frame["view"] = frame["view"].map(normalize_view)
        if self.options.views == "frontal":
            unknown = (frame["view"] == "").to_numpy()
            frame = self.skip(frame, unknown, "view unknown (keep such images with --views all)", "view")
            frame = self.skip(frame, ~frame["view"].map(is_frontal).to_numpy(bool),
                              "not a frontal view (keep laterals with --views all)", "view")
        if self.has_reports and self.options.require_report:
            report = frame["report"]
            empty = report.isna().to_numpy() | (report.fillna("").astype(str).str.strip() == "").to_numpy()
            frame = self.skip(frame, empty, "no report for the study (or an empty one)", "report")
        frame["split"] = frame["split"].fillna("").map(lambda s: normalize_split(s) if s else "")
        unknown = ~frame["split"].isin(list(SPLITS) + [""])
        frame = self.skip(frame, unknown.to_numpy(), "unknown split value", "split")
        if (frame["split"] == "").any():
            assignment = patient_split(frame.loc[frame["split"] == "", "patient_id"].astype(str),
                                       self.options.split_fractions, self.options.seed)
            blank = frame["split"] == ""
            frame.loc[blank, "split"] = frame.loc[blank, "patient_id"].astype(str).map(assignment)
        for column in ("image_id", "study_id", "patient_id"):
            frame[column] = frame[column].astype(str)
        check_manifest(frame, f"{self.name} adapter output")
        return frame.reset_index(drop=True)

    def _label_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        native = [c for c in self.class_columns if c in frame.columns]
        labels = frame[native].apply(pd.to_numeric, errors="coerce").astype(float) if native else \
            pd.DataFrame(index=frame.index)
        mapped = map_to_observations(labels, self.to_observations) if self.to_observations else \
            pd.DataFrame(index=frame.index)
        for column in mapped.columns:
            if column not in labels.columns:
                labels[column] = mapped[column]
        # Observations first in clinclip's order, then the dataset's other classes in their own order.
        order = [o for o in OBSERVATIONS if o in labels.columns] + [c for c in native if c not in OBSERVATIONS]
        return labels[order]

    # --- output -----------------------------------------------------------------------------------------

    def manifest(self) -> pd.DataFrame:
        """Metadata and labels as one frame (base columns first, then labels, then dataset extras)."""
        labels = pd.DataFrame(self.labels, columns=self.pathologies, index=self.metadata.index)
        extras = [c for c in self.metadata.columns if c not in BASE_COLUMNS]
        return pd.concat([self.metadata[list(BASE_COLUMNS)], labels, self.metadata[extras]], axis=1)

    def dataset(self, transform=None, split: str | None = None, uncertain: str = "nan"):
        """These images as a torch ``Dataset`` (``clinclip.data.dataset.XRayDataset``): items
        ``{"img", "lab", "idx"}``, labels in ``.pathologies`` order, uncertain -> NaN by default."""
        from clinclip.data.dataset import XRayDataset

        return XRayDataset.from_adapter(self, transform=transform, split=split, uncertain=uncertain)

    def __getitem__(self, idx: int) -> dict:
        """``adapter[i]`` as torchxrayvision datasets index: ``self.dataset()[i]``."""
        if getattr(self, "_default_dataset", None) is None:
            self._default_dataset = self.dataset()
        return self._default_dataset[idx]

    def __len__(self) -> int:
        return len(self.metadata)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, images={len(self)}, pathologies={len(self.pathologies)})"


@dataclass
class PrepareSummary:
    """What ``build_manifest`` did: rows read, kept, skipped by reason; where the files went."""

    dataset: str
    rows_read: int
    rows_kept: int
    skipped: dict[str, int]
    notes: dict[str, int]
    splits: dict[str, int]
    manifest: Path
    skipped_file: Path | None
    pathologies: list[str] = field(default_factory=list)
