"""MIMIC-CXR-JPG 2.x as published on PhysioNet (and as clinclip's phantom generator writes it).

Files under ``root``: ``mimic-cxr-2.0.0-split.csv.gz`` (dicom_id, study_id, subject_id, split),
``mimic-cxr-2.0.0-metadata.csv.gz`` (dicom_id, ..., ViewPosition, ...), ``mimic-cxr-2.0.0-chexpert.csv.gz``
and/or ``mimic-cxr-2.0.0-negbio.csv.gz`` (subject_id, study_id, the 14 observations; 1/0/-1/blank),
images ``files/pNN/pSUBJECT/sSTUDY/DICOM_ID.jpg`` (NN = first two digits of the subject id). Reports are
MIMIC-CXR's ``files/pNN/pSUBJECT/sSTUDY.txt`` (from mimic-cxr-reports.zip), under ``root`` unless
``reports_root`` is given. Uncompressed ``.csv`` files are accepted too. The split CSV's ``validate`` is kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clinclip.data.adapters.base import DatasetAdapter
from clinclip.data.labels import IDENTITY_TO_OBSERVATIONS
from clinclip.data.manifest import as_id, find_file
from clinclip.errors import ClinclipError
from clinclip.manifest import read_table
from clinclip.observations import OBSERVATIONS

PREFIX = "mimic-cxr-2.0.0-"


def _csv(root: Path, stem: str, what: str) -> Path:
    return find_file(root, [f"{PREFIX}{stem}.csv.gz", f"{PREFIX}{stem}.csv"], what)


def study_folder(subject_id: str, study_id: str) -> str:
    return f"files/p{subject_id[:2]}/p{subject_id}/s{study_id}"


class MimicCxrAdapter(DatasetAdapter):
    name = "mimic-cxr"
    classes = OBSERVATIONS
    to_observations = IDENTITY_TO_OBSERVATIONS
    has_reports = True
    description = "MIMIC-CXR-JPG 2.x: split/metadata/chexpert CSVs, files/pNN/pSUBJECT/sSTUDY/*.jpg + sSTUDY.txt"

    def read(self) -> pd.DataFrame:
        ids = {"dicom_id": str, "study_id": str, "subject_id": str}
        split_path = _csv(self.root, "split", "MIMIC-CXR-JPG split CSV")
        meta_path = _csv(self.root, "metadata", "MIMIC-CXR-JPG metadata CSV")
        split = read_table(split_path, ["dicom_id", "study_id", "subject_id", "split"], dtype=ids)
        meta = read_table(meta_path, ["dicom_id", "subject_id", "study_id", "ViewPosition"], dtype=ids)
        for frame in (split, meta):
            for column in ids:
                frame[column] = as_id(frame[column])
        self.rows_read = len(split)

        extra = [c for c in ("ViewPosition", "StudyDate", "StudyTime", "PerformedProcedureStepDescription")
                 if c in meta.columns]
        merged = split.merge(meta[["dicom_id"] + extra], on="dicom_id", how="left", indicator=True)
        frame = pd.DataFrame({
            "image_id": merged["dicom_id"],
            "study_id": merged["study_id"],
            "patient_id": merged["subject_id"],
            "split": merged["split"],
            "view": merged["ViewPosition"],
        })
        frame["image_path"] = [str(self.root / study_folder(s, t) / f"{d}.jpg")
                               for s, t, d in zip(frame["patient_id"], frame["study_id"], frame["image_id"])]
        no_meta = (merged["_merge"] == "left_only").to_numpy()
        frame = self.skip(frame, no_meta, "dicom_id absent from the metadata CSV (view unknown)", meta_path)
        if "StudyDate" in merged.columns:
            frame["study_date"] = merged.loc[frame.index, "StudyDate"].astype("string")

        frame = self._add_labels(frame)
        frame["report"] = self._reports(frame)
        return frame

    def _add_labels(self, frame: pd.DataFrame) -> pd.DataFrame:
        names = ("chexpert", "negbio") if self.options.labeler == "chexpert" else ("negbio", "chexpert")
        if self.options.labeler not in ("chexpert", "negbio"):
            raise ClinclipError(f"mimic-cxr: labeler must be 'chexpert' or 'negbio', got {self.options.labeler!r}")
        path = None
        for stem in names:
            try:
                path = _csv(self.root, stem, "label CSV")
                break
            except ClinclipError:
                continue
        if path is None:
            self.skips.note("no chexpert/negbio label CSV found: manifest has no label columns")
            self.class_columns = []
            return frame
        if path.name.find(self.options.labeler) < 0:
            self.skips.note(f"{self.options.labeler} label CSV absent; labels read from {path.name}")
        labels = read_table(path, ["subject_id", "study_id", *OBSERVATIONS], dtype={"subject_id": str, "study_id": str})
        labels["study_id"] = as_id(labels["study_id"])
        labels = labels.drop_duplicates("study_id")[["study_id", *OBSERVATIONS]]
        merged = frame.merge(labels, on="study_id", how="left", indicator=True)
        merged.index = frame.index
        merged["_note"] = np.where(merged["_merge"] == "left_only",
                                   f"images of studies without a row in {path.name} (kept, labels blank)", None)
        return merged.drop(columns="_merge")

    def _reports(self, frame: pd.DataFrame) -> list[str | None]:
        reports_root = Path(self.options.reports_root).resolve() if self.options.reports_root else self.root
        if not reports_root.is_dir():
            raise ClinclipError(f"mimic-cxr: reports root {reports_root} is not a folder")
        cache: dict[tuple[str, str], str | None] = {}
        out = []
        for subject, study in zip(frame["patient_id"], frame["study_id"]):
            key = (subject, study)
            if key not in cache:
                path = reports_root / f"{study_folder(subject, study)}.txt"
                try:
                    cache[key] = path.read_text(encoding="utf-8", errors="replace")
                except OSError:
                    cache[key] = None
            out.append(cache[key])
        return out
