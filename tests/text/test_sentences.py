"""Sections, sentence splitting, single-entity splitting and temporal rewriting."""

from __future__ import annotations

import pytest

from clinclip.text.sections import extract_sections, report_body
from clinclip.text.sentences import split_report, split_sentences, split_single_entity
from clinclip.text.temporal import remove_temporal, rewrite_sentence

MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___M with cough, evaluate for pneumonia

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  ___

 FINDINGS:

 Unchanged moderate cardiomegaly.  No pleural effusion or
 pneumothorax.  The previously seen left pneumothorax has resolved.

 IMPRESSION:

 No acute cardiopulmonary process.  Findings were discussed with Dr. ___ by
 ___ on the telephone at 3:00 p.m. on ___.
"""


def test_mimic_sections():
    sec = extract_sections(MIMIC_REPORT)
    assert sec["findings"].startswith("Unchanged moderate cardiomegaly.")
    assert "pneumothorax has resolved" in sec["findings"]
    assert sec["impression"] == "No acute cardiopulmonary process."
    body = report_body(MIMIC_REPORT)
    for dropped in ("INDICATION", "pneumonia", "TECHNIQUE", "COMPARISON", "EXAMINATION", "FINAL REPORT",
                    "Dr.", "telephone"):
        assert dropped not in body


@pytest.mark.parametrize("report,findings,impression", [
    ("Heart size normal. No effusion.", "Heart size normal. No effusion.", ""),
    ("findings: Lungs clear.\nimpression: Normal.", "Lungs clear.", "Normal."),
    ("HISTORY: cough.\nCONCLUSION: No acute disease.", "", "No acute disease."),
    ("Clinical history: fever\nFindings and impression: Lungs clear.", "Lungs clear.", ""),
    ("INDICATION: chest pain\nLungs are clear.", "", ""),  # text under INDICATION is not a finding
    ("", "", ""),
    ("   \n ", "", ""),
    # CheXpert Plus style
    ("NARRATIVE: CHEST 2 VIEWS\nFINDINGS: Lungs clear.\nIMPRESSION:\n1. No acute disease.\nEND OF IMPRESSION\n"
     "SUMMARY:\n1-NORMAL\nACCESSION NUMBER: 123", "Lungs clear.", "1. No acute disease."),
])
def test_sections_table(report, findings, impression):
    assert extract_sections(report) == {"findings": findings, "impression": impression}


def test_notification_sentence_removed_keeps_the_rest():
    text = "IMPRESSION: No acute disease. Dr. XXXX was notified of these findings at 4 pm. Small effusion."
    assert extract_sections(text)["impression"] == "No acute disease. Small effusion."


@pytest.mark.parametrize("text,expected", [
    ("The heart is 1.5 cm. No effusion.", ["The heart is 1.5 cm.", "No effusion."]),
    ("Dr. Smith reviewed it. Lungs clear.", ["Dr. Smith reviewed it.", "Lungs clear."]),
    ("1. No effusion. 2. Mild cardiomegaly.", ["No effusion.", "Mild cardiomegaly."]),
    ("1. No effusion.\n2) Mild cardiomegaly at rib 5. No pneumothorax.",
     ["No effusion.", "Mild cardiomegaly at rib 5.", "No pneumothorax."]),
    ("Lungs are\nclear. No effusion", ["Lungs are clear.", "No effusion"]),
    ("Opacity in the left apex.There are streaky opacities.",
     ["Opacity in the left apex.", "There are streaky opacities."]),
    ("Normal chest x-XXXX. XXXX XXXX are normal.", ["Normal chest x-XXXX.", "XXXX XXXX are normal."]),
    ("Atelectasis vs. pneumonia. No effusion.", ["Atelectasis vs. pneumonia.", "No effusion."]),
    ("Measures approx. 2 cm. No effusion..", ["Measures approx. 2 cm.", "No effusion.."]),
    ("First paragraph\n\nSecond paragraph", ["First paragraph", "Second paragraph"]),
    ("", []),
])
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


@pytest.mark.parametrize("sentence,expected", [
    ("No pleural effusion or pneumothorax.", ["No pleural effusion.", "No pneumothorax."]),
    ("No evidence of focal consolidation, effusion or pneumothorax.",
     ["No evidence of focal consolidation.", "No evidence of effusion.", "No evidence of pneumothorax."]),
    ("There is no pneumothorax or large pleural effusion.",
     ["There is no pneumothorax.", "There is no large pleural effusion."]),
    ("No focal consolidation, pleural effusion, or pneumothorax is seen.",
     ["No focal consolidation is seen.", "No pleural effusion is seen.", "No pneumothorax is seen."]),
    ("Possible small effusion or atelectasis.", ["Possible small effusion.", "Possible atelectasis."]),
    ("Mild cardiomegaly and small bilateral effusions.", ["Mild cardiomegaly.", "Small bilateral effusions."]),
    ("No effusion; mild atelectasis and cardiomegaly.", ["No effusion.", "Mild atelectasis.", "Cardiomegaly."]),
    ("Interval resolution of left effusion and right pneumothorax.",
     ["Interval resolution of left effusion.", "Interval resolution of right pneumothorax."]),
    # anatomy coordination / shared predicates / one finding: kept whole
    ("Opacities in the left and right lower lobes.", ["Opacities in the left and right lower lobes."]),
    ("Heart size and mediastinal contours are normal.", ["Heart size and mediastinal contours are normal."]),
    ("Left and right pleural effusions.", ["Left and right pleural effusions."]),
    ("No pneumothorax.", ["No pneumothorax."]),
    # "with" / "without" joining two findings
    ("Lungs are clear without focal consolidation.", ["Lungs are clear.", "No focal consolidation."]),
    ("Interval removal of right chest tube without pneumothorax.",
     ["Interval removal of right chest tube.", "No pneumothorax."]),
    ("Moderate bilateral pleural effusions with adjacent atelectasis.",
     ["Moderate bilateral pleural effusions.", "Adjacent atelectasis."]),
    ("Endotracheal tube with tip 4 cm above the carina.", ["Endotracheal tube with tip 4 cm above the carina."]),
    ("Opacity compatible with scarring or atelectasis.", ["Opacity compatible with scarring or atelectasis."]),
    ("The left-sided chest tube has been removed, with no evidence of pneumothorax.",
     ["The left-sided chest tube has been removed.", "No evidence of pneumothorax."]),
    # lead-in not at the start: split only when each part keeps its assertion
    ("Specifically, no evidence of focal consolidation, pneumothorax, or pleural effusion.",
     ["Specifically, no evidence of focal consolidation.", "Specifically, no evidence of pneumothorax.",
      "Specifically, no evidence of pleural effusion."]),
    ("Mild blunting of the left costophrenic angle, possibly mild atelectasis or scarring.",
     ["Mild blunting of the left costophrenic angle, possibly mild atelectasis or scarring."]),
])
def test_split_single_entity(sentence, expected):
    assert split_single_entity(sentence) == expected


@pytest.mark.parametrize("sentence,expected", [
    ("Unchanged moderate cardiomegaly.", "Moderate cardiomegaly."),
    ("No change in the small left effusion.", "Small left effusion."),
    ("No significant interval change.", None),
    ("Compared to prior study dated XXXX.", None),
    ("Stable appearance of the chest.", None),
    ("Pneumothorax has resolved.", "No pneumothorax."),
    ("The previously seen right lower lobe opacity has resolved.", "No right lower lobe opacity."),
    ("Interval removal of the endotracheal tube.", "No endotracheal tube."),
    ("Compared to the prior study, there is a small left effusion.", "There is a small left effusion."),
    ("There is biapical pleural thickening, unchanged from prior.", "There is biapical pleural thickening."),
    ("Calcified granuloma is again seen in the right upper lobe.",
     "Calcified granuloma is seen in the right upper lobe."),
    ("Interval improvement in left base consolidative opacity.", "Left base consolidative opacity."),
    ("There has been interval increase in size of the left effusion.", "Left effusion."),
    ("New left lower lobe opacity.", "Left lower lobe opacity."),
    ("Left pleural effusion persists.", "Left pleural effusion."),
    ("Small effusion, stable since XXXX.", "Small effusion."),
    ("No new focal consolidation.", "No focal consolidation."),
    ("Decreased lung volumes.", "Decreased lung volumes."),  # a state, not a change
    ("No pneumothorax.", "No pneumothorax."),
    ("Comparison XXXX, XXXX Well-expanded and clear lungs.", "Well-expanded and clear lungs."),
    ("No significant interval change compared to prior study, no infiltrates noted.", "No infiltrates noted."),
    ("Normal and stable cardiomediastinal contours.", "Normal cardiomediastinal contours."),
    ("Bilateral costophrenic angle blunting, left worse than right.",
     "Bilateral costophrenic angle blunting, left worse than right."),  # sides, not time
    ("Opacity extending from the left hilum.", "Opacity extending from the left hilum."),
    ("Frontal (on two cassettes) and lateral views show an unchanged cardiomediastinal silhouette.",
     "Frontal (on two cassettes) and lateral views show a cardiomediastinal silhouette."),
    ("Heart size is difficult to assess but likely enlarged.",
     "Heart size is difficult to assess but likely enlarged."),
    ("Compared to chest radiographs ___ through ___, there is new mild pulmonary edema.",
     "There is mild pulmonary edema."),
    ("The previously noted left lower lobe opacity has nearly resolved.", "Left lower lobe opacity."),
    ("Cardiomegaly is again noted and unchanged.", "Cardiomegaly is noted."),
    ("In comparison with the study of ___, there is little change.", None),
    # "withdrawn" = pulled back, still present
    ("The endotracheal tube has been withdrawn and is now 4 cm above the carina.",
     "The endotracheal tube has been withdrawn and is now 4 cm above the carina."),
])
def test_rewrite_sentence(sentence, expected):
    assert rewrite_sentence(sentence) == expected


def test_remove_temporal_drops_comparison_only_sentences():
    out = remove_temporal(["No significant interval change.", "Stable mild cardiomegaly.",
                           "Comparison is made to the prior radiograph."])
    assert out == ["Mild cardiomegaly."]


def test_split_report_end_to_end():
    assert split_report(MIMIC_REPORT) == [
        "Moderate cardiomegaly.", "No pleural effusion.", "No pneumothorax.", "No left pneumothorax.",
        "No acute cardiopulmonary process.",
    ]


@pytest.mark.parametrize("report", [MIMIC_REPORT * 20, "no effusion, " * 3000, "x" * 50_000,
                                    "compared " * 5000, "the heart " * 5000])
@pytest.mark.timeout(60)
def test_split_report_and_labels_finish_on_pathological_input(report):
    # Guards against quadratic code / regex backtracking through the per-test timeout (a clock assert would
    # fail on a loaded machine; speed is measured in benchmarks/text_pipeline.py).
    from clinclip.text.labeler import RuleLabeler

    sentences = split_report(report)
    labels = RuleLabeler().label([report])
    assert all(isinstance(s, str) for s in sentences) and labels.shape == (1, 14)


def test_split_report_keeps_assertions_on_real_reports(iu_reports_path):
    # The pipeline's text must say the same as the report: labels of the rewritten sentences agree
    # with labels of the raw findings + impression on (almost) every report and observation.
    import numpy as np
    import pandas as pd

    from clinclip.text.labeler import RuleLabeler
    from clinclip.text.sentences import split_text

    frame = pd.read_csv(iu_reports_path).head(1000)
    raw = (frame["findings"].fillna("") + " " + frame["impression"].fillna("")).str.strip().tolist()
    labeler = RuleLabeler()
    a = labeler.label(raw)
    b = labeler.label([" ".join(split_text(t)) for t in raw])
    changed_positive = np.sum((a == 1.0) != (b == 1.0))
    assert changed_positive <= 10, f"{changed_positive} positive labels changed by the sentence pipeline"
