"""Sampling phantom studies: which findings each study has, and how they look (side, severity, ...).

A study is drawn from a normal-heavy prior. Abnormal studies come from a few clinical scenarios
(heart failure, pneumonia, post-operative/ICU, trauma, mass, isolated finding), which gives the
co-occurrences seen in MIMIC-CXR: effusion with atelectasis, consolidation with pneumonia and lung
opacity, edema with cardiomegaly, support devices common in ICU films.

The sampled ``StudySpec`` is the ground truth: the image is rendered from it alone (``render.py``) and
the report is written from it (``reports.py``); the report's negations never reach the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from clinclip.observations import FINDINGS, NO_FINDING, OBSERVATIONS

FINDING_INDEX = {name: i for i, name in enumerate(OBSERVATIONS)}

# Per-study random streams, so that each part depends only on what it should: the image of a study
# never depends on its report, and toggling one finding never changes how the others are drawn.
STREAM_SPEC, STREAM_REPORT, STREAM_ANATOMY, STREAM_FINDING = 0, 1, 2, 3

LOBES = {
    "right": ("right upper lobe", "right middle lobe", "right lower lobe"),
    "left": ("left upper lobe", "lingula", "left lower lobe"),
}
DEVICE_KINDS = ("endotracheal tube", "enteric tube", "central venous catheter", "pacemaker")
# How a normal study's report is written: the weight of each of reports.NORMAL_TEMPLATES plus, last,
# "compose a normal report from the phrase banks".
NORMAL_TEMPLATE_WEIGHTS = (0.3, 0.16, 0.12, 0.08, 0.06, 0.1, 0.18)

# Scenario mixture for abnormal studies: name -> (weight, {finding: probability}).
SCENARIOS: dict[str, tuple[float, dict[str, float]]] = {
    "heart_failure": (
        0.22,
        {
            "Cardiomegaly": 0.85,
            "Edema": 0.7,
            "Pleural Effusion": 0.6,
            "Enlarged Cardiomediastinum": 0.25,
            "Atelectasis": 0.3,
            "Support Devices": 0.3,
            "Lung Opacity": 0.15,
        },
    ),
    "pneumonia": (
        0.2,
        {
            "Pneumonia": 0.75,
            "Consolidation": 0.6,
            "Lung Opacity": 0.55,
            "Pleural Effusion": 0.25,
            "Atelectasis": 0.2,
            "Support Devices": 0.15,
        },
    ),
    "icu": (
        0.2,
        {
            "Support Devices": 0.95,
            "Atelectasis": 0.5,
            "Pleural Effusion": 0.45,
            "Edema": 0.2,
            "Pneumothorax": 0.15,
            "Lung Opacity": 0.25,
            "Enlarged Cardiomediastinum": 0.1,
        },
    ),
    "trauma": (
        0.08,
        {"Fracture": 0.9, "Pneumothorax": 0.45, "Pleural Effusion": 0.2, "Lung Opacity": 0.2, "Pleural Other": 0.2},
    ),
    "mass": (
        0.1,
        {"Lung Lesion": 0.9, "Pleural Other": 0.35, "Pleural Effusion": 0.2, "Atelectasis": 0.15},
    ),
    "isolated": (0.2, {}),  # exactly one finding drawn from ISOLATED_WEIGHTS
}
ISOLATED_WEIGHTS = {
    "Atelectasis": 0.17,
    "Pleural Effusion": 0.12,
    "Cardiomegaly": 0.12,
    "Lung Opacity": 0.1,
    "Lung Lesion": 0.09,
    "Pneumothorax": 0.08,
    "Enlarged Cardiomediastinum": 0.06,
    "Pleural Other": 0.1,
    "Fracture": 0.06,
    "Consolidation": 0.05,
    "Edema": 0.04,
    "Pneumonia": 0.04,
}
MAX_FINDINGS = 4
# A present finding is reported as uncertain ("possible", "cannot exclude") with this probability; it is
# then rendered subtle (lowest severity), as an uncertain read of a real, faint finding.
UNCERTAIN_RATE = {name: 0.1 for name in FINDINGS} | {
    "Pneumonia": 0.35,
    "Support Devices": 0.0,
    "Fracture": 0.1,
}


@dataclass
class PhantomConfig:
    """How the phantom collection is drawn. Defaults aim at a CPU demo: small, normal-heavy."""

    n_studies: int = 3000
    seed: int = 0
    image_size: int = 128  # the demo trains at 128 px; rendering it directly keeps generation >= 200 studies/s
    normal_fraction: float = 0.42
    support_devices_in_normal: float = 0.08
    # Patient-level split fractions (MIMIC's own is ~98/1/1; the demo needs a real held-out set).
    # The validate split is where every demo setting is chosen, so it is large enough to compare on.
    validate_fraction: float = 0.1
    test_fraction: float = 0.2
    jpeg_quality: int = 92
    # Splits whose abnormal studies also get counterfactual images (one per present finding).
    counterfactual_splits: tuple[str, ...] = ("validate", "test")


@dataclass
class StudySpec:
    """The ground truth of one study. ``present`` holds the findings truly in the image; ``uncertain``
    those the report states with hedging (a subset of ``present``); ``attrs`` how each looks."""

    index: int
    subject_id: int
    study_id: int
    dicom_id: str
    view: str  # "PA" or "AP"
    present: tuple[str, ...]
    uncertain: tuple[str, ...] = ()
    attrs: dict[str, dict] = field(default_factory=dict)
    normal_template: int | None = None  # index into reports.NORMAL_TEMPLATES, normal studies only
    has_prior: bool = False
    study_date: int = 21800101
    study_time: str = "120000.000"

    @property
    def is_normal(self) -> bool:
        return not [f for f in self.present if f != "Support Devices"]

    def truth_vector(self) -> np.ndarray:
        """True presence (1/0) of the 14 observations in OBSERVATIONS order (No Finding derived)."""
        vec = np.zeros(len(OBSERVATIONS), dtype=np.float32)
        for name in self.present:
            vec[FINDING_INDEX[name]] = 1.0
        vec[FINDING_INDEX[NO_FINDING]] = 1.0 if self.is_normal else 0.0
        return vec


def study_rng(seed: int, index: int, stream: int, *extra: int) -> np.random.Generator:
    """The random stream ``stream`` of study ``index`` (independent of every other study/stream)."""
    return np.random.default_rng([seed, index, stream, *extra])


def _dicom_id(rng: np.random.Generator) -> str:
    # MIMIC-CXR dicom ids look like "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014".
    return "-".join(f"{int(x):08x}" for x in rng.integers(0, 2**32, size=5, dtype=np.uint64))


def _sample_findings(rng: np.random.Generator, cfg: PhantomConfig) -> tuple[str, ...]:
    if rng.random() < cfg.normal_fraction:
        return ("Support Devices",) if rng.random() < cfg.support_devices_in_normal else ()
    names = list(SCENARIOS)
    weights = np.array([SCENARIOS[n][0] for n in names])
    scenario = names[rng.choice(len(names), p=weights / weights.sum())]
    if scenario == "isolated":
        iso = list(ISOLATED_WEIGHTS)
        w = np.array([ISOLATED_WEIGHTS[n] for n in iso])
        chosen = [iso[rng.choice(len(iso), p=w / w.sum())]]
    else:
        probs = SCENARIOS[scenario][1]
        chosen = [name for name, p in probs.items() if rng.random() < p]
        pathologies = [c for c in chosen if c != "Support Devices"]
        if not pathologies:  # a scenario always shows at least its leading finding
            chosen.append(max(probs, key=lambda k: probs[k] if k != "Support Devices" else -1))
    # Pneumonia is read from an opacity: keep it with consolidation or lung opacity most of the time.
    if "Pneumonia" in chosen and not {"Consolidation", "Lung Opacity"} & set(chosen):
        if rng.random() < 0.7:
            chosen.append("Lung Opacity")
    if len(chosen) > MAX_FINDINGS:
        keep = rng.choice(len(chosen), size=MAX_FINDINGS, replace=False)
        chosen = [chosen[i] for i in sorted(keep)]
    return tuple(sorted(set(chosen), key=FINDING_INDEX.__getitem__))


def _sample_attrs(name: str, rng: np.random.Generator, uncertain: bool, present: tuple[str, ...]) -> dict:
    """How a finding looks: side, severity (1 mild .. 3 severe), location, device kinds."""
    severity = 1 if uncertain else int(rng.choice([1, 2, 3], p=[0.45, 0.35, 0.2]))
    side = str(rng.choice(["right", "left", "bilateral"], p=[0.4, 0.3, 0.3]))
    attrs: dict = {"severity": severity}
    if name in ("Pleural Effusion", "Atelectasis"):
        attrs["side"] = side
    elif name in ("Pneumothorax", "Fracture", "Pleural Other", "Lung Lesion"):
        attrs["side"] = "right" if side == "bilateral" else side
    elif name in ("Consolidation", "Pneumonia", "Lung Opacity"):
        one_side = "right" if side == "bilateral" else side
        lobe = int(rng.choice([0, 1, 2], p=[0.25, 0.2, 0.55]))
        attrs |= {"side": one_side, "lobe": lobe, "location": LOBES[one_side][lobe]}
    if name == "Lung Lesion":
        attrs["count"] = int(rng.choice([1, 2, 3], p=[0.6, 0.25, 0.15]))
        attrs["kind"] = "mass" if severity == 3 else "nodule"
    if name == "Fracture":
        attrs["rib"] = int(rng.integers(4, 9))
    if name == "Support Devices":
        icu = "Edema" in present or "Atelectasis" in present or "Pneumothorax" in present
        kinds = [k for k, p in zip(DEVICE_KINDS, (0.45 if icu else 0.25, 0.4, 0.45, 0.25)) if rng.random() < p]
        attrs["kinds"] = kinds or [str(rng.choice(DEVICE_KINDS))]
    return attrs


def sample_study(index: int, subject_id: int, study_id: int, cfg: PhantomConfig) -> StudySpec:
    """Draw one study from the prior (deterministic in ``cfg.seed`` and ``index``)."""
    rng = study_rng(cfg.seed, index, STREAM_SPEC)
    present = _sample_findings(rng, cfg)
    uncertain = tuple(f for f in present if rng.random() < UNCERTAIN_RATE[f])
    attrs = {f: _sample_attrs(f, rng, f in uncertain, present) for f in present}
    # Consolidation, pneumonia and lung opacity of one study describe the same place.
    airspace = [f for f in ("Consolidation", "Pneumonia", "Lung Opacity") if f in present]
    for f in airspace[1:]:
        for key in ("side", "lobe", "location"):
            attrs[f][key] = attrs[airspace[0]][key]
    view = "AP" if ("Support Devices" in present or rng.random() < 0.3) else "PA"
    normal_template = None
    if not [f for f in present if f != "Support Devices"]:
        w = np.asarray(NORMAL_TEMPLATE_WEIGHTS, dtype=float)
        normal_template = int(rng.choice(len(w), p=w / w.sum()))
    date = 21800101 + int(rng.integers(0, 20)) * 10000 + int(rng.integers(1, 13)) * 100 + int(rng.integers(0, 28))
    # MIMIC stores StudyTime as a number (HHMMSS.fff without leading zeros).
    hhmmss = int(rng.integers(0, 24)) * 10000 + int(rng.integers(0, 60)) * 100 + int(rng.integers(0, 60))
    time = f"{hhmmss}.{int(rng.integers(0, 1000)):03d}"
    return StudySpec(
        index=index,
        subject_id=subject_id,
        study_id=study_id,
        dicom_id=_dicom_id(rng),
        view=view,
        present=present,
        uncertain=uncertain,
        attrs=attrs,
        normal_template=normal_template,
        has_prior=bool(rng.random() < 0.35),
        study_date=date,
        study_time=time,
    )


def sample_collection(cfg: PhantomConfig) -> tuple[list[StudySpec], dict[int, str]]:
    """All studies of a phantom collection and the patient-level split (subject_id -> split).

    Subjects have one to three studies; subject ids are 8 digits starting 10..19 (MIMIC's ``pNN``
    folders), study ids 8 digits starting with 5."""
    rng = np.random.default_rng([cfg.seed, 2**31 - 1])
    studies_per_subject = []
    total = 0
    while total < cfg.n_studies:
        k = min(int(rng.choice([1, 2, 3], p=[0.6, 0.28, 0.12])), cfg.n_studies - total)
        studies_per_subject.append(k)
        total += k
    n_subjects = len(studies_per_subject)
    subject_ids = np.sort(rng.choice(np.arange(10_000_000, 20_000_000), size=n_subjects, replace=False))
    study_ids = rng.choice(np.arange(50_000_000, 60_000_000), size=cfg.n_studies, replace=False)
    order = rng.permutation(n_subjects)
    n_test = int(round(cfg.test_fraction * n_subjects))
    n_val = int(round(cfg.validate_fraction * n_subjects))
    split = {}
    for rank, s in enumerate(order):
        split[int(subject_ids[s])] = "test" if rank < n_test else ("validate" if rank < n_test + n_val else "train")
    specs = []
    index = 0
    for s, k in enumerate(studies_per_subject):
        for _ in range(k):
            specs.append(sample_study(index, int(subject_ids[s]), int(study_ids[index]), cfg))
            index += 1
    return specs, split
