"""RSNA Pneumonia Detection Challenge (stage 2 training set, the labelled part).

Files under ``root``: ``stage_2_train_labels.csv`` (patientId, x, y, width, height, Target; one row per
box, one row with Target 0 for a negative image), ``stage_2_detailed_class_info.csv`` (patientId, class in
"Lung Opacity" / "No Lung Opacity / Not Normal" / "Normal"), DICOMs ``stage_2_train_images/<patientId>.dcm``.

Labels: ``Pneumonia`` = ``Lung Opacity`` = Target (any box); ``No Finding`` = class is "Normal". Extra columns:
``rsna_class`` (the detailed class), ``rsna_ab`` (1 for the RSNA-ab subset: every abnormal image, i.e.
pneumonia vs "No Lung Opacity / Not Normal"; 0 for "Normal"), ``n_boxes``. Splits: GLoRIA's ``train.csv``,
``val.csv`` (or ``valid.csv``), ``test.csv`` (column patientId) from ``split_dir`` when given, else a seeded
patient-level split. View (AP/PA) from the DICOM header.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clinclip.data.adapters.base import DatasetAdapter
from clinclip.data.images import dicom_tags
from clinclip.data.labels import RSNA_CLASS_INFO, RSNA_CLASSES, RSNA_TO_OBSERVATIONS
from clinclip.data.manifest import FRONTAL, find_file
from clinclip.errors import ClinclipError
from clinclip.manifest import read_table


def read_gloria_splits(split_dir: Path, id_column: str, names: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """id -> split from GLoRIA's split CSVs; an id in several files takes the first of test, validate, train."""
    split_dir = Path(split_dir)
    assignment: dict[str, str] = {}
    for split in ("test", "validate", "train"):
        path = find_file(split_dir, names[split], f"GLoRIA {split} split file")
        table = read_table(path, [id_column], what=f"GLoRIA {split} split file", dtype={id_column: str})
        for value in table[id_column].astype(str).str.strip():
            assignment.setdefault(value, split)
    return assignment


class RsnaPneumoniaAdapter(DatasetAdapter):
    name = "rsna-pneumonia"
    classes = RSNA_CLASSES
    to_observations = RSNA_TO_OBSERVATIONS
    description = "RSNA Pneumonia: stage_2_train_labels.csv + stage_2_detailed_class_info.csv, DICOMs"

    def read(self) -> pd.DataFrame:
        labels_path = find_file(self.root, ["stage_2_train_labels.csv"], "RSNA label CSV")
        info_path = find_file(self.root, ["stage_2_detailed_class_info.csv"], "RSNA class-info CSV")
        boxes = read_table(labels_path, ["patientId", "x", "y", "width", "height", "Target"], dtype={"patientId": str})
        info = read_table(info_path, ["patientId", "class"], dtype={"patientId": str})
        self.rows_read = boxes["patientId"].nunique()
        target = pd.to_numeric(boxes["Target"], errors="coerce")
        bad = target.isna() | ~target.isin([0, 1])
        if bad.any():
            self.skips.add("Target is not 0 or 1", labels_path, boxes.loc[bad, "patientId"])
        boxes = boxes[~bad].assign(Target=target[~bad])
        per_image = boxes.groupby("patientId", sort=False).agg(Target=("Target", "max"), n_boxes=("x", "count"))
        info = info.drop_duplicates("patientId").set_index("patientId")["class"].astype(str).str.strip()
        per_image["rsna_class"] = info.reindex(per_image.index)
        missing_class = per_image["rsna_class"].isna()
        self.skips.note(f"images without a row in {info_path.name} (kept; rsna_class/No Finding blank)",
                        int(missing_class.sum()))
        unknown = ~missing_class & ~per_image["rsna_class"].isin(RSNA_CLASS_INFO)
        if unknown.any():
            raise ClinclipError(f"{info_path}: unknown class value(s) {sorted(per_image.loc[unknown, 'rsna_class'].unique())}"
                                f"; expected {list(RSNA_CLASS_INFO)}")
        image_dir = self.root / "stage_2_train_images"
        ids = per_image.index.astype(str)
        frame = pd.DataFrame({
            "image_path": [str(image_dir / f"{pid}.dcm") for pid in ids],
            "image_id": ids, "study_id": ids, "patient_id": ids, "split": "",
            "report": None,
            "Pneumonia": per_image["Target"].to_numpy(float),
            "Lung Opacity": per_image["Target"].to_numpy(float),
            "No Finding": np.where(missing_class, np.nan, (per_image["rsna_class"] == "Normal").astype(float)),
            "rsna_class": per_image["rsna_class"].to_numpy(),
            "rsna_ab": np.where(missing_class, np.nan, (per_image["rsna_class"] != "Normal").astype(float)),
            "n_boxes": np.where(per_image["Target"] == 1, per_image["n_boxes"], 0),
        })
        frame["view"] = [dicom_tags(p, ("ViewPosition",))["ViewPosition"] or FRONTAL for p in frame["image_path"]]
        if self.options.split_dir:
            splits = read_gloria_splits(self.options.split_dir, "patientId",
                                        {"train": ("train.csv",), "validate": ("val.csv", "valid.csv"),
                                         "test": ("test.csv",)})
            frame["split"] = frame["image_id"].map(splits)
            frame = self.skip(frame, frame["split"].isna().to_numpy(), "not in any GLoRIA split file",
                              self.options.split_dir)
        return frame
