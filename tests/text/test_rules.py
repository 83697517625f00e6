"""Rule labeler on sentences labelled as a radiologist reads them (negation, uncertainty, normal
statements, temporal wording), plus the Mention API contract."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clinclip.observations import OBSERVATIONS
from clinclip.text.labeler import RuleLabeler, aggregate
from clinclip.text.rules import Mention, find_mentions

P, N, U = 1.0, 0.0, -1.0

# (sentence, {observation: expected label}); observations not listed are not checked.
CASES = [
    # plain negation, pre and post cues
    ("No pneumothorax.", {"Pneumothorax": N}),
    ("No evidence of focal consolidation, effusion or pneumothorax.",
     {"Consolidation": N, "Pleural Effusion": N, "Pneumothorax": N}),
    ("No pleural effusion or pneumothorax.", {"Pleural Effusion": N, "Pneumothorax": N}),
    ("Free of focal consolidation", {"Consolidation": N}),
    ("Lungs are clear without pneumothorax", {"Pneumothorax": N}),
    ("There is no focal air space opacity to suggest a pneumonia.", {"Lung Opacity": N, "Pneumonia": N}),
    ("Negative for pneumothorax or pleural effusion.", {"Pneumothorax": N, "Pleural Effusion": N}),
    ("Pneumothorax is not seen.", {"Pneumothorax": N}),
    ("A pleural effusion is not identified.", {"Pleural Effusion": N}),
    ("No suspicious pulmonary nodules.", {"Lung Lesion": N}),
    ("No displaced rib fractures.", {"Fracture": N}),
    ("No acute osseous abnormality or fracture.", {"Fracture": N}),
    ("The lungs are clear, and without focal air space opacity.", {"Lung Opacity": N}),
    ("There are no XXXX of a pleural effusion.", {"Pleural Effusion": N}),
    # scope ends: a new finding after "but", "however", a new cue, a sentence end
    ("No effusion, but there is mild atelectasis.", {"Pleural Effusion": N, "Atelectasis": P}),
    ("No pneumothorax. Small left effusion.", {"Pneumothorax": N, "Pleural Effusion": P}),
    ("No effusion, possible consolidation.", {"Pleural Effusion": N, "Consolidation": U}),
    ("Possible small effusion, no pneumothorax.", {"Pleural Effusion": U, "Pneumothorax": N}),
    ("No focal consolidation, however there is basilar atelectasis.", {"Consolidation": N, "Atelectasis": P}),
    ("No pneumothorax or pleural effusion, and the heart is enlarged.",
     {"Pneumothorax": N, "Pleural Effusion": N, "Cardiomegaly": P}),
    ("The lungs are clear except for mild bibasilar atelectasis.", {"Lung Opacity": N, "Atelectasis": P}),
    ("No focal opacity to suggest pneumonia, although early infection cannot be excluded.",
     {"Lung Opacity": N, "Pneumonia": U}),
    # uncertainty
    ("Cannot exclude pneumonia.", {"Pneumonia": U}),
    ("Pneumonia cannot be excluded.", {"Pneumonia": U}),
    ("Possible small left effusion.", {"Pleural Effusion": U}),
    ("Left lower lobe opacity may represent atelectasis or pneumonia.",
     {"Lung Opacity": P, "Atelectasis": U, "Pneumonia": U}),
    ("Opacity suspicious for pneumonia.", {"Lung Opacity": P, "Pneumonia": U}),
    ("Findings are concerning for pulmonary edema.", {"Edema": U}),
    ("Atelectasis versus consolidation at the left base.", {"Atelectasis": U, "Consolidation": U}),
    ("Questionable small right pneumothorax.", {"Pneumothorax": U}),
    ("Borderline cardiomegaly.", {"Cardiomegaly": U}),
    ("Heart size is at the upper limits of normal.", {"Cardiomegaly": U}),
    ("Probable right lower lobe pneumonia.", {"Pneumonia": U}),
    ("Differential diagnosis includes infection.", {"Pneumonia": U}),
    ("Mild pulmonary vascular congestion.", {"Edema": U}),
    # positive statements
    ("Mild cardiomegaly.", {"Cardiomegaly": P}),
    ("The heart is mildly enlarged.", {"Cardiomegaly": P}),
    ("Enlarged cardiac silhouette.", {"Cardiomegaly": P}),
    ("Right IJ catheter tip in the SVC.", {"Support Devices": P}),
    ("Port-a-cath with tip in the SVC.", {"Support Devices": P}),
    ("Small right pneumothorax is unchanged.", {"Pneumothorax": P}),
    ("Right lower lobe pneumonia has improved.", {"Pneumonia": P}),
    ("Healed right rib fractures.", {"Fracture": P}),
    ("Endotracheal tube terminates 4 cm above the carina.", {"Support Devices": P}),
    ("Left chest wall pacemaker with leads in the right atrium and ventricle.", {"Support Devices": P}),
    ("Right basilar atelectasis.", {"Atelectasis": P}),
    ("Small bilateral pleural effusions.", {"Pleural Effusion": P}),
    ("8 mm nodule in the left lower lobe.", {"Lung Lesion": P}),
    ("Acute fracture of the left 6th rib.", {"Fracture": P}),
    ("Right apical pneumothorax measuring 1.5 cm.", {"Pneumothorax": P}),
    ("Patchy airspace disease in the right lower lobe.", {"Lung Opacity": P}),
    ("Biapical pleural thickening.", {"Pleural Other": P}),
    ("Moderate pulmonary edema.", {"Edema": P}),
    ("Findings consistent with right lower lobe pneumonia.", {"Pneumonia": P}),
    ("Widened mediastinum.", {"Enlarged Cardiomediastinum": P}),
    # normal statements -> negative without a finding word
    ("Heart size is normal.", {"Cardiomegaly": N}),
    ("The heart is not enlarged.", {"Cardiomegaly": N}),
    ("Normal heart size.", {"Cardiomegaly": N}),
    ("The cardiac silhouette is within normal limits.", {"Cardiomegaly": N}),
    ("Heart size and mediastinal contours are normal.", {"Cardiomegaly": N, "Enlarged Cardiomediastinum": N}),
    ("The cardiomediastinal silhouette is normal.", {"Enlarged Cardiomediastinum": N}),
    ("Lungs are clear.", {"Lung Opacity": N, "Consolidation": N}),
    ("The lungs are well expanded and clear.", {"Lung Opacity": N}),
    # temporal wording, read for the current state
    ("Pneumothorax has resolved.", {"Pneumothorax": N}),
    ("Interval resolution of the left pleural effusion.", {"Pleural Effusion": N}),
    ("Interval removal of the endotracheal tube.", {"Support Devices": N}),
    ("The nasogastric tube has been removed.", {"Support Devices": N}),
    ("The endotracheal tube has been withdrawn and is now 4 cm above the carina.", {"Support Devices": P}),
    ("No change in the small left effusion.", {"Pleural Effusion": P}),
    ("Unchanged moderate cardiomegaly.", {"Cardiomegaly": P}),
    ("No interval increase in the left effusion.", {"Pleural Effusion": P}),
    ("Stable appearance of the right chest tube.", {"Support Devices": P}),
    ("The previously seen right lower lobe opacity is no longer visualized.", {"Lung Opacity": N}),
    # look-alikes that are not the observation
    ("Pleural line is not visualized.", {}),
    ("Calcified granuloma in the right upper lobe.", {"Lung Lesion": math.nan}),
    ("Degenerative changes of the thoracic spine.", {"Fracture": math.nan}),
    ("Pericardial effusion.", {"Pleural Effusion": math.nan}),
]


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize("sentence,expected", CASES, ids=[c[0][:60] for c in CASES])
def test_sentence_labels(sentence, expected):
    row = RuleLabeler().label([sentence])[0]
    got = {obs: row[OBSERVATIONS.index(obs)] for obs in expected}
    assert all(_same(got[o], expected[o]) for o in expected), f"{sentence!r}: got {got}, expected {expected}"


def test_mentions_have_offsets_into_the_text():
    text = "Small left effusion. No pneumothorax. Cannot exclude pneumonia."
    mentions = find_mentions(text)
    assert mentions, "no mentions found"
    for m in mentions:
        assert isinstance(m, Mention)
        assert text[m.start:m.end] == m.phrase
        assert m.observation in OBSERVATIONS
        assert m.assertion in ("positive", "negative", "uncertain")
    by_obs = {m.observation: m.assertion for m in mentions}
    assert by_obs == {"Pleural Effusion": "positive", "Pneumothorax": "negative", "Pneumonia": "uncertain"}
    with pytest.raises(Exception):
        mentions[0].assertion = "negative"  # frozen


def test_offsets_survive_non_ascii_text():
    text = "Kein Ergüss. İ Small left effusion."
    m = [x for x in find_mentions(text) if x.observation == "Pleural Effusion"]
    assert m and text[m[0].start:m[0].end] == m[0].phrase == "effusion"


def test_normal_statement_is_a_no_finding_mention():
    mentions = find_mentions("No acute cardiopulmonary process.")
    assert [(m.observation, m.assertion) for m in mentions] == [("No Finding", "positive")]


def test_other_findings_only_on_request():
    text = "Mild scoliosis. No effusion."
    assert {m.observation for m in find_mentions(text)} == {"Pleural Effusion"}
    assert "Other Finding" in {m.observation for m in find_mentions(text, include_other=True)}


def test_chexpert_aggregation_positive_beats_uncertain_beats_negative():
    vec = aggregate([("Pleural Effusion", "negative"), ("Pleural Effusion", "uncertain")])
    assert vec[OBSERVATIONS.index("Pleural Effusion")] == U
    vec = aggregate([("Pleural Effusion", "uncertain"), ("Pleural Effusion", "positive"),
                     ("Pleural Effusion", "negative")])
    assert vec[OBSERVATIONS.index("Pleural Effusion")] == P
    vec = aggregate([("Pneumothorax", "negative")])
    assert vec[OBSERVATIONS.index("Pneumothorax")] == N


@pytest.mark.parametrize("text,no_finding", [
    ("No pneumothorax. Heart size is normal.", P),            # only negatives -> No Finding
    ("Right IJ catheter tip in the SVC. Lungs are clear.", P),  # support devices do not count
    ("Small left effusion.", math.nan),                       # a finding -> blank (CheXpert)
    ("Possible small left effusion.", math.nan),              # uncertain also blocks
    ("Mild thoracic scoliosis.", math.nan),                   # other abnormality blocks (CheXpert)
    ("No acute cardiopulmonary process.", P),
])
def test_no_finding_convention(text, no_finding):
    row = RuleLabeler().label([text])[0]
    assert _same(row[OBSERVATIONS.index("No Finding")], no_finding)


def test_empty_texts_get_blank_rows():
    out = RuleLabeler().label(["", "   ", "No effusion."])
    assert out.shape == (3, 14)
    assert np.isnan(out[0]).all() and np.isnan(out[1]).all()
    assert out[2, OBSERVATIONS.index("Pleural Effusion")] == N


def test_long_report_is_labelled():
    text = "Small left effusion. " + "The lungs are clear. " * 2500  # ~50 kB
    row = RuleLabeler().label([text])[0]
    assert row[OBSERVATIONS.index("Pleural Effusion")] == P


@pytest.mark.parametrize("private_parser", [True, False])
def test_word_scanner_matches_the_plain_alternation(private_parser, monkeypatch):
    """The dispatching scanner finds exactly what one big leftmost-first regex alternation finds; so does
    its fallback when CPython's private regex parser is unavailable (every branch tried everywhere)."""
    import re

    from clinclip.text import _regex
    from clinclip.text._regex import Branch, WordScanner

    if not private_parser:
        monkeypatch.setattr(_regex, "_sre_parse", None)

    patterns = [r"\bno\b", r"\bno evidence of\b", r"\b(?:the\s+)?heart(?:\s+size)?\s+is\s+normal\b",
                r"\bpneumo\w*", r"\bpleural (?:effusions?|fluid)\b", r"\beffusions?\b", r"\b(?:a|an)\b",
                r"\bx-?ray\b", r"\b\d+(?:\.\d+)?\s*cm\b", r"\b(?:mild|moderate)(?:ly)?\s+enlarged\b"]
    branches = [Branch(p, i) for i, p in enumerate(patterns)]
    reference = re.compile("|".join(f"(?P<g{i}>{p})" for i, p in enumerate(patterns)))
    scanner = WordScanner(branches)
    assert (len(scanner._always) == len(branches)) is not private_parser  # which path is under test
    texts = ["no evidence of pleural effusion. the heart size is normal. a 1.5 cm pneumothorax, x-ray",
             "mildly enlarged heart; no effusions, no pneumonia or pneumothoraces. an xray", ""]
    for text in texts:
        expected = [(m.start(), m.end(), int(m.lastgroup[1:])) for m in reference.finditer(text)]
        assert scanner.scan(text) == expected
    longest = WordScanner(branches, longest=True).scan("no evidence of effusion")
    assert longest[0] == (0, 14, 1)  # "no evidence of" beats "no"
    if private_parser:  # the check reads the parsed pattern
        with pytest.raises(ValueError, match="word character"):
            WordScanner([Branch(r"\s*resolved", 0)])


