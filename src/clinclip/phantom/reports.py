"""Writing phantom reports in MIMIC-CXR style from a ``StudySpec``, and their CheXpert-style labels.

The report states every present finding (hedged when the spec marks it uncertain), negates some absent
findings (often coordinated: "No pleural effusion or pneumothorax."), adds temporal statements when the
study has a prior ("Unchanged ...", "Interval improvement in ..."), and wraps it in the usual sections
(EXAMINATION, INDICATION, TECHNIQUE, COMPARISON, FINDINGS, IMPRESSION). Normal studies mostly get
verbatim templates, so duplicates dominate as in MIMIC (the paper's Table 1).

Labels are those a CheXpert labeler would give the written report: 1 stated present, -1 stated
uncertain, 0 stated absent, blank not mentioned; No Finding is 1 for a normal study, else blank.
"""

from __future__ import annotations

import textwrap

import numpy as np

from clinclip.observations import FINDINGS, NO_FINDING, OBSERVATIONS
from clinclip.phantom.studies import NORMAL_TEMPLATE_WEIGHTS, STREAM_REPORT, StudySpec, study_rng
from clinclip.text.hardneg import load_templates

SEVERITY = {
    "default": ("mild", "moderate", "severe"),
    "size": ("small", "moderate", "large"),
    "adverb": ("mildly", "moderately", "severely"),
    "mediastinum": ("mild", "moderate", "marked"),
}
ORDINAL = {4: "fourth", 5: "fifth", 6: "sixth", 7: "seventh", 8: "eighth"}

# Normal templates: (findings or None, impression, findings they mention as absent), with weights
# shaped after the paper's Table 1 (one template dominates). Index len(...) = a freely composed report.
NORMAL_TEMPLATES: tuple[tuple[str | None, str, tuple[str, ...]], ...] = (
    (None, "No acute cardiopulmonary process.", ()),
    (
        "PA and lateral views of the chest provided. There is no focal consolidation, effusion, or "
        "pneumothorax. The cardiomediastinal silhouette is normal. Imaged osseous structures are intact. "
        "No free air below the right hemidiaphragm is seen.",
        "No acute intrathoracic process.",
        ("Consolidation", "Pleural Effusion", "Pneumothorax", "Cardiomegaly", "Enlarged Cardiomediastinum"),
    ),
    (
        "The lungs are clear without focal consolidation. No pleural effusion or pneumothorax is seen. "
        "Heart size is normal.",
        "No acute cardiopulmonary abnormality.",
        ("Consolidation", "Pleural Effusion", "Pneumothorax", "Cardiomegaly"),
    ),
    (None, "No evidence of acute cardiopulmonary process.", ()),
    (None, "No evidence of pneumonia.", ("Pneumonia",)),
    (
        "Heart size is normal. The mediastinal and hilar contours are normal. The pulmonary vasculature is "
        "normal. Lungs are clear. No pleural effusion or pneumothorax is seen. There are no acute osseous "
        "abnormalities.",
        "No acute cardiopulmonary abnormality.",
        ("Cardiomegaly", "Pleural Effusion", "Pneumothorax"),
    ),
)
assert len(NORMAL_TEMPLATE_WEIGHTS) == len(NORMAL_TEMPLATES) + 1  # the weights are drawn in studies.py

