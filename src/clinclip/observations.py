"""The 14 CheXpert observations, in the orders the ecosystem uses.

``OBSERVATIONS`` is clinclip's canonical order (CheXbert's): every label vector (N x 14) and every
manifest follows it. ``CHEXPERT_LABELER_ORDER`` is the column order of the CheXpert labeler's CSV output.
"""

OBSERVATIONS: tuple[str, ...] = (
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
    "No Finding",
)

CHEXPERT_LABELER_ORDER: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

# Label values, as in CheXpert / MIMIC-CXR chexpert.csv; a blank (not mentioned) is NaN. (The rule labeler's
# assertions, text.rules.POSITIVE etc., are the words "positive", "negative", "uncertain".)
LABEL_POSITIVE, LABEL_NEGATIVE, LABEL_UNCERTAIN = 1.0, 0.0, -1.0

NO_FINDING = "No Finding"
FINDINGS = OBSERVATIONS[:-1]  # the 13 observations that are findings (not No Finding)
