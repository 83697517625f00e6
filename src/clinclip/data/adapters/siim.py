"""SIIM-ACR Pneumothorax Segmentation (the Kaggle training set).

Files under ``root``: ``train-rle.csv`` (ImageId, " EncodedPixels" -- the published header has a leading
space; "-1" means no pneumothorax; an image with several masks has several rows), DICOMs in nested folders
``dicom-images-train/<study>/<series>/<ImageId>.dcm``. Label ``Pneumothorax`` = any mask. Patient id and
view from the DICOM header. Splits: GLoRIA's ``train.csv``, ``valid.csv`` (or ``val.csv``), ``test.csv``
(column ImageId) from ``split_dir`` when given, else a seeded patient-level split.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from clinclip.data.adapters.base import DatasetAdapter
from clinclip.data.adapters.rsna import read_gloria_splits
from clinclip.data.images import dicom_tags
from clinclip.data.labels import SIIM_CLASSES, SIIM_TO_OBSERVATIONS
from clinclip.data.manifest import FRONTAL, find_file
from clinclip.manifest import read_table


class SiimPneumothoraxAdapter(DatasetAdapter):
    name = "siim-pneumothorax"
    classes = SIIM_CLASSES
    to_observations = SIIM_TO_OBSERVATIONS
    description = "SIIM-ACR Pneumothorax: train-rle.csv + dicom-images-train/<study>/<series>/<ImageId>.dcm"

    def read(self) -> pd.DataFrame:
        rle_path = find_file(self.root, ["train-rle.csv", "stage_2_train.csv"], "SIIM RLE CSV")
        rle = read_table(rle_path, ["ImageId", "EncodedPixels"], strip_headers=True, dtype=str)
        rle["ImageId"] = rle["ImageId"].astype(str).str.strip()
        self.rows_read = rle["ImageId"].nunique()
        encoded = rle["EncodedPixels"].fillna("").astype(str).str.strip()
        empty = encoded == ""
        if empty.any():
            self.skips.add("EncodedPixels is blank (expected -1 or a run-length mask)", rle_path, rle.loc[empty, "ImageId"])
        rle = rle[~empty].assign(positive=(encoded[~empty] != "-1").astype(float))
        per_image = rle.groupby("ImageId", sort=True)["positive"].max()
        image_root = self.root / "dicom-images-train"
        index = {p.stem: p for p in (image_root if image_root.is_dir() else self.root).rglob("*.dcm")}
        ids = per_image.index.astype(str)
        paths = [index.get(i, image_root / f"{i}.dcm") for i in ids]
        headers = [dicom_tags(p, ("PatientID", "ViewPosition")) for p in paths]
        frame = pd.DataFrame({
            "image_path": [str(p) for p in paths],
            "image_id": ids,
            "study_id": ids,
            "patient_id": [h["PatientID"] or i for h, i in zip(headers, ids)],
            "split": "",
            "view": [h["ViewPosition"] or FRONTAL for h in headers],
            "report": None,
            "Pneumothorax": per_image.to_numpy(float),
        })
        if self.options.split_dir:
            splits = read_gloria_splits(Path(self.options.split_dir), "ImageId",
                                        {"train": ("train.csv",), "validate": ("valid.csv", "val.csv"),
                                         "test": ("test.csv",)})
            frame["split"] = frame["image_id"].map(splits)
            frame = self.skip(frame, frame["split"].isna().to_numpy(), "not in any GLoRIA split file",
                              self.options.split_dir)
        return frame
