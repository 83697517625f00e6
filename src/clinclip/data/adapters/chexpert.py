"""CheXpert Plus (reports + CheXpert images) and CheXpert 5x200 (GLoRIA's zero-shot benchmark)."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from clinclip.data.adapters.base import DatasetAdapter
from clinclip.data.labels import CHEXPERT_5X200_CLASSES, CHEXPERT_5X200_TO_OBSERVATIONS, IDENTITY_TO_OBSERVATIONS
from clinclip.data.manifest import FRONTAL, LATERAL, as_id, find_file
from clinclip.errors import ClinclipError
from clinclip.manifest import read_table
from clinclip.observations import FINDINGS, OBSERVATIONS

CHEXPERT_PLUS_CSV = "df_chexpert_plus_240401.csv"


def resolve_image(root: Path, relative: str, alternatives: tuple[str, ...] = (".png",)) -> str:
    """The file a CheXpert-style relative path names: ``root/path``; the same with another suffix (the
    CheXpert Plus PNG release keeps ``.jpg`` names in its CSV); without a leading ``CheXpert-v1.0*/``
    folder; or beside ``root``. Falls back to ``root/path`` (then reported as not found)."""
    rel = PurePosixPath(str(relative).replace("\\", "/"))
    candidates = [root / rel]
    candidates += [root / rel.with_suffix(s) for s in alternatives if rel.suffix != s]
    if len(rel.parts) > 1 and rel.parts[0].lower().startswith("chexpert"):
        stripped = PurePosixPath(*rel.parts[1:])
        candidates += [root / stripped] + [root / stripped.with_suffix(s) for s in alternatives]
        candidates.append(root.parent / rel)
    candidates += [root / "PNG" / rel.with_suffix(".png")]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return str(candidates[0])


def chexpert_view(frontal_lateral, ap_pa) -> str:
    if str(frontal_lateral).strip().lower() == "lateral":
        return LATERAL
    ap_pa = str(ap_pa).strip().upper() if isinstance(ap_pa, str) else ""
    return ap_pa if ap_pa in ("AP", "PA") else FRONTAL


def study_key(relative: str) -> tuple[str, str]:
    """(patient, study) from ``.../patient00001/study1/view1_frontal.jpg``."""
    parts = PurePosixPath(str(relative).replace("\\", "/")).parts
    patient = next((p for p in parts if p.startswith("patient")), "")
    study = next((p for p in parts if p.startswith("study")), "")
    return patient, f"{patient}/{study}" if study else patient


def read_label_file(path: Path) -> pd.DataFrame:
    """CheXpert Plus CheXbert labels (``report_fixed.json``/``impression_fixed.json``: JSON lines with
    ``path_to_image`` and the 14 observations) or a CSV with the same columns."""
    path = Path(path)
    if not path.is_file():
        raise ClinclipError(f"chexpert-plus label file {path} not found")
    if path.suffix in (".json", ".jsonl"):
        records = []
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise ClinclipError(f"{path} line {number}: not a JSON object ({err})") from None
        frame = pd.DataFrame.from_records(records)
        missing = [c for c in ("path_to_image", *OBSERVATIONS) if c not in frame.columns]
        if missing:
            raise ClinclipError(f"{path}: missing column(s) {missing}; columns found: {list(frame.columns)}")
        return frame
    return read_table(path, ["path_to_image", *OBSERVATIONS], what="chexpert-plus label file")


class ChexpertPlusAdapter(DatasetAdapter):
    name = "chexpert-plus"
    classes = OBSERVATIONS
    to_observations = IDENTITY_TO_OBSERVATIONS
    has_reports = True
    description = "CheXpert Plus: df_chexpert_plus_240401.csv (+ --labels CheXbert file), CheXpert images"

    def read(self) -> pd.DataFrame:
        path = find_file(self.root, [CHEXPERT_PLUS_CSV] + sorted(p.name for p in self.root.glob("df_chexpert_plus_*.csv")),
                         "CheXpert Plus report CSV")
        table = read_table(path, ["path_to_image", "frontal_lateral", "ap_pa", "deid_patient_id", "report", "split"],
                           dtype={"deid_patient_id": str, "path_to_image": str}, low_memory=False)
        self.rows_read = len(table)
        keys = [study_key(p) for p in table["path_to_image"]]
        report = table["report"].astype("string")
        sections = [c for c in ("section_findings", "section_impression") if c in table.columns]
        if sections:  # a blank full report with sections present: rebuild it from them
            built = table[sections].fillna("").astype(str).apply(
                lambda row: " ".join(f"{name.split('_', 1)[1].upper()}: {text.strip()}"
                                     for name, text in row.items() if text.strip()), axis=1)
            blank = report.isna() | (report.str.strip() == "")
            report = report.where(~blank, built.where(built != "", None))
        frame = pd.DataFrame({
            "image_path": [resolve_image(self.root, p) for p in table["path_to_image"]],
            "image_id": [str(PurePosixPath(p).with_suffix("")).replace("/", "_") for p in table["path_to_image"]],
            "study_id": [s for _, s in keys],
            "patient_id": as_id(table["deid_patient_id"]),
            "split": table["split"],
            "view": [chexpert_view(f, a) for f, a in zip(table["frontal_lateral"], table["ap_pa"])],
            "report": report.astype(object).where(report.notna(), None),
            "path_to_image": table["path_to_image"],
        })
        for extra in ("age", "sex", "patient_report_date_order"):
            if extra in table.columns:
                frame[extra] = table[extra]
        if self.options.labels:
            labels = read_label_file(Path(self.options.labels)).drop_duplicates("path_to_image")
            merged = frame.merge(labels[["path_to_image", *OBSERVATIONS]], on="path_to_image", how="left", indicator=True)
            merged.index = frame.index
            merged["_note"] = np.where(merged["_merge"] == "left_only",
                                       f"images without a row in {Path(self.options.labels).name} (kept, labels blank)",
                                       None)
            frame = merged.drop(columns="_merge")
        else:
            self.class_columns = []
            self.skips.note("no --labels file given: manifest has no label columns")
        return frame


class Chexpert5x200Adapter(DatasetAdapter):
    """GLoRIA's CheXpert 5x200: from its ``chexpert_5x200.csv`` when present, else built from CheXpert's
    ``train.csv`` as GLoRIA does: frontal images, one per study, whose five competition findings have exactly
    one positive and every other finding negative or blank (uncertain rows excluded); ``per_class`` (200)
    sampled per class with the seed. All rows are ``test``."""

    name = "chexpert-5x200"
    classes = CHEXPERT_5X200_CLASSES
    to_observations = CHEXPERT_5X200_TO_OBSERVATIONS
    description = "CheXpert 5x200: GLoRIA's chexpert_5x200.csv, or built from CheXpert train.csv (seeded)"

    def read(self) -> pd.DataFrame:
        gloria = self.options.table or (self.root / "chexpert_5x200.csv")
        if Path(gloria).is_file():
            return self._read_gloria(Path(gloria))
        return self._build_from_train(find_file(self.root, ["train.csv", "CheXpert-v1.0/train.csv"], "CheXpert train.csv "
                                                "(or GLoRIA's chexpert_5x200.csv)"))

    def _read_gloria(self, path: Path) -> pd.DataFrame:
        table = read_table(path, ["Path", *CHEXPERT_5X200_CLASSES], what="GLoRIA 5x200 CSV", dtype={"Path": str})
        self.rows_read = len(table)
        onehot = table[list(CHEXPERT_5X200_CLASSES)].apply(pd.to_numeric, errors="coerce").fillna(0)
        bad = (onehot == 1).sum(axis=1) != 1
        frame = self._rows(table, onehot.astype(float))
        if "Report Impression" in table.columns:
            frame["report"] = table["Report Impression"].astype(object).where(table["Report Impression"].notna(), None)
        return self.skip(frame, bad.to_numpy(), "not exactly one of the five classes positive", path)

    def _build_from_train(self, path: Path) -> pd.DataFrame:
        table = read_table(path, ["Path", "Frontal/Lateral", *OBSERVATIONS], what="CheXpert train.csv",
                           dtype={"Path": str})
        self.rows_read = len(table)
        table = table[table["Frontal/Lateral"].astype(str).str.lower() == "frontal"].copy()
        table["_study"] = [study_key(p)[1] for p in table["Path"]]
        table = table.drop_duplicates("_study", keep="first")
        findings = table[list(FINDINGS)].apply(pd.to_numeric, errors="coerce").fillna(0)
        rng = np.random.default_rng(self.options.seed)
        chosen = []
        for cls in CHEXPERT_5X200_CLASSES:
            others = [f for f in FINDINGS if f != cls]
            eligible = table.index[(findings[cls] == 1) & (findings[others] == 0).all(axis=1)]
            n = min(self.options.per_class, len(eligible))
            if n < self.options.per_class:
                self.skips.note(f"only {len(eligible)} eligible studies for {cls} (wanted {self.options.per_class})")
            chosen.extend(sorted(rng.choice(np.asarray(eligible), size=n, replace=False).tolist()) if n else [])
        self.skips.note("train.csv rows not sampled into 5x200 (not a reason to worry: the benchmark is a sample)",
                        self.rows_read - len(chosen))
        picked = table.loc[chosen]
        onehot = pd.DataFrame({c: (picked[c].astype(float) == 1).astype(float) for c in CHEXPERT_5X200_CLASSES},
                              index=picked.index)
        self.rows_read = len(picked)  # the candidate images; the unsampled rest is a note, not a skip
        return self._rows(picked, onehot)

    def _rows(self, table: pd.DataFrame, onehot: pd.DataFrame) -> pd.DataFrame:
        keys = [study_key(p) for p in table["Path"]]
        frame = pd.DataFrame({
            "image_path": [resolve_image(self.root, p) for p in table["Path"]],
            "image_id": [str(PurePosixPath(p).with_suffix("")).replace("/", "_") for p in table["Path"]],
            "study_id": [s for _, s in keys],
            "patient_id": [p for p, _ in keys],
            "split": "test",
            "view": [chexpert_view(table.get("Frontal/Lateral", pd.Series("Frontal", index=table.index)).loc[i],
                                   table["AP/PA"].loc[i] if "AP/PA" in table.columns else "") for i in table.index],
            "report": None,
        }, index=table.index)
        for column in CHEXPERT_5X200_CLASSES:
            frame[column] = onehot[column].to_numpy()
        return frame.reset_index(drop=True)