# Coordinated negative statements: text -> the findings it states absent. Preferred when all their
# findings are to be negated, as radiologists coordinate the usual pertinent negatives.
COORDINATED_NEGATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("There is no focal consolidation, pleural effusion or pneumothorax.", ("Consolidation", "Pleural Effusion", "Pneumothorax")),
    ("No focal consolidation, pleural effusion, or pneumothorax is seen.", ("Consolidation", "Pleural Effusion", "Pneumothorax")),
    ("No pleural effusion or pneumothorax.", ("Pleural Effusion", "Pneumothorax")),
    ("There is no pleural effusion or pneumothorax.", ("Pleural Effusion", "Pneumothorax")),
    ("No pulmonary edema or pleural effusion.", ("Edema", "Pleural Effusion")),
    ("The cardiomediastinal silhouette is normal.", ("Cardiomegaly", "Enlarged Cardiomediastinum")),
    ("Heart size and mediastinal contours are normal.", ("Cardiomegaly", "Enlarged Cardiomediastinum")),
)
# How often a coordinated statement is used when it applies (otherwise the findings are negated one by one).
COORDINATION_RATE = 0.5
# Single negative statements in wordings of the phantom's own, beside those of the hard-negative template
# bank (``clinclip.text.hardneg.load_templates``). Real MIMIC reports negate findings in the same few
# stock phrases that the bank holds ("No pleural effusion.", "No pneumothorax."), so most single
# negations come from the bank: a model cannot tell a generated r^n from a written report by its wording.
OWN_SINGLE_NEGATIONS: dict[str, tuple[str, ...]] = {
    "Lung Lesion": ("No pulmonary nodules or masses.", "No suspicious pulmonary nodule."),
    "Consolidation": ("No focal consolidation.",),
    "Cardiomegaly": ("Heart size is normal.",),
    "Enlarged Cardiomediastinum": ("The mediastinum is not widened.",),
    "Lung Opacity": ("No focal opacity.",),
    "Fracture": ("No acute rib fracture.", "No displaced fracture is seen."),
    "Support Devices": ("No lines or tubes.",),
}
BANK_WORDING_RATE = 0.75  # share of single negations worded as in the template bank
# How often radiologists state each absence in an otherwise composed report (devices: "No lines or tubes"
# when their absence matters, e.g. after removal).
NEGATION_RATE = {
    "Pleural Effusion": 0.8,
    "Pneumothorax": 0.75,
    "Consolidation": 0.55,
    "Edema": 0.35,
    "Cardiomegaly": 0.5,
    "Enlarged Cardiomediastinum": 0.25,
    "Pneumonia": 0.2,
    "Lung Lesion": 0.2,
    "Lung Opacity": 0.15,
    "Atelectasis": 0.12,
    "Pleural Other": 0.1,
    "Fracture": 0.15,
    "Support Devices": 0.15,
}
FILLERS = (
    "The hila are unremarkable.",
    "The upper abdomen is unremarkable.",
    "Degenerative changes are noted in the thoracic spine.",
    "Visualized soft tissues are unremarkable.",
    "Surgical clips project over the upper abdomen.",
)
COMPARISON_ONLY = (
    "Compared to the prior study, there is no significant interval change.",
    "Since the prior radiograph, the appearance of the chest is similar.",
    "Comparison is made to the prior study.",
)
POSITIVE_FRAMES = ("{Core}.", "There is {art}{core}.", "{Core} is present.", "{Core} is seen.")
TEMPORAL_FRAMES = (
    "Unchanged {core}.",
    "Persistent {core}.",
    "{Core}, unchanged from the prior study.",
    "{Core} is again seen.",
    "Interval increase in {core}.",
    "Interval improvement in {core}.",
    "New {core}.",
    "Compared to the prior study, there is {art}{core}.",
    "Stable {core}.",
)
UNCERTAIN_FRAMES = (
    "Possible {core}.",
    "Cannot exclude {core}.",
    "{Core} cannot be excluded.",
    "Findings may represent {core}.",
    "Questionable {core}.",
)
INDICATIONS = (
    "shortness of breath",
    "cough and fever",
    "chest pain",
    "fall and rib pain",
    "hypoxia",
    "new central line",
    "history of CHF and worsening dyspnea",
    "upcoming surgery",
    "fever",
    "chest tube removal",
)
QUESTIONS = ("", "", " // eval for pneumonia", " // eval for effusion", " // ? pneumothorax", " // line placement")


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _article(core: str) -> str:
    return "an " if core[:1] in "aeiou8" else "a "


