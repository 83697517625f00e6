"""VinDr-CXR 1.0.0 (PhysioNet).

Files under ``root``: ``annotations/image_labels_train.csv`` (image_id, rad_id, one 0/1 column per class;
three radiologists, so three rows per image) and ``annotations/image_labels_test.csv`` (one consensus row
per image), DICOMs ``train/<image_id>.dicom`` and ``test/<image_id>.dicom``. Either label file may be absent,
not both. Train labels are aggregated per image: ``majority`` (default: positive when more than half of the
radiologists marked it, i.e. 2 of 3) or ``any`` (positive when one did). Classes are the label columns of
the files (``clinclip.data.labels.VINDR_CLASSES`` for 1.0.0). VinDr has no patient ids: each image is its own
patient; the published train/test split is kept.
"""

from __future__ import annotations

import pandas as pd

from clinclip.data.adapters.base import DatasetAdapter
from clinclip.data.labels import VINDR_CLASSES, VINDR_TO_OBSERVATIONS
from clinclip.data.manifest import FRONTAL
from clinclip.errors import ClinclipError
from clinclip.manifest import read_table

ID_COLUMNS = ("image_id", "rad_id")


class VindrCxrAdapter(DatasetAdapter):
    name = "vindr-cxr"
    classes = VINDR_CLASSES
    to_observations = VINDR_TO_OBSERVATIONS
    description = "VinDr-CXR: annotations/image_labels_{train,test}.csv, {train,test}/<image_id>.dicom"

    def read(self) -> pd.DataFrame:
        if self.options.vindr_aggregate not in ("majority", "any"):
            raise ClinclipError(f"vindr-cxr: aggregate must be 'majority' or 'any', got {self.options.vindr_aggregate!r}")
        frames, classes = [], []
        for split in ("train", "test"):
            path = next((p for p in (self.root / "annotations" / f"image_labels_{split}.csv",
                                     self.root / f"image_labels_{split}.csv") if p.is_file()), None)
            if path is None:
                continue
            table = read_table(path, ["image_id"], dtype={"image_id": str, "rad_id": str})
            label_columns = [c for c in table.columns if c not in ID_COLUMNS]
            if not label_columns:
                raise ClinclipError(f"{path}: no label columns besides {list(ID_COLUMNS)}")
            values = table[label_columns].apply(pd.to_numeric, errors="coerce")
            bad = values.isna().any(axis=1) | ~values.isin([0, 1]).all(axis=1)
            if bad.any():
                self.skips.add("a label value is not 0 or 1", path, table.loc[bad, "image_id"])
            values = values[~bad]
            values.insert(0, "image_id", table.loc[~bad, "image_id"].astype(str).str.strip())
            grouped = values.groupby("image_id", sort=True)
            if self.options.vindr_aggregate == "any":
                labels = grouped.max()
            else:
                labels = (grouped.mean() > 0.5).astype(float)
            n_readers = grouped.size()
            self.rows_read += len(labels) + int(bad.sum())
            folder = self.root / split
            frame = pd.DataFrame({
                "image_path": [str(folder / f"{i}.dicom") for i in labels.index],
                "image_id": labels.index.astype(str), "study_id": labels.index.astype(str),
                "patient_id": labels.index.astype(str), "split": split, "view": FRONTAL, "report": None,
                "n_readers": n_readers.reindex(labels.index).to_numpy(),
            })
            for column in label_columns:
                frame[column] = labels[column].to_numpy(float)
            frames.append(frame)
            classes += [c for c in label_columns if c not in classes]
        if not frames:
            raise ClinclipError(f"vindr-cxr: no label file found: looked for "
                                f"{self.root / 'annotations' / 'image_labels_train.csv'} and image_labels_test.csv")
        unknown = [c for c in classes if c not in VINDR_CLASSES]
        if unknown:
            self.skips.note(f"label columns not in the 1.0.0 class list, kept as they are: {unknown}")
        self.class_columns = classes
        return pd.concat(frames, ignore_index=True)
