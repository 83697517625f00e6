"""Sentences and single-entity sentences (SPEC section 2, step 2).

``split_sentences`` is a rule splitter for radiology prose: it does not split after abbreviations
("Dr.", "approx.", "vs.", "e.g."), inside decimals ("1.5 cm"), or at hard line wraps, and it treats
numbered lists ("1. ... 2. ...") and blank lines as boundaries. IU's "XXXX" tokens are ordinary words.

``split_single_entity`` splits a sentence that lists several findings into one sentence per finding,
copying the sentence's negation / uncertainty lead-in to each part:

- "No pleural effusion or pneumothorax." -> "No pleural effusion." + "No pneumothorax."
- "No evidence of focal consolidation, effusion or pneumothorax." -> three "No evidence of ..." sentences
- "Mild cardiomegaly and small bilateral effusions." -> "Mild cardiomegaly." + "Small bilateral effusions."

A list is split only when EVERY item names a finding (a mention of one of the CheXpert observations
or another abnormality in the lexicon) and the items name different findings; so anatomy
coordination stays one sentence ("Opacities in the left and right lower lobes."). A list that is the
subject of a shared predicate ("Heart size and mediastinal contours are normal.") is kept as ONE
sentence: both parts are normal statements and splitting would need re-inflecting the verb; the
labeler reads both observations from it.

``split_report`` = sections -> sentences -> single-entity -> temporal statements removed.
"""

from __future__ import annotations

import re

from clinclip.text.rules import OTHER_FINDING, _scan
from clinclip.text.sections import report_body
from clinclip.text.temporal import remove_temporal

# Words after which a period is not a sentence end (lower case, without the period).
_ABBREVIATIONS = {
    "dr", "mr", "mrs", "ms", "prof", "st", "vs", "v", "e.g", "i.e", "eg", "ie", "approx", "appr", "etc",
    "cf", "fig", "no", "nos", "ref", "resp", "ant", "post", "lat", "sup", "inf", "med", "b", "a.m", "p.m",
    "am", "pm", "cm", "mm", "ca", "incl", "min", "max", "hr", "hrs", "yr", "yrs", "pt", "pts", "esp",
    "l", "r", "s/p", "c", "t", "y", "mr", "u.s", "w",
}
# Candidate boundary: sentence punctuation + whitespace, or a blank line, or a period glued to a capital
# letter ("apex.There"), or a numbered-list marker after punctuation / at a line start.
_BOUNDARY = re.compile(
    r"(?P<punct>[.!?]+)(?P<space>\s+|$)"
    r"|(?P<glued>(?<=[a-z])\.(?=[A-Z][a-z]))"
    r"|(?P<blank>\n[ \t]*\n\s*)"
)
_LIST_MARKER = re.compile(r"(?:(?<=^)|(?<=\n)|(?<=[.!?:]\s)|(?<=[.!?:]\s\s))[ \t]*\(?\d{1,2}[.)](?=\s+\S)\s*")
_PREV_WORD = re.compile(r"([A-Za-z][A-Za-z./]*)$")
_SPACES = re.compile(r"\s+")
_ONLY_PUNCT = re.compile(r"^[\W_]*$")