def _core(name: str, attrs: dict, rng: np.random.Generator) -> tuple[str, str]:
    """A noun phrase for a present finding and its article ("a ", "an " or "")."""
    sev = attrs.get("severity", 1) - 1
    side = attrs.get("side", "")
    if name == "Enlarged Cardiomediastinum":
        return _pick(rng, ((f"{SEVERITY['mediastinum'][sev]} widening of the mediastinum", ""),
                           ("enlargement of the cardiomediastinal silhouette", ""),
                           ("enlarged cardiomediastinal silhouette", "a "),
                           (f"{SEVERITY['mediastinum'][sev]} mediastinal widening", "")))
    if name == "Cardiomegaly":
        return _pick(rng, (f"{SEVERITY['default'][sev]} cardiomegaly",
                           f"{SEVERITY['default'][sev]} enlargement of the cardiac silhouette")), ""
    if name == "Lung Opacity":
        return _pick(rng, ((f"hazy opacity in the {attrs['location']}", "a "),
                           (f"ill-defined opacity at the {attrs['location']}", "an "),
                           (f"lung opacity in the {attrs['location']}", ""),
                           (f"{attrs['location']} opacity", "a ")))
    if name == "Lung Lesion":
        kind = attrs["kind"]
        if attrs["count"] > 1:
            return f"multiple {side} pulmonary nodules", ""
        size = ("8 mm", "14 mm", "3.5 cm")[sev]
        return _pick(rng, (f"{size} {side} lung {kind}", f"{side} lung {kind} measuring {size}",
                           f"{side} lung lesion measuring {size}")), "a "
    if name == "Edema":
        return _pick(rng, (f"{SEVERITY['default'][sev]} pulmonary edema",
                           f"{SEVERITY['default'][sev]} interstitial pulmonary edema",
                           f"{SEVERITY['default'][sev]} perihilar pulmonary edema")), ""
    if name == "Consolidation":
        return _pick(rng, (f"consolidation in the {attrs['location']}",
                           f"focal consolidation in the {attrs['location']}",
                           f"{attrs['location']} consolidation")), ""
    if name == "Pneumonia":
        return _pick(rng, (f"pneumonia in the {attrs['location']}", f"{attrs['location']} pneumonia")), ""
    if name == "Atelectasis":
        if side == "bilateral":
            return _pick(rng, ("bibasilar atelectasis", "bibasilar plate-like atelectasis")), ""
        return _pick(rng, (f"{side} basilar atelectasis", f"plate-like atelectasis at the {side} base",
                           f"{side} basal linear atelectasis")), ""
    if name == "Pneumothorax":
        size = SEVERITY["size"][sev]
        return _pick(rng, (f"{size} {side} pneumothorax", f"{size} {side} apical pneumothorax")), "a "
    if name == "Pleural Effusion":
        size = SEVERITY["size"][sev]
        if side == "bilateral":
            return _pick(rng, (f"{size} bilateral pleural effusions", f"{size} bilateral effusions")), ""
        return _pick(rng, (f"{size} {side} pleural effusion", f"{size} {side}-sided pleural effusion")), "a "
    if name == "Pleural Other":
        return _pick(rng, (f"{side} pleural thickening",
                           f"pleural thickening along the {side} lateral chest wall")), ""
    if name == "Fracture":
        rib = ORDINAL[attrs["rib"]]
        return _pick(rng, (f"fracture of the {side} {rib} rib", f"{side} {rib} rib fracture")), "a "
    raise ValueError(f"no phrase bank for {name!r}")


def _device_sentences(attrs: dict, rng: np.random.Generator) -> list[str]:
    banks = {
        "endotracheal tube": ("Endotracheal tube terminates 4 cm above the carina.",
                              "An endotracheal tube is in standard position."),
        "enteric tube": ("Enteric tube courses below the diaphragm into the stomach.",
                         "A nasogastric tube is seen with tip in the stomach."),
        "central venous catheter": ("Right internal jugular central venous catheter terminates in the mid SVC.",
                                    "Right-sided central line tip is in the SVC."),
        "pacemaker": ("Left-sided pacemaker with leads in the right atrium and right ventricle.",
                      "A dual-lead pacemaker is in place."),
    }
    sentences = [_pick(rng, banks[kind]) for kind in attrs["kinds"]]
    if rng.random() < 0.35:
        sentences.append(_pick(rng, ("Support devices are in standard position.",
                                     "Lines and tubes are in standard position.")))
    return sentences


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def _frame(frame: str, core: str, art: str) -> str:
    # ``art`` only says whether the noun is countable; the article follows the phrase's first sound.
    art = _article(core) if art else ""
    return frame.format(Core=_capitalize(core), core=core, art=art)


def _negations(absent: list[str], rng: np.random.Generator) -> tuple[list[str], set[str]]:
    """Choose which absent findings to state as absent, and phrase them (coordinated now and then, else
    one sentence each, mostly in the hard-negative template bank's wording)."""
    chosen = {f for f in absent if rng.random() < NEGATION_RATE[f]}
    sentences, stated = [], set()
    order = rng.permutation(len(COORDINATED_NEGATIONS))
    # Coordinated statements first (longest), in a random order among equals.
    for i in sorted(order, key=lambda i: -len(COORDINATED_NEGATIONS[i][1])):
        text, negated = COORDINATED_NEGATIONS[i]
        if set(negated) <= chosen and not set(negated) & stated and rng.random() < COORDINATION_RATE:
            sentences.append(text)
            stated |= set(negated)
    bank = load_templates()
    for f in [f for f in FINDINGS if f in chosen and f not in stated]:
        own = OWN_SINGLE_NEGATIONS.get(f, ())
        wordings = bank[f] if not own or rng.random() < BANK_WORDING_RATE else own
        sentences.append(_pick(rng, wordings))
        stated.add(f)
    return sentences, stated


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=76, initial_indent=" ", subsequent_indent=" ", break_on_hyphens=False)



