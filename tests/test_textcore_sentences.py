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


def test_split_report_speed_smoke():
    # Not a benchmark (see benchmarks/): guards against a pathological regex (seconds per report).
    import time

    report = MIMIC_REPORT * 20
    t0 = time.perf_counter()
    split_report(report)
    assert time.perf_counter() - t0 < 2.0
