"""The rule labeler over the CheXpert labeler's own phrase lists: affirmed, negated, hedged, unmention.

    python benchmarks/labeler_lexicon.py [--phrases benchmarks/data/chexpert_phrases] [--errors]

Every phrase of ``mention/*.txt`` is put into plain sentences of three kinds and labelled alone:

- finding phrases ("effusion"): affirmed "There is effusion." / "Effusion is seen.", negated
  "No effusion." / "There is no evidence of effusion." / "Effusion is not seen.", hedged
  "Possible effusion." / "Cannot exclude effusion." / "Findings could represent effusion.";
- subject phrases of Cardiomegaly and Enlarged Cardiomediastinum ("heart size", "mediastinal
  silhouette"), which CheXpert labels from the predicate after them: "The heart size is enlarged." /
  "... appears enlarged.", "... is not enlarged." / "... is normal.", "... may be enlarged." / "... is
  possibly enlarged." / "... is probably enlarged." (Enlarged Cardiomediastinum alternates
  "enlarged" and "widened").

A sentence is right when the phrase's observation gets the CheXpert value (affirmed 1.0, negated 0.0,
hedged -1.0) AND No Finding is what the CheXpert rule makes of it (1.0 for a negated finding or any
Support Devices sentence, blank otherwise). Rows of ``no_finding.txt`` (CheXpert's abnormalities
outside the 14) are scored on No Finding alone. CheXpert's own exceptions are followed: its
post-negation uncertainty rules make an affirmed "vascular congestion", "pulmonary congestion",
"indistinctness" or "vascular prominence" uncertain Edema, so -1.0 is right for those.

Word stems and fragments of the lists are completed to a word for the sentences (``COMPLETIONS``).
Every phrase of ``unmention/*.txt`` is put into affirmed, negated and hedged sentences (or, for a
name, the sentences in ``UNMENTION_SENTENCES``); right when its observation stays blank. The
unmentions the CheXpert labeler builds in code (column "positional"): a Cardiomegaly or Enlarged
Cardiomediastinum phrase after a position ("over the", "overly the", "in the", each alone or with
"superior", "left", "right"), in "A lead projects over the left cardiac silhouette."; right when that
observation stays blank.
``--errors`` lists every wrong sentence with the labels it got.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from clinclip.observations import NO_FINDING, OBSERVATIONS
from clinclip.text.labeler import RuleLabeler

DEFAULT = Path(__file__).resolve().parent / "data" / "chexpert_phrases"
_INDEX = {name: i for i, name in enumerate(OBSERVATIONS)}
KINDS = ("affirmed", "negated", "hedged")
COLUMNS = (*KINDS, "unmention", "positional")
_VALUE = {"affirmed": 1.0, "negated": 0.0, "hedged": -1.0}

#: word stems / fragments of the lists -> the word used in the sentences
COMPLETIONS = {
    "atelecta": "atelectasis", "consolidat": "consolidation", "opaci": "opacity",
    "arthroplast": "arthroplasty", "calcifi": "calcification", "degenera": "degenerative change",
    "inflam": "inflammation", "prominen": "prominence", "reticula": "reticulation",
    "hyperinflat": "hyperinflation", "atherosclero": "atherosclerosis", "defib": "defibrillator",
    "blunt": "blunting of the costophrenic angle", "fissure": "thickening of the minor fissure",
    "support": "support apparatus",
    "calcified nodul": "calcified nodule", "massive": "massive pleural effusion",
}
#: phrases labelled from the predicate that follows them
SUBJECTS = {
    "Cardiomegaly": {"the heart", "heart size", "cardiac size", "cardiac shadow", "cardiac contour",
                     "cardiac silhouette"},
    "Enlarged Cardiomediastinum": {"mediastinum", "cardiomediastinum", "contour", "mediastinal configuration",
                                   "mediastinal silhouette", "pericardial silhouette",
                                   "cardiac silhouette and vascularity"},
}
#: CheXpert's post-negation uncertainty rules: these affirmed mentions are uncertain Edema
AFFIRMED_UNCERTAIN = {"vascular congestion", "pulmonary congestion", "indistinctness", "vascular prominence"}
UNMENTION_SENTENCES = {"massengale": ["Findings were discussed with Dr. Massengale.",
                                      "Dr. Massengale was notified of the results."]}

FINDING_TEMPLATES = {
    "affirmed": ["There is {p}.", "{P} is seen."],
    "negated": ["No {p}.", "There is no evidence of {p}.", "{P} is not seen."],
    "hedged": ["Possible {p}.", "Cannot exclude {p}.", "Findings could represent {p}."],
}
SUBJECT_TEMPLATES = {  # {big2}: "widened" for Enlarged Cardiomediastinum
    "affirmed": ["{S} {be} enlarged.", "{S} {appear} {big2}."],
    "negated": ["{S} {be} not {big2}.", "{S} {be} normal."],
    "hedged": ["{S} may be enlarged.", "{S} {be} possibly {big2}.", "{S} {be} probably enlarged."],
}


def read_phrases(folder: Path) -> dict[str, list[str]]:
    """observation -> phrases of one list folder (``_`` read as a space, as the CheXpert labeler does)."""
    out = {}
    for path in sorted(folder.glob("*.txt")):
        obs = path.stem.replace("_", " ").title()
        phrases = [line.strip().replace("_", " ").strip() for line in path.read_text().splitlines()]
        out[obs] = [p for p in phrases if p]
    return out


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def mention_sentences(obs: str, phrase: str) -> dict[str, list[str]]:
    word = COMPLETIONS.get(phrase, phrase)
    if phrase in SUBJECTS.get(obs, ()):
        subject = word if word.startswith("the ") else "the " + word
        plural = " and " in word  # "cardiac silhouette and vascularity"
        fill = dict(S=_cap(subject), be="are" if plural else "is", appear="appear" if plural else "appears",
                    big2="widened" if obs == "Enlarged Cardiomediastinum" else "enlarged")
        return {k: [t.format(**fill) for t in ts] for k, ts in SUBJECT_TEMPLATES.items()}
    return {k: [t.format(p=word, P=_cap(word)) for t in ts] for k, ts in FINDING_TEMPLATES.items()}


def _is(value: float, expected: float) -> bool:
    return math.isnan(expected) if math.isnan(value) else value == expected


def mention_right(obs: str, phrase: str, kind: str, row: np.ndarray) -> bool:
    no_finding = row[_INDEX[NO_FINDING]]
    finding = kind != "negated"
    if obs == NO_FINDING:
        return _is(no_finding, math.nan if finding else 1.0)
    expected = _VALUE[kind]
    if kind == "affirmed" and phrase in AFFIRMED_UNCERTAIN:
        expected = -1.0
    nf_expected = 1.0 if (obs == "Support Devices" or not finding) else math.nan
    return _is(row[_INDEX[obs]], expected) and _is(no_finding, nf_expected)


def unmention_sentences(phrase: str) -> list[str]:
    if phrase in UNMENTION_SENTENCES:
        return UNMENTION_SENTENCES[phrase]
    word = COMPLETIONS.get(phrase, phrase)
    return [t.format(p=word, P=_cap(word)) for ts in FINDING_TEMPLATES.values() for t in ts[:1]]


POSITIONS = [f"{where}{side}" for where in ("over the", "overly the", "in the") for side in ("", " superior", " left", " right")]


def positional_unmentions(mentions: dict[str, list[str]]) -> dict[str, list[str]]:
    """observation -> sentences with its phrases after a position, as CheXpert's code builds them
    (Cardiomegaly without "cardiomegaly" and "cardiac enlargement", and without a leading "the")."""
    out = {}
    for obs in ("Cardiomegaly", "Enlarged Cardiomediastinum"):
        phrases = mentions[obs]
        if obs == "Cardiomegaly":
            phrases = [p.replace("the ", "") for p in phrases if p not in ("cardiomegaly", "cardiac enlargement")]
        out[obs] = [f"A lead projects {where} {p}." for p in phrases for where in POSITIONS]
    return out


def evaluate(folder: Path) -> tuple[list[dict], list[tuple]]:
    """One row per observation (share right per kind, counts) and the list of wrong sentences."""
    labeler = RuleLabeler()
    rows: dict[str, dict] = {}
    errors = []

    def row_for(obs):
        return rows.setdefault(obs, {"observation": obs, "phrases": 0,
                                     **{k: [0, 0] for k in COLUMNS}})

    mentions = read_phrases(folder / "mention")
    for obs, phrases in mentions.items():
        for phrase in phrases:
            row_for(obs)["phrases"] += 1
            for kind, sentences in mention_sentences(obs, phrase).items():
                labels = labeler.label(sentences)
                for sentence, lab in zip(sentences, labels):
                    ok = mention_right(obs, phrase, kind, lab)
                    rows[obs][kind][0] += ok
                    rows[obs][kind][1] += 1
                    if not ok:
                        errors.append((obs, kind, sentence, lab))
    unmentions = {obs: [s for p in phrases for s in unmention_sentences(p)]
                  for obs, phrases in read_phrases(folder / "unmention").items()}
    for column, table in (("unmention", unmentions), ("positional", positional_unmentions(mentions))):
        for obs, sentences in table.items():
            for sentence, lab in zip(sentences, labeler.label(sentences)):
                ok = math.isnan(lab[_INDEX[obs]])
                row_for(obs)[column][0] += ok
                rows[obs][column][1] += 1
                if not ok:
                    errors.append((obs, column, sentence, lab))
    order = {o: i for i, o in enumerate(OBSERVATIONS)}
    return sorted(rows.values(), key=lambda r: order[r["observation"]]), errors


def _share(pair) -> str:
    right, n = pair
    return f"{right / n:.3f} ({right}/{n})" if n else "—"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phrases", type=Path, default=DEFAULT)
    ap.add_argument("--errors", action="store_true", help="list the wrong sentences")
    args = ap.parse_args()
    rows, errors = evaluate(args.phrases)
    print(f"| observation | phrases | {' | '.join(COLUMNS)} |")
    print("|---" * (len(COLUMNS) + 2) + "|")
    for r in rows:
        print(f"| {r['observation']} | {r['phrases']} | " + " | ".join(_share(r[k]) for k in COLUMNS) + " |")
    totals = {k: [sum(r[k][0] for r in rows), sum(r[k][1] for r in rows)] for k in COLUMNS}
    print(f"| **overall** | {sum(r['phrases'] for r in rows)} | "
          + " | ".join(_share(totals[k]) for k in COLUMNS) + " |")
    if args.errors:
        for obs, kind, sentence, lab in errors:
            got = {o: lab[i] for i, o in enumerate(OBSERVATIONS) if not math.isnan(lab[i])}
            print(f"{obs:27s} {kind:9s} {sentence!r:60s} {got}")


if __name__ == "__main__":
    main()