# --------------------------------------------------------------------------------------------------
# Defect classes found by checking the rules against the CheXpert labeler's own phrase lists
# (benchmarks/labeler_lexicon.py); sentences of our own.

NF = "No Finding"


def _labels(text: str) -> dict[str, float]:
    row = RuleLabeler().label([text])[0]
    return {obs: row[i] for i, obs in enumerate(OBSERVATIONS)}


@pytest.mark.parametrize("sentence,obs,expected", [
    # a hedge or negation between the subject and its predicate reaches the predicate
    ("The cardiac silhouette might be mildly enlarged.", "Cardiomegaly", U),
    ("Heart size is probably increased.", "Cardiomegaly", U),
    ("The heart appears likely enlarged given the AP technique.", "Cardiomegaly", U),
    ("The heart could be enlarged.", "Cardiomegaly", U),
    ("The superior mediastinum is possibly widened.", "Enlarged Cardiomediastinum", U),
    ("The mediastinal contours may be prominent.", "Enlarged Cardiomediastinum", U),
    ("The hilar contours are questionably enlarged.", "Enlarged Cardiomediastinum", U),
    ("The cardiac silhouette is not enlarged.", "Cardiomegaly", N),
    ("The mediastinum is not widened.", "Enlarged Cardiomediastinum", N),
    ("The heart remains enlarged.", "Cardiomegaly", P),
])
def test_hedge_or_negation_between_subject_and_predicate(sentence, obs, expected):
    got = _labels(sentence)
    assert _same(got[obs], expected), f"{sentence!r}: {obs} {got[obs]}, expected {expected}"
    # a hedged or affirmed abnormality is never a normal study
    if expected != N:
        assert math.isnan(got[NF]), f"{sentence!r}: No Finding {got[NF]} (false normal)"