def _is_abbreviation(text: str, dot: int) -> bool:
    """Whether the period at ``text[dot]`` ends an abbreviation rather than a sentence."""
    m = _PREV_WORD.search(text, max(0, dot - 12), dot)
    if not m:
        return False
    word = m.group(1).lower().rstrip(".")
    if word in ("no",):
        # "No." at a sentence end is rare in reports; "No. 2" (number) is the abbreviation.
        return bool(re.match(r"\.\s*\d", text[dot: dot + 4]))
    if word in _ABBREVIATIONS:
        # A capitalised next word after "cm." / "mm." is a new sentence ("... 1.5 cm. No effusion.").
        if word in ("cm", "mm", "am", "pm", "a.m", "p.m", "l", "r", "c", "t", "y", "w", "b", "etc"):
            nxt = text[dot + 1: dot + 4].lstrip()
            return not (nxt[:1].isupper() or nxt[:1].isdigit())
        return True
    return False


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (whitespace normalised, list markers removed, empty pieces dropped)."""
    if not isinstance(text, str) or not text.strip():
        return []
    text = _LIST_MARKER.sub("\n\n", text.replace("\r\n", "\n").replace("\r", "\n"))
    out: list[str] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        if m.group("punct") is not None:
            dot = m.start("punct")
            following = text[m.end(): m.end() + 1]
            if m.group("punct") == "." and _is_abbreviation(text, dot):
                continue
            if following and following.islower() and m.group("punct") == ".":
                # "approx. the", "e.g. small": a lower-case continuation is not a new sentence
                continue
            end = m.end("punct")
        elif m.group("glued") is not None:
            end = m.end("glued")
        else:
            end = m.start()
        piece = _SPACES.sub(" ", text[start:end]).strip()
        if piece and not _ONLY_PUNCT.match(piece):
            out.append(piece)
        start = m.end()
    piece = _SPACES.sub(" ", text[start:]).strip()
    if piece and not _ONLY_PUNCT.match(piece):
        out.append(piece)
    return out


# ---------------------------------------------------------------------------------------------------
# Single-entity splitting

# Lead-in carrying the sentence's assertion, copied to every item of a split list.
_LEAD_IN = re.compile(
    r"^(?P<lead>(?:there\s+(?:is|are|has\s+been|have\s+been)\s+)?"
    r"(?:no|without|negative\s+for|free\s+of|clear\s+of|absence\s+of|(?:interval\s+)?resolution\s+of|(?:interval\s+)?removal\s+of"
    r"|possible|possibly|probable|probably|likely|questionable|suspected|suspicious\s+for|concerning\s+for"
    r"|(?:can\s*not|cannot|can't)\s+(?:be\s+)?(?:entirely\s+|completely\s+)?(?:exclude|rule\s+out)|not)"
    r"(?:\s+(?:evidence|signs?|radiographic\s+evidence|findings?)\s+(?:of|for|to\s+suggest))?"
    r"\s+)",
    re.IGNORECASE,
)
_NEGATED_LEAD = re.compile(
    r"^(?:there\s+(?:is|are|has\s+been|have\s+been)\s+)?(?:no|without|negative\s+for|free\s+of|clear\s+of"
    r"|absence\s+of|(?:interval\s+)?resolution\s+of|(?:interval\s+)?removal\s+of|not)\b", re.IGNORECASE)
_UNCERTAIN_LEAD = re.compile(
    r"^(?:possible|possibly|probable|probably|likely|questionable|suspected|suspicious\s+for|concerning\s+for"
    r"|(?:can\s*not|cannot|can't)\s+(?:entirely\s+|completely\s+)?(?:exclude|rule\s+out))\b", re.IGNORECASE)
# Coordination between list items.
_COORD = re.compile(r"\s*,\s*(?:and/or|and|or|nor)\s+|\s*,\s*|\s+(?:and/or|and|or|nor)\s+", re.IGNORECASE)
# A shared predicate after the list ("... are normal", "... is seen", "... are present") or a verb in a
# part means the sentence is not a bare list: keep it whole unless it is a negated list.
_VERB = re.compile(
    r"\b(?:is|are|was|were|has|have|had|be|been|appears?|remains?|seems?|demonstrates?|shows?|noted|seen"
    r"|identified|present|visualized|projects?|overlies|extends?|measures?|represents?|suggests?)\b",
    re.IGNORECASE)
_TRAILING_NEG = re.compile(
    r"\s+(?:(?:is|are|was|were)\s+)?(?:not\s+)?(?:seen|identified|present|noted|visualized|demonstrated|evident|appreciated)$",
    re.IGNORECASE)


def _finding_keys(part: str) -> set[str]:
    """Observations (or other-finding phrases) mentioned in ``part``."""
    keys = set()
    for s, e, entry, _assertion in _scan(part):
        for obs in entry.observations:
            keys.add(part[s:e].lower() if obs == OTHER_FINDING else obs)
    return keys


def _capitalise(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


def split_single_entity(sentence: str) -> list[str]:
    """Split a sentence listing several findings into one sentence per finding (see module doc)."""
    if not sentence or not sentence.strip():
        return []
    s = sentence.strip()
    end_punct = s[-1] if s[-1] in ".!?" else "."
    body = s.rstrip(".!? ")
    if not (_COORD.search(body)):
        return [s]
    # Clauses after a semicolon or "but" are separate statements: split first, then handle each.
    clauses = [c for c in re.split(r"\s*;\s*|,?\s+but\s+|,?\s+however,?\s+", body) if c.strip()]
    if len(clauses) > 1:
        out: list[str] = []
        for c in clauses:
            out.extend(split_single_entity(_capitalise(c.strip()) + end_punct))
        return out

    m = _LEAD_IN.match(body)
    lead = m.group("lead") if m else ""
    rest = body[len(lead):]
    negated = bool(_NEGATED_LEAD.match(lead)) or bool(_UNCERTAIN_LEAD.match(lead))
    # "No X or Y is seen": keep the trailing negated predicate on every part.
    tail = ""
    t = _TRAILING_NEG.search(rest)
    if t and negated:
        tail, rest = rest[t.start():], rest[: t.start()]
    parts = [p for p in _COORD.split(rest) if p and p.strip()]
    if len(parts) < 2:
        return [s]
    if not negated and any(_VERB.search(p) for p in parts):
        return [s]  # shared predicate or clause: keep whole (documented choice)
    keys = [_finding_keys(p) for p in parts]
    if not all(keys):
        # Some item is not a finding (anatomy coordination, "left and right lower lobes"):
        # merge it back into its neighbours and split only between finding items.
        merged_parts: list[str] = []
        merged_keys: list[set] = []
        raw = list(_COORD.finditer(rest))
        pieces = []
        pos = 0
        for c in raw:
            pieces.append((rest[pos:c.start()], c.group()))
            pos = c.end()
        pieces.append((rest[pos:], ""))
        for (text_part, sep), k in zip(pieces, keys):
            if merged_parts and (not k or not merged_keys[-1]):
                merged_parts[-1] = merged_parts[-1] + prev_sep + text_part
                merged_keys[-1] = merged_keys[-1] | k
            else:
                merged_parts.append(text_part)
                merged_keys.append(set(k))
            prev_sep = sep
        parts, keys = merged_parts, merged_keys
        if len(parts) < 2 or not all(keys):
            return [s]
    # Items naming the same finding ("left and right effusions") are not different entities.
    if len({frozenset(k) for k in keys}) < len(keys):
        return [s]
    out = []
    for p in parts:
        p = p.strip(" ,")
        text = (lead + p + tail).strip() if lead else (p + tail).strip()
        out.append(_capitalise(text) + end_punct)
    return out


def split_report(report: str) -> list[str]:
    """The report's single-entity sentences from FINDINGS + IMPRESSION, temporal statements removed."""
    body = report_body(report)
    sentences: list[str] = []
    for sent in split_sentences(body):
        sentences.extend(split_single_entity(sent))
    return remove_temporal(sentences)
