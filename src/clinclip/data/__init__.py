"""Data adapters: each dataset's published files -> one manifest (docs/ARCHITECTURE.md "Data manifest");
image I/O (``images``); resized-image preparation (``prepare_images``); torch transforms (``transforms``);
images + labels as a torch Dataset (``XRayDataset``, ``adapter.dataset()``). Documented in docs/data.md."""

from clinclip.data.adapters import ADAPTERS, AdapterOptions, DatasetAdapter, PrepareSummary
from clinclip.data.dataset import XRayDataset
from clinclip.data.images import ImageReadError, load_image, save_image_uint8
from clinclip.data.prepare import build_manifest
from clinclip.manifest import read_manifest

__all__ = ["ADAPTERS", "AdapterOptions", "DatasetAdapter", "ImageReadError", "PrepareSummary", "build_manifest",
           "load_image", "read_manifest", "save_image_uint8", "XRayDataset"]