@pytest.mark.parametrize("sentence,obs,expected", [
    ("No pulmonary vascular congestion.", "Edema", N),
    ("There is no venous congestion.", "Edema", N),
    ("Vascular congestion has resolved.", "Edema", N),
    ("Without vascular indistinctness.", "Edema", N),
    ("Mild pulmonary vascular congestion.", "Edema", U),     # CheXpert: uncertain when affirmed
    ("Vascular prominence in the upper zones.", "Edema", U),
    ("No borderline cardiomegaly.", "Cardiomegaly", N),
])
def test_negation_reaches_mentions_fixed_as_uncertain(sentence, obs, expected):
    assert _same(_labels(sentence)[obs], expected)


@pytest.mark.parametrize("sentence,present,absent", [
    # one observation's exclusion must not delete another observation's own mention
    ("Left apical pleural scarring is noted.", "Pleural Other", "Lung Opacity"),
    ("Stable pleural scar at the right base.", "Pleural Other", "Lung Opacity"),
    ("Pleuroparenchymal scarring at both apices.", "Pleural Other", "Lung Opacity"),
    ("Mild peribronchial thickening.", "Lung Opacity", "Pleural Other"),
    ("Interstitial thickening in the lower zones.", "Lung Opacity", "Pleural Other"),
    ("A 2 cm mediastinal mass is suspected.", "Enlarged Cardiomediastinum", "Lung Lesion"),
])
def test_exclusions_are_scoped_to_their_own_observation(sentence, present, absent):
    got = _labels(sentence)
    assert not math.isnan(got[present]) and got[present] != N, f"{sentence!r}: {present} {got[present]}"
    assert math.isnan(got[absent]), f"{sentence!r}: {absent} {got[absent]}"
    assert math.isnan(got[NF])


