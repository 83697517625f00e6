"""Adapters and manifests as torch Datasets (torchxrayvision style): items carry the image tensor, the label
vector in ``.pathologies`` order (1 / 0 / NaN) and the index, usable with a DataLoader and no trainer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from data_helpers import make_mimic, write_png

from clinclip.data import ADAPTERS, XRayDataset, build_manifest
from clinclip.data.transforms import ImageTransform
from clinclip.errors import ClinclipError
from clinclip.observations import OBSERVATIONS

# The miniature MIMIC-CXR-JPG layout keeps d1 (No Finding 1), d3 (Effusion 1, Edema -1, Pneumothorax 0), d4.
BRIGHTNESS = {"d1": 40, "d3": 120, "d4": 200}

@pytest.fixture()
def mimic_root(tmp_path):
    root = tmp_path / "mimic-cxr-jpg"
    make_mimic(root)
    for path in root.rglob("d*.jpg"):  # a distinct image per row, to check that item i is row i's image
        write_png(path, np.full((24, 20), BRIGHTNESS.get(path.stem, 0), dtype=np.uint8))
    return root

def test_adapter_items_carry_image_labels_and_index(mimic_root):
    adapter = ADAPTERS["mimic-cxr"](mimic_root)
    assert len(adapter) == 3 and adapter.pathologies == list(OBSERVATIONS)
    for i in range(len(adapter)):
        item = adapter[i]
        image_id = adapter.metadata.at[i, "image_id"]
        assert item["idx"] == i and item["img"].shape == (1, 24, 20) and item["lab"].dtype == torch.float32
        assert item["img"].mean().item() == pytest.approx(BRIGHTNESS[image_id] / 255, abs=1e-6)
        lab = dict(zip(adapter.pathologies, item["lab"].tolist()))
        if image_id == "d1":
            assert lab["No Finding"] == 1.0 and math.isnan(lab["Cardiomegaly"])
        elif image_id == "d3":  # uncertain Edema (-1) becomes NaN, as in torchxrayvision
            assert (lab["Pleural Effusion"], lab["Pneumothorax"]) == (1.0, 0.0) and math.isnan(lab["Edema"])
        else:
            assert all(math.isnan(v) for v in lab.values())
    with pytest.raises(IndexError):
        adapter[3]

def test_uncertain_policies_split_transform_and_dataloader(mimic_root):
    adapter = ADAPTERS["mimic-cxr"](mimic_root)
    edema = adapter.pathologies.index("Edema")
    d3 = int(np.flatnonzero(adapter.metadata["image_id"] == "d3")[0])
    assert adapter.dataset(uncertain="keep")[d3]["lab"][edema] == -1.0
    assert adapter.dataset(uncertain="positive")[d3]["lab"][edema] == 1.0
    assert adapter.dataset(uncertain="negative")[d3]["lab"][edema] == 0.0
    with pytest.raises(ClinclipError, match="uncertain"):
        adapter.dataset(uncertain="ones")
    train = adapter.dataset(split="train", transform=ImageTransform(16, mean=(0.5,) * 3, std=(0.5,) * 3))
    assert len(train) == 2 and set(train.metadata["image_id"]) == {"d1", "d3"}
    batch = next(iter(torch.utils.data.DataLoader(train, batch_size=2)))
    assert batch["img"].shape == (2, 3, 16, 16) and batch["lab"].shape == (2, len(OBSERVATIONS))
    assert batch["idx"].tolist() == [0, 1]

def test_manifest_dataset_matches_the_adapter(mimic_root, tmp_path):
    out = tmp_path / "m.parquet"
    build_manifest("mimic-cxr", mimic_root, out)
    from_manifest = XRayDataset.from_manifest(out)
    adapter = ADAPTERS["mimic-cxr"](mimic_root).dataset()
    assert from_manifest.pathologies == adapter.pathologies and len(from_manifest) == len(adapter)
    for i in range(len(adapter)):
        a, b = adapter[i], from_manifest[i]
        assert torch.equal(a["img"], b["img"]) and torch.allclose(a["lab"], b["lab"], equal_nan=True)
    picked = XRayDataset.from_manifest(out, pathologies=["Edema", "No Finding"], split="validate")
    assert len(picked) == 1 and picked[0]["lab"].shape == (2,)
    with pytest.raises(ClinclipError, match="no label column"):
        XRayDataset.from_manifest(out, pathologies=["Nodule size"])
