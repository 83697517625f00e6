"""Helpers for the phantom tests: read a generated collection back, and measure images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from clinclip.phantom.generate import CHEXPERT_CSV, SPLIT_CSV, load_truth


def read_collection(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """(truth table, chexpert table aligned to it, images N×H×W float32), read through the layout."""
    truth = load_truth(root)
    split = pd.read_csv(root / SPLIT_CSV, dtype={"dicom_id": str})
    by_dicom = split.set_index("dicom_id")
    images = []
    for dicom_id in truth["dicom_id"]:
        row = by_dicom.loc[dicom_id]
        subject = f"{int(row['subject_id']):08d}"
        path = root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{int(row['study_id'])}" / f"{dicom_id}.jpg"
        images.append(np.asarray(Image.open(path), dtype=np.float32))
    chexpert = pd.read_csv(root / CHEXPERT_CSV).set_index(["subject_id", "study_id"])
    chexpert = chexpert.loc[list(zip(truth["subject_id"], truth["study_id"]))].reset_index()
    return truth, chexpert, np.stack(images)


def zone(size: int, y0: float, y1: float, x0: float, x1: float) -> np.ndarray:
    """Mask of a region in normalised coordinates (|x| between x0 and x1: both sides)."""
    axis = np.linspace(-1, 1, size)
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    return (yy >= y0) & (yy < y1) & (np.abs(xx) >= x0) & (np.abs(xx) < x1)


def normalised(images: np.ndarray) -> np.ndarray:
    """Per image: 0 = dark lung, 1 = soft tissue below the diaphragm (cancels exposure and gamma)."""
    size = images.shape[-1]
    lung = np.percentile(images[:, zone(size, -0.5, 0.0, 0.25, 0.6)], 20, axis=1)
    tissue = np.median(images[:, zone(size, 0.75, 0.95, 0.0, 0.5)], axis=1)
    return (images - lung[:, None, None]) / (tissue - lung + 1e-3)[:, None, None]


def heart_width(images: np.ndarray) -> np.ndarray:
    """Bright (soft-tissue-like) pixels across the lower chest: the cardiac silhouette's width."""
    size = images.shape[-1]
    return ((normalised(images) > 0.5) & zone(size, 0.15, 0.35, 0.0, 0.9)).sum(axis=(1, 2)).astype(float)


def mediastinum_width(images: np.ndarray) -> np.ndarray:
    size = images.shape[-1]
    return ((normalised(images) > 0.5) & zone(size, -0.55, -0.3, 0.0, 0.5)).sum(axis=(1, 2)).astype(float)


def basal_lateral_density(images: np.ndarray) -> np.ndarray:
    """Mean normalised intensity of the lateral lung bases (where an effusion's meniscus sits)."""
    size = images.shape[-1]
    mask = zone(size, 0.2, 0.42, 0.35, 0.7)
    return normalised(images)[:, mask].mean(axis=1)


def metal_pixels(images: np.ndarray) -> np.ndarray:
    """Saturated pixels: tubes, leads and generators are denser than any anatomy."""
    return (images >= 245).sum(axis=(1, 2)).astype(float)