def test_exclusion_still_removes_its_own_observation():
    got = _labels("Small calcified nodule in the left lower lobe. Bone density is normal.")
    assert math.isnan(got["Lung Lesion"]) and math.isnan(got["Lung Opacity"])
    assert math.isnan(got[NF])  # a calcified nodule is still an abnormality (CheXpert: "calcifi")


@pytest.mark.parametrize("sentence,obs,expected", [
    ("The pericardial silhouette is enlarged.", "Enlarged Cardiomediastinum", P),
    ("Cardiac silhouette and pulmonary vascularity are within normal limits.", "Enlarged Cardiomediastinum", N),
    ("Contours are not widened.", "Enlarged Cardiomediastinum", N),
    ("Cardiac monitoring equipment overlies the chest.", "Support Devices", P),
    ("The right-sided line has been removed.", "Support Devices", N),
    ("Prosthetic mitral valve in place.", "Support Devices", P),
    ("Calcification of the aortic valve.", "Support Devices", math.nan),
    ("Few B-lines at the bases.", "Support Devices", math.nan),
    ("Pleuro-pericardial scarring on the left.", "Pleural Other", P),
    ("Right apical scarring, unchanged.", "Pleural Other", P),
    ("Bibasilar fibrosis.", "Pleural Other", P),           # CheXpert lists bare "fibrosis" as Pleural Other
    ("Bronchial wall thickening.", "Lung Opacity", P),
])
def test_lexicon_gaps_and_spellings(sentence, obs, expected):
    got = _labels(sentence)
    assert _same(got[obs], expected), f"{sentence!r}: {obs} {got[obs]}, expected {expected}"


