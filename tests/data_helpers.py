"""Helpers for the data-adapter tests: real DICOM files written with pydicom, gzipped CSVs, PNG/JPEG files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd

from clinclip.observations import OBSERVATIONS

NAN = float("nan")


def write_dicom(path: Path, pixels: np.ndarray, *, photometric: str = "MONOCHROME2", bits_stored: int | None = None,
                window: tuple[float, float] | None = None, voi_lut: tuple[int, np.ndarray] | None = None,
                rescale: tuple[float, float] | None = None, signed: bool = False, view: str | None = None,
                patient_id: str = "P0", preamble: bool = True, extra: dict | None = None) -> Path:
    """Write a single-frame grayscale DICOM (Explicit VR Little Endian) the way a CXR scanner would.

    ``window`` = (center, width); ``voi_lut`` = (first_mapped_value, uint16 LUT entries);
    ``rescale`` = (slope, intercept)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.dataset import Dataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    pixels = np.asarray(pixels)
    if pixels.dtype == np.uint8:
        bits_allocated = 8
    else:
        pixels = pixels.astype(np.int16 if signed else np.uint16)
        bits_allocated = 16
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128 if preamble else None)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientID = patient_id
    if view:
        ds.ViewPosition = view
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored or bits_allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if voi_lut is not None:
        first, entries = voi_lut
        entries = np.asarray(entries, dtype=np.uint16)
        item = Dataset()
        item.LUTDescriptor = [len(entries), int(first), 16]
        item.LUTData = [int(v) for v in entries]
        item["LUTData"].VR = "US"
        ds.VOILUTSequence = Sequence([item])
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=preamble)
    return path


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write a CSV, gzipped when the name ends in .gz (as MIMIC-CXR-JPG publishes them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if str(path).endswith(".gz"):
        with gzip.open(path, "wt", newline="") as handle:
            frame.to_csv(handle, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def write_png(path: Path, pixels: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels)).save(path)
    return path


def gradient(height: int = 24, width: int = 20, high: int = 255, dtype=np.uint8) -> np.ndarray:
    """A left-to-right ramp 0..high: easy to check orientation, scaling and inversion on."""
    ramp = np.linspace(0, high, width).round().astype(dtype)
    return np.tile(ramp, (height, 1))


# --- small copies of published dataset layouts (adapter and prepare tests) ---------------------------


def _chexpert_row(subject, study, **values):
    row = {"subject_id": subject, "study_id": study}
    row.update({name: values.get(name, NAN) for name in sorted(OBSERVATIONS)})  # alphabetical, as published
    return row


def make_mimic(root, reports_root=None):
    reports_root = reports_root or root
    images = [  # dicom_id, subject, study, split, view
        ("d1", "10000032", "50414267", "train", "PA"),
        ("d2", "10000032", "50414267", "train", "LATERAL"),
        ("d3", "10000032", "53189527", "train", "AP"),
        ("d4", "11000011", "52000001", "validate", "PA"),
        ("d5", "11000011", "52000002", "test", "PA"),  # its report is missing
        ("d6", "19999999", "59999999", "test", "PA"),  # listed, image absent
        ("d7", "19999999", "59999999", "test", ""),  # no ViewPosition
    ]
    write_csv(pd.DataFrame([{"dicom_id": d, "study_id": st, "subject_id": su, "split": sp}
                            for d, su, st, sp, _ in images]), root / "mimic-cxr-2.0.0-split.csv.gz")
    write_csv(pd.DataFrame([{"dicom_id": d, "subject_id": su, "study_id": st,
                             "PerformedProcedureStepDescription": "CHEST (PA AND LAT)", "ViewPosition": v or None,
                             "Rows": 32, "Columns": 32, "StudyDate": 21800506, "StudyTime": 213014.531,
                             "ProcedureCodeSequence_CodeMeaning": "CHEST (PA AND LAT)",
                             "ViewCodeSequence_CodeMeaning": "postero-anterior",
                             "PatientOrientationCodeSequence_CodeMeaning": "Erect"}
                            for d, su, st, _, v in images]), root / "mimic-cxr-2.0.0-metadata.csv.gz")
    write_csv(pd.DataFrame([
        _chexpert_row("10000032", "50414267", **{"No Finding": 1.0}),
        _chexpert_row("10000032", "53189527", **{"Pleural Effusion": 1.0, "Edema": -1.0, "Pneumothorax": 0.0}),
        _chexpert_row("11000011", "52000002", **{"Cardiomegaly": 1.0}),
        # 52000001 has no labels row (as for MIMIC studies without findings/impression)
    ]), root / "mimic-cxr-2.0.0-chexpert.csv.gz")
    for d, su, st, _, _ in images:
        if d != "d6":
            write_png(root / f"files/p{su[:2]}/p{su}/s{st}/{d}.jpg", gradient())
    for su, st, text in [("10000032", "50414267", "FINDINGS: Normal chest.\nIMPRESSION: No acute process."),
                         ("10000032", "53189527", "IMPRESSION: Small left effusion."),
                         ("11000011", "52000001", "IMPRESSION: Stable."),
                         ("19999999", "59999999", "IMPRESSION: Clear.")]:
        path = reports_root / f"files/p{su[:2]}/p{su}/s{st}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def make_rsna(root):
    write_csv(pd.DataFrame([
        {"patientId": "0004cfab-14fd-4e49-80ba-63a80b6bddd6", "x": None, "y": None, "width": None, "height": None, "Target": 0},
        {"patientId": "00436515-870c-4b36-a041-de91049b9ab4", "x": 264, "y": 152, "width": 213, "height": 379, "Target": 1},
        {"patientId": "00436515-870c-4b36-a041-de91049b9ab4", "x": 562, "y": 152, "width": 256, "height": 453, "Target": 1},
        {"patientId": "003d8fa0-6bf1-40ed-b54c-ac657f8495c5", "x": None, "y": None, "width": None, "height": None, "Target": 0},
        {"patientId": "00c0b293-48e7-4e16-ac76-9269ba535a62", "x": None, "y": None, "width": None, "height": None, "Target": 0},
    ]), root / "stage_2_train_labels.csv")
    write_csv(pd.DataFrame([
        {"patientId": "0004cfab-14fd-4e49-80ba-63a80b6bddd6", "class": "No Lung Opacity / Not Normal"},
        {"patientId": "00436515-870c-4b36-a041-de91049b9ab4", "class": "Lung Opacity"},
        {"patientId": "00436515-870c-4b36-a041-de91049b9ab4", "class": "Lung Opacity"},
        {"patientId": "003d8fa0-6bf1-40ed-b54c-ac657f8495c5", "class": "Normal"},
        {"patientId": "00c0b293-48e7-4e16-ac76-9269ba535a62", "class": "Normal"},
    ]), root / "stage_2_detailed_class_info.csv")
    views = {"0004cfab-14fd-4e49-80ba-63a80b6bddd6": "PA", "00436515-870c-4b36-a041-de91049b9ab4": "AP",
             "003d8fa0-6bf1-40ed-b54c-ac657f8495c5": "PA"}  # 00c0b293 has no image
    for pid, view in views.items():
        write_dicom(root / "stage_2_train_images" / f"{pid}.dcm", gradient(), view=view, patient_id=pid)