def _composed_findings(spec: StudySpec, pathologies: list[str], cores: dict, labels: dict,
                       rng: np.random.Generator) -> list[str]:
    """FINDINGS sentences of a non-template report; records the negated findings in ``labels``."""
    positive_sents = []
    remaining = list(pathologies)
    # Coordinated positive statements, as radiologists write them for related findings.
    for a, b, joiner in (("Pleural Effusion", "Atelectasis", " with adjacent "),
                         ("Cardiomegaly", "Edema", " with "),
                         ("Consolidation", "Pneumonia", " consistent with ")):
        if a in remaining and b in remaining and not {a, b} & set(spec.uncertain) and rng.random() < 0.5:
            second = "pneumonia" if b == "Pneumonia" else cores[b][0]
            positive_sents.append(_capitalize(cores[a][0]) + joiner + second + ".")
            remaining = [f for f in remaining if f not in (a, b)]
    for f in remaining:
        core, art = cores[f]
        if f in spec.uncertain:
            positive_sents.append(_frame(_pick(rng, UNCERTAIN_FRAMES), core, art))
        elif spec.has_prior and rng.random() < 0.45:
            positive_sents.append(_frame(_pick(rng, TEMPORAL_FRAMES), core, art))
        else:
            positive_sents.append(_frame(_pick(rng, POSITIVE_FRAMES), core, art))
    absent = [f for f in FINDINGS if f not in spec.present]
    negation_sents, negated = _negations(absent, rng)
    for f in negated:
        labels[f] = 0.0
    body = positive_sents + negation_sents
    if rng.random() < 0.5:
        body.append(_pick(rng, FILLERS))
    if rng.random() < 0.3:
        body = [body[i] for i in rng.permutation(len(body))]
    if spec.has_prior and rng.random() < 0.4:
        body.insert(0, _pick(rng, COMPARISON_ONLY))
    return body


def write_report(spec: StudySpec, seed: int) -> tuple[str, dict[str, float]]:
    """The MIMIC-style report of a study and its CheXpert-style labels {observation: value or NaN}."""
    rng = study_rng(seed, spec.index, STREAM_REPORT)
    labels = {name: float("nan") for name in OBSERVATIONS}
    findings_sents: list[str] = []
    impression_sents: list[str] = []
    pathologies = [f for f in spec.present if f != "Support Devices"]

    if "Support Devices" in spec.present:
        findings_sents += _device_sentences(spec.attrs["Support Devices"], rng)
        labels["Support Devices"] = 1.0

    template = NORMAL_TEMPLATES[spec.normal_template] if (
        spec.normal_template is not None and spec.normal_template < len(NORMAL_TEMPLATES)) else None
    if template is not None:
        findings_text, impression, negated = template
        if findings_text:
            findings_sents.append(findings_text)
        impression_sents.append(impression)
        for f in negated:
            labels[f] = 0.0
    else:
        cores = {f: _core(f, spec.attrs[f], rng) for f in pathologies}
        # Like MIMIC, some short reports have only an impression that states every finding.
        impression_only = (
            "Support Devices" not in spec.present and 0 < len(pathologies) <= 2 and rng.random() < 0.12
        )
        if not impression_only:
            findings_sents += _composed_findings(spec, pathologies, cores, labels, rng)
        if pathologies:
            # The impression restates the leading findings (the duplicate mention is normal practice).
            lead = pathologies if impression_only else pathologies[: int(rng.integers(1, 3))]
            for f in lead:
                core, art = cores[f]
                frame = _pick(rng, UNCERTAIN_FRAMES) if f in spec.uncertain else "{Core}."
                impression_sents.append(_frame(frame, core, art))
        else:
            impression_sents.append(_pick(rng, ("No acute cardiopulmonary process.",
                                                "No acute intrathoracic process.")))
    for f in pathologies:
        labels[f] = -1.0 if f in spec.uncertain else 1.0
    if spec.is_normal:
        labels[NO_FINDING] = 1.0

    portable = spec.view == "AP"
    exam = "CHEST (PORTABLE AP)" if portable else "CHEST (PA AND LAT)"
    technique = "Portable AP upright chest radiograph." if portable else "Chest PA and lateral."
    sex = _pick(rng, ("M", "F"))
    parts = [
        " " * 33 + "FINAL REPORT",
        f" EXAMINATION:  {exam}",
        "",
        f" INDICATION:  ___ year old {sex} with {_pick(rng, INDICATIONS)}{_pick(rng, QUESTIONS)}.",
        "",
        f" TECHNIQUE:  {technique}",
        "",
        f" COMPARISON:  {'___' if spec.has_prior else 'None.'}",
        "",
    ]
    if findings_sents:
        parts += [" FINDINGS:", "", _wrap(" ".join(findings_sents)), ""]
    parts += [" IMPRESSION:", "", _wrap(" ".join(impression_sents)), ""]
    return "\n".join(parts), labels
