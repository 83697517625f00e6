"""Every dataset's own label classes, and the one place where they are mapped to clinclip's 14 CheXpert
observations (``clinclip.observations.OBSERVATIONS``).

A manifest keeps each dataset's classes under the dataset's own names (the evaluation prompt files refer
to them: CXR14's ``Effusion``, VinDr's ``Pleural effusion``, ...). Where a class is the same finding as a
CheXpert observation, the observation column is added as well, computed by ``map_to_observations``:
an observation is 1 when any of its source classes is 1, -1 when none is 1 and one is -1, 0 when all are 0,
blank otherwise. Observations with no counterpart are NOT added (a blank column would read as "negative"
to a binary evaluation). When an observation has the same name as a dataset class (``Pneumonia``), the
mapping is the identity so the two never disagree.

Mappings are deliberately conservative: only findings with the same radiological meaning. Choices that
need a word: CXR14 ``Mass``/``Nodule`` and VinDr ``Nodule/Mass``/``Lung tumor`` -> ``Lung Lesion`` (CheXpert's
Lung Lesion is "nodule or mass"); VinDr ``Rib fracture``/``Clavicle fracture`` -> ``Fracture``; CXR14
``Infiltration`` is NOT mapped to ``Lung Opacity`` (the NIH term is looser); VinDr ``Lung Opacity`` is its own
(narrower, local) class kept under the same name; dataset "no finding" classes -> ``No Finding``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clinclip.observations import OBSERVATIONS

# --- ChestX-ray14 (Data_Entry_2017 "Finding Labels", pipe-separated) --------------------------------
CXR14_CLASSES: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
    "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia", "No Finding",
)
CXR14_TO_OBSERVATIONS: dict[str, tuple[str, ...]] = {
    "Atelectasis": ("Atelectasis",),
    "Cardiomegaly": ("Cardiomegaly",),
    "Pleural Effusion": ("Effusion",),
    "Lung Lesion": ("Mass", "Nodule"),
    "Pneumonia": ("Pneumonia",),
    "Pneumothorax": ("Pneumothorax",),
    "Consolidation": ("Consolidation",),
    "Edema": ("Edema",),
    "No Finding": ("No Finding",),
}

# --- VinDr-CXR (annotations/image_labels_{train,test}.csv; the columns of the 1.0.0 release) ----------
VINDR_CLASSES: tuple[str, ...] = (
    "Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Clavicle fracture", "Consolidation",
    "Edema", "Emphysema", "Enlarged PA", "ILD", "Infiltration", "Lung Opacity", "Lung cavity", "Lung cyst",
    "Mediastinal shift", "Nodule/Mass", "Pleural effusion", "Pleural thickening", "Pneumothorax",
    "Pulmonary fibrosis", "Rib fracture", "Other lesion", "COPD", "Lung tumor", "Pneumonia", "Tuberculosis",
    "Other disease", "No finding",
)
VINDR_TO_OBSERVATIONS: dict[str, tuple[str, ...]] = {
    "Atelectasis": ("Atelectasis",),
    "Cardiomegaly": ("Cardiomegaly",),
    "Consolidation": ("Consolidation",),
    "Edema": ("Edema",),
    "Lung Opacity": ("Lung Opacity",),
    "Lung Lesion": ("Nodule/Mass", "Lung tumor"),
    "Pleural Effusion": ("Pleural effusion",),
    "Pleural Other": ("Pleural thickening",),
    "Pneumothorax": ("Pneumothorax",),
    "Pneumonia": ("Pneumonia",),
    "Fracture": ("Rib fracture", "Clavicle fracture"),
    "No Finding": ("No finding",),
}

# --- RSNA Pneumonia (stage_2_train_labels.csv Target + stage_2_detailed_class_info.csv class) ----------
RSNA_CLASS_INFO = ("Lung Opacity", "No Lung Opacity / Not Normal", "Normal")
RSNA_CLASSES: tuple[str, ...] = ("Pneumonia", "Lung Opacity", "No Finding")
RSNA_TO_OBSERVATIONS: dict[str, tuple[str, ...]] = {
    "Pneumonia": ("Pneumonia",),  # Target == 1 (RSNA's "Lung Opacity" class: opacities suspicious for pneumonia)
    "Lung Opacity": ("Lung Opacity",),
    "No Finding": ("No Finding",),  # class == "Normal"
}

# --- SIIM-ACR Pneumothorax (train-rle.csv: any mask -> positive) -------------------------------------
SIIM_CLASSES: tuple[str, ...] = ("Pneumothorax",)
SIIM_TO_OBSERVATIONS: dict[str, tuple[str, ...]] = {"Pneumothorax": ("Pneumothorax",)}

# --- CheXpert 5x200 (the five CheXpert competition findings) -----------------------------------------
CHEXPERT_5X200_CLASSES: tuple[str, ...] = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
CHEXPERT_5X200_TO_OBSERVATIONS: dict[str, tuple[str, ...]] = {c: (c,) for c in CHEXPERT_5X200_CLASSES}

# Datasets whose label files are CheXpert-labeler output: their columns are the observations themselves.
IDENTITY_TO_OBSERVATIONS: dict[str, tuple[str, ...]] = {o: (o,) for o in OBSERVATIONS}

DATASET_MAPPINGS: dict[str, dict[str, tuple[str, ...]]] = {
    "chestxray14": CXR14_TO_OBSERVATIONS,
    "vindr-cxr": VINDR_TO_OBSERVATIONS,
    "rsna-pneumonia": RSNA_TO_OBSERVATIONS,
    "siim-pneumothorax": SIIM_TO_OBSERVATIONS,
    "chexpert-5x200": CHEXPERT_5X200_TO_OBSERVATIONS,
}


def check_mapping(classes: tuple[str, ...], mapping: dict[str, tuple[str, ...]]) -> None:
    """A mapping's targets are observations, its sources are dataset classes, and an observation named like
    a dataset class maps from exactly that class (so the shared column cannot mean two things)."""
    for observation, sources in mapping.items():
        if observation not in OBSERVATIONS:
            raise ValueError(f"{observation!r} is not one of the 14 observations")
        unknown = [s for s in sources if s not in classes]
        if unknown:
            raise ValueError(f"{observation!r} maps from unknown class(es) {unknown}")
        if observation in classes and tuple(sources) != (observation,):
            raise ValueError(f"{observation!r} is also a dataset class, so it must map from itself only")


def map_to_observations(frame: pd.DataFrame, mapping: dict[str, tuple[str, ...]]) -> pd.DataFrame:
    """Observation columns from dataset-class columns (1 if any source is 1, -1 if any -1, 0 if all 0,
    else blank); sources absent from ``frame`` are treated as blank."""
    out = {}
    for observation, sources in mapping.items():
        present = [s for s in sources if s in frame.columns]
        if not present:
            continue
        values = frame[present].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        result = np.full(len(frame), np.nan)
        all_zero = (values == 0).all(axis=1) & (len(present) == len(sources))
        result[all_zero] = 0.0
        result[(values == -1).any(axis=1)] = -1.0
        result[(values == 1).any(axis=1)] = 1.0
        out[observation] = result
    return pd.DataFrame(out, index=frame.index)
