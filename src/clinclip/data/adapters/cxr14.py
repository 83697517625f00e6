"""NIH ChestX-ray14.

Files under ``root``: ``Data_Entry_2017_v2020.csv`` (or ``Data_Entry_2017.csv``: Image Index, Finding
Labels pipe-separated, Follow-up #, Patient ID, Patient Age, Patient Gender, View Position, ...),
``train_val_list.txt`` and ``test_list.txt`` (one image name per line), PNGs under ``images*/`` (e.g.
``images_001/images/00000001_000.png``; found wherever they are under the root).

Labels: the 14 findings + ``No Finding``, 1/0 (the NIH labels are exhaustive; mapped to CheXpert
observations in ``clinclip.data.labels``). Splits: ``test_list.txt`` -> test; ``train_val_list.txt`` split
into train/validate by patient with the seed (validate share = validate / (train + validate) of the
split fractions); without the lists, a seeded patient-level split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clinclip.data.adapters.base import DatasetAdapter
from clinclip.data.labels import CXR14_CLASSES, CXR14_TO_OBSERVATIONS
from clinclip.data.manifest import as_id, find_file, patient_split
from clinclip.manifest import read_table


def read_list(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


class ChestXray14Adapter(DatasetAdapter):
    name = "chestxray14"
    classes = CXR14_CLASSES
    to_observations = CXR14_TO_OBSERVATIONS
    description = "ChestX-ray14: Data_Entry_2017(_v2020).csv, train_val_list.txt, test_list.txt, images*/ PNGs"

    def read(self) -> pd.DataFrame:
        entry_path = find_file(self.root, ["Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv"], "CXR14 data-entry CSV")
        table = read_table(entry_path, ["Image Index", "Finding Labels", "Patient ID", "View Position"],
                           dtype={"Patient ID": str, "Image Index": str})
        self.rows_read = len(table)
        names = table["Image Index"].astype(str).str.strip()
        findings = [set(x.strip() for x in str(v).split("|") if x.strip()) for v in table["Finding Labels"]]
        unknown = np.array([bool(f - set(CXR14_CLASSES)) or not f for f in findings])
        index = {p.name: p for p in self.root.rglob("*.png")}
        follow = table["Follow-up #"] if "Follow-up #" in table.columns else pd.Series(0, index=table.index)
        patient = as_id(table["Patient ID"])
        frame = pd.DataFrame({
            "image_path": [str(index.get(n, self.root / "images" / n)) for n in names],
            "image_id": [Path(n).stem for n in names],
            "study_id": [f"{p}_{as_id(pd.Series([f]))[0]}" for p, f in zip(patient, follow)],
            "patient_id": patient,
            "split": "",
            "view": table["View Position"],
            "report": None,
        })
        for cls in CXR14_CLASSES:
            frame[cls] = [1.0 if cls in f else 0.0 for f in findings]
        for extra, column in (("age", "Patient Age"), ("sex", "Patient Gender")):
            if column in table.columns:
                frame[extra] = table[column].to_numpy()
        bad_labels = [sorted(f - set(CXR14_CLASSES)) or ["(blank)"] for f, u in zip(findings, unknown) if u]
        if unknown.any():
            for key, labels in zip(frame.loc[unknown, "image_id"], bad_labels):
                self.skips.add(f"unknown finding label(s) {labels} in Finding Labels", entry_path, key)
            frame = frame[~unknown].copy()
        train_val, test = self.root / "train_val_list.txt", self.root / "test_list.txt"
        if train_val.is_file() or test.is_file():
            in_test = read_list(test) if test.is_file() else set()
            in_train_val = read_list(train_val) if train_val.is_file() else set()
            file_names = frame["image_path"].map(lambda p: Path(p).name)
            frame.loc[file_names.isin(in_test).to_numpy(), "split"] = "test"
            tv = file_names.isin(in_train_val).to_numpy() & (frame["split"] == "").to_numpy()
            f_train, f_val, _ = self.options.split_fractions
            share = f_val / (f_train + f_val) if f_train + f_val > 0 else 0.0
            assignment = patient_split(frame.loc[tv, "patient_id"], (1 - share, share, 0.0), self.options.seed)
            frame.loc[tv, "split"] = frame.loc[tv, "patient_id"].map(assignment)
            listed = (frame["split"] != "").to_numpy()
            frame = self.skip(frame, ~listed, "image in neither train_val_list.txt nor test_list.txt", entry_path)
        return frame
