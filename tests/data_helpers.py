"""Helpers for the data-adapter tests: real DICOM files written with pydicom, gzipped CSVs, PNG/JPEG files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd


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
