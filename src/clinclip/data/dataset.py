"""Images and labels as a torch ``Dataset``, torchxrayvision style, for a notebook or any training loop
(no clinclip trainer needed)::

    from clinclip.data import ADAPTERS, XRayDataset
    ds = ADAPTERS["chexpert-5x200"]("/data/CheXpert-v1.0-small").dataset(transform=model.image_transform())
    ds.pathologies          # label names, the order of item["lab"]
    ds[0]                   # {"img": 3×S×S float tensor, "lab": float32 (1 / 0 / NaN), "idx": 0}
    torch.utils.data.DataLoader(ds, batch_size=32, num_workers=4)

An adapter indexes directly (``adapter[i]``, the default options below); ``XRayDataset.from_manifest``
reads a manifest written by ``clinclip prepare``. Uncertain labels (-1) become NaN like torchxrayvision's
default; ``uncertain="keep"`` keeps -1, ``"positive"`` / ``"negative"`` map them to 1 / 0 (U-ones, U-zeros).
Without a transform ``img`` is the image as loaded, a 1×H×W float tensor in [0, 1].
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from clinclip.errors import ClinclipError
from clinclip.observations import OBSERVATIONS

UNCERTAIN_POLICIES = {"nan": np.nan, "keep": -1.0, "positive": 1.0, "negative": 0.0}


class XRayDataset:
    """``len(ds)`` images; ``ds[i]`` -> ``{"img", "lab", "idx"}``. Works with ``torch.utils.data.DataLoader``
    (map-style: ``__len__`` + ``__getitem__``) and pickles for its worker processes."""

    def __init__(self, metadata: pd.DataFrame, labels: np.ndarray, pathologies: Sequence[str],
                 transform: Callable | None = None, uncertain: str = "nan"):
        if uncertain not in UNCERTAIN_POLICIES:
            raise ClinclipError(f"uncertain={uncertain!r}; allowed: {', '.join(UNCERTAIN_POLICIES)}")
        labels = np.asarray(labels, dtype=np.float32).reshape(len(metadata), len(pathologies))
        if "image_path" not in metadata.columns:
            raise ClinclipError("XRayDataset: the metadata has no image_path column")
        self.metadata = metadata.reset_index(drop=True)
        self.pathologies = list(pathologies)
        self.labels = np.where(labels == -1.0, np.float32(UNCERTAIN_POLICIES[uncertain]), labels).astype(np.float32)
        self.transform = transform
        self.uncertain = uncertain

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_adapter(cls, adapter, transform: Callable | None = None, split: str | None = None,
                     uncertain: str = "nan") -> "XRayDataset":
        """The adapter's rows (one split, or all), labels in its ``.pathologies`` order."""
        keep = np.ones(len(adapter.metadata), dtype=bool) if split in (None, "all") else \
            (adapter.metadata["split"] == split).to_numpy()
        return cls(adapter.metadata[keep], adapter.labels[keep], adapter.pathologies, transform, uncertain)

    @classmethod
    def from_manifest(cls, manifest: str | Path | pd.DataFrame, pathologies: Sequence[str] | None = None,
                      transform: Callable | None = None, split: str | None = None,
                      uncertain: str = "nan") -> "XRayDataset":
        """A manifest (Parquet/CSV path or frame); ``pathologies`` default to the CheXpert observations it
        has, in clinclip's order."""
        from clinclip.manifest import read_manifest, select_split

        if isinstance(manifest, pd.DataFrame):
            frame, where = manifest, "manifest"
        else:
            frame, where = read_manifest(manifest), str(manifest)
        frame = select_split(frame, split, where)
        names = list(pathologies) if pathologies is not None else [o for o in OBSERVATIONS if o in frame.columns]
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise ClinclipError(f"{where}: no label column(s) {missing}")
        try:
            labels = frame[names].apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float32)
        except (ValueError, TypeError) as err:
            raise ClinclipError(f"{where}: label columns must hold 1 / 0 / -1 / blank ({err})") from None
        return cls(frame, labels, names, transform, uncertain)

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.metadata)

    def __getitem__(self, idx: int) -> dict:
        import torch

        from clinclip.data.images import load_image

        if not -len(self) <= idx < len(self):
            raise IndexError(f"index {idx} out of range for {len(self)} images")
        idx = int(idx) % len(self)
        image = load_image(self.metadata.at[idx, "image_path"])
        if self.transform is not None:
            img = self.transform(image)
        else:
            img = torch.from_numpy(np.ascontiguousarray(image)).float().div_(255.0)[None]
        return {"img": img, "lab": torch.from_numpy(self.labels[idx].copy()), "idx": idx}

    def __repr__(self) -> str:
        return (f"XRayDataset(images={len(self)}, pathologies={len(self.pathologies)}, "
                f"uncertain={self.uncertain!r}, transform={self.transform!r})")