@pytest.mark.parametrize("text", [
    "Two calcified granulomas in the right lung.",
    "Mild thickening of the minor fissure.",
    "Fissural thickening on the right.",
    "Heart size normal. Old healed granulomatous infection.",
    "There is a pleural scar.",
])
def test_findings_outside_the_thirteen_keep_no_finding_off(text):
    assert math.isnan(_labels(text)[NF]), text


@pytest.mark.parametrize("sentence,expected", [
    ("No other focal consolidation or effusion.", {"Consolidation": N, "Pleural Effusion": N}),
    # a list under a negated change is coordination: both findings are present
    ("No significant change in the pneumothorax or the left effusion.", {"Pneumothorax": P, "Pleural Effusion": P}),
    ("Without interval change in effusion or atelectasis.", {"Pleural Effusion": P, "Atelectasis": P}),
    ("Atelectasis or pneumonia at the left base.", {"Atelectasis": U, "Pneumonia": U}),
])
def test_negation_scope_of_lists(sentence, expected):
    got = _labels(sentence)
    assert all(_same(got[o], v) for o, v in expected.items()), f"{sentence!r}: {got}"


def test_unmentions_are_respected():
    got = _labels("Small pericardial effusion. Massive cardiomegaly. Calcified nodules in both lungs.")
    assert math.isnan(got["Pleural Effusion"]) and math.isnan(got["Lung Lesion"])
    assert got["Cardiomegaly"] == P


def test_chexpert_phrase_lists_are_covered():
    """Every CheXpert mention phrase, in affirmed / negated / hedged sentences, and every unmention
    phrase, labelled as CheXpert labels it (benchmarks/labeler_lexicon.py prints the full table)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "labeler_lexicon.py"
    spec = importlib.util.spec_from_file_location("labeler_lexicon", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows, errors = bench.evaluate(bench.DEFAULT)
    assert {r["observation"] for r in rows} == set(OBSERVATIONS)
    share = {k: sum(r[k][0] for r in rows) / sum(r[k][1] for r in rows)
             for k in ("affirmed", "negated", "hedged", "unmention")}
    report = "\n".join(f"{o} {k} {s!r}" for o, k, s, _lab in errors)
    assert share["affirmed"] >= 0.95 and share["negated"] >= 0.95, report
    assert share["hedged"] >= 0.90 and share["unmention"] >= 0.95, report
    for r in rows:
        for k in ("affirmed", "negated", "hedged", "unmention"):
            right, n = r[k]
            assert not n or right / n >= 0.85, f"{r['observation']} {k}: {right}/{n}\n{report}"
