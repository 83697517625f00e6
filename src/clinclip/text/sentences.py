"""Sentences and single-entity sentences (docs/text-labels.md, "What each stage does").

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

import functools
import re

from clinclip.text.rules import OTHER_FINDING, scan_spans
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
    r"|(?P<glued>\.(?<=[a-z]\.)(?=[A-Z][a-z]))"
    r"|(?P<blank>\n[ \t]*\n\s*)"
)
# "1. " / "2) " / "(3) " list markers; a marker must start the text, a line, or follow a sentence end.
_LIST_MARKER = re.compile(r"\(?\d{1,2}[.)](?=\s+\S)\s*")


_DIGIT = re.compile(r"\d")


def _remove_list_markers(text: str) -> str:
    if not _DIGIT.search(text):
        return text
    out = []
    pos = 0
    for m in _LIST_MARKER.finditer(text):
        before = text[:m.start()].rstrip(" \t")
        if m.start() > 0 and text[m.start() - 1] not in " \t\n":
            continue
        if before and before[-1] not in "\n.!?:":
            continue
        out.append(text[pos:m.start()])
        out.append("\n\n")
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)
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
    text = _remove_list_markers(text.replace("\r\n", "\n").replace("\r", "\n"))
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
    r"^(?P<lead>(?:(?:specifically|again|otherwise|also|additionally|overall|currently|now|however|"
    r"furthermore|moreover|finally|in addition|incidentally)\s*,?\s+)*(?:there\s+(?:is|are|has\s+been|have\s+been)\s+)?"
    r"(?:no|without|negative\s+for|free\s+of|clear\s+of|absence\s+of|(?:interval\s+)?resolution\s+of|(?:interval\s+)?removal\s+of"
    r"|possible|possibly|probable|probably|likely|questionable|suspected|suspicious\s+for|concerning\s+for"
    r"|(?:can\s*not|cannot|can't)\s+(?:be\s+)?(?:entirely\s+|completely\s+)?(?:exclude|rule\s+out)|not)"
    r"(?:\s+(?:evidence|signs?|radiographic\s+evidence|findings?)\s+(?:of|for|to\s+suggest))?"
    r"\s+)",
    re.IGNORECASE,
)
_ADVERBS = (r"(?:(?:specifically|again|otherwise|also|additionally|overall|currently|now|however|"
            r"furthermore|moreover|finally|in addition|incidentally)\s*,?\s+)*")
_NEGATED_LEAD = re.compile(
    r"^" + _ADVERBS + r"(?:there\s+(?:is|are|has\s+been|have\s+been)\s+)?(?:no|without|negative\s+for|free\s+of|clear\s+of"
    r"|absence\s+of|(?:interval\s+)?resolution\s+of|(?:interval\s+)?removal\s+of|not)\b", re.IGNORECASE)
_UNCERTAIN_LEAD = re.compile(
    r"^" + _ADVERBS + r"(?:possible|possibly|probable|probably|likely|questionable|suspected|suspicious\s+for|concerning\s+for"
    r"|(?:can\s*not|cannot|can't)\s+(?:entirely\s+|completely\s+)?(?:exclude|rule\s+out))\b", re.IGNORECASE)
# Coordination between list items.
_COORD = re.compile(r"\s*,\s*(?:and/or|and|or|nor)\s+|\s*,\s*|\s+(?:and/or|and|or|nor)\s+", re.IGNORECASE)
# A shared predicate after the list ("... are normal", "... is seen", "... are present") or a verb in a
# part means the sentence is not a bare list: keep it whole unless it is a negated list.
_VERB = re.compile(
    r"\b(?:is|are|was|were|has|have|had|be|been|appears?|remains?|seems?|demonstrates?|shows?|noted|seen"
    r"|identified|present|visualized|projects?|overlies|extends?|measures?|represents?|suggests?)\b",
    re.IGNORECASE)
_CLAUSE_SPLIT = re.compile(r"\s*;\s*|,?\s+but\s+|,?\s+however,?\s+", re.IGNORECASE)
_TRAILING_NEG = re.compile(
    r"\s+(?:(?:is|are|was|were)\s+)?(?:not\s+)?(?:seen|identified|present|noted|visualized|demonstrated|evident|appreciated)$",
    re.IGNORECASE)


def _capitalise(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


def _spans(text: str, offset: int) -> list[tuple[int, int, str]]:
    """(start, end, separator after) of the coordinated items of ``text`` (offsets + ``offset``)."""
    out = []
    pos = 0
    for c in _COORD.finditer(text):
        out.append((offset + pos, offset + c.start(), c.group()))
        pos = c.end()
    out.append((offset + pos, offset + len(text), ""))
    return [x for x in out if text[x[0] - offset: x[1] - offset].strip()]


def _mention_set(text: str) -> set[tuple[str, str, str]]:
    return {(text[ms:me].lower(), obs, assertion)
            for ms, me, entry, assertion in scan_spans(text) for obs in entry.observations}


def split_single_entity(sentence: str) -> list[str]:
    """Split a sentence listing several findings into one sentence per finding (see module doc).

    A split is kept only when every part, read on its own, states its findings with the assertion
    they had in the whole sentence (same mentions, same positive / negative / uncertain): a list the
    rules cannot split faithfully ("Specifically, no evidence of A, B or C" with an unusual lead-in)
    stays one sentence rather than turning a negated finding into a positive one.
    """
    if not sentence or not sentence.strip():
        return []
    parts = _split_single_entity(sentence)
    if len(parts) > 1:
        produced: set = set()
        for p in parts:
            produced |= _mention_set(p)
        if produced != _mention_set(sentence.strip()):
            return [sentence.strip()]
    return parts


def _split_single_entity(sentence: str) -> list[str]:
    if not sentence or not sentence.strip():
        return []
    s = sentence.strip()
    end_punct = s[-1] if s[-1] in ".!?" else "."
    body = s.rstrip(".!? ")
    if not _COORD.search(body) and not _WITH.search(body):
        return [s]
    # Clauses after a semicolon or "but" are separate statements: split first, then handle each.
    clauses = [c for c in _CLAUSE_SPLIT.split(body) if c.strip()]
    if len(clauses) > 1:
        out: list[str] = []
        for c in clauses:
            out.extend(_split_single_entity(_capitalise(c.strip()) + end_punct))
        return out
    # "X without Y" -> "X." + "No Y."; "X with Y" (two findings) -> "X." + "Y."
    joined = _split_with(body, end_punct)
    if joined is not None:
        out = []
        for part in joined:
            out.extend(_split_single_entity(part))
        return out
    if not _COORD.search(body):
        return [s]

    m = _LEAD_IN.match(body)
    lead = m.group("lead") if m else ""
    rest = body[len(lead):]
    negated = bool(lead) and (bool(_NEGATED_LEAD.match(lead)) or bool(_UNCERTAIN_LEAD.match(lead)))
    # "No X or Y is seen": keep the trailing negated predicate on every part.
    tail = ""
    t = _TRAILING_NEG.search(rest) if negated else None
    if t:
        tail, rest = rest[t.start():], rest[: t.start()]
    items = _spans(rest, len(lead))
    if len(items) < 2:
        return [s]
    if not negated and _VERB.search(rest):
        return [s]  # shared predicate or clause: keep whole (documented choice)
    # Findings named in each item, from one scan of the sentence.
    mentions = scan_spans(body)
    keys: list[set] = []
    mi = 0
    for a, b, _sep in items:  # items and mentions are both in text order: one pass
        k = set()
        while mi < len(mentions) and mentions[mi][0] < a:
            mi += 1
        while mi < len(mentions) and mentions[mi][1] <= b:
            ms, me, entry, _assertion = mentions[mi]
            for obs in entry.observations:
                k.add(body[ms:me].lower() if obs == OTHER_FINDING else obs)
            mi += 1
        keys.append(k)
    # An item that names no finding ("left and right lower lobes") joins its neighbours.
    parts: list[str] = []
    part_keys: list[set] = []
    prev_sep = ""
    for (a, b, sep), k in zip(items, keys):
        text = body[a:b]
        if parts and (not k or not part_keys[-1]):
            parts[-1] = parts[-1] + prev_sep + text
            part_keys[-1] |= k
        else:
            parts.append(text)
            part_keys.append(set(k))
        prev_sep = sep
    if len(parts) < 2 or not all(part_keys):
        return [s]
    # Items naming the same finding ("left and right effusions") are not different entities.
    if len({frozenset(k) for k in part_keys}) < len(part_keys):
        return [s]
    out = []
    for p in parts:
        p = p.strip(" ,")
        out.append(_capitalise((lead + p + tail).strip()) + end_punct)
    return out


_WITH = re.compile(r"\s*,?\s+(?P<word>without|with)\s+(?!(?:a\s+few|the\s+tip|its\s+tip|tip)\b)", re.IGNORECASE)


def _split_with(body: str, end_punct: str) -> list[str] | None:
    """Split "X without Y" / "X with Y" when both X and Y name a finding (None: keep whole).

    "Lungs are clear without focal consolidation." -> "Lungs are clear." + "No focal consolidation.";
    "Moderate effusions with adjacent atelectasis." -> "Moderate effusions." + "Adjacent atelectasis."
    "with" is split only in a sentence that is not negated ("No effusion with ..." is ambiguous) and
    when the two sides name different findings.
    """
    m = _WITH.search(body)
    if m is None or re.search(r"\b(?:compatible|consistent|keeping|associated|along|together|filled|treated|"
                              r"correlat\w*|replaced|seen|noted|concordant|combined)$",
                              body[: m.start()].rstrip(" ,"), re.IGNORECASE):
        return None
    head = re.sub(r"[\s,]*(?:\band)?[\s,]*$", "", body[: m.start()], flags=re.IGNORECASE).strip()
    tail = body[m.end():].strip()
    if not head or not tail or _WITH.search(tail):
        return None
    head_keys = {o for _s, _e, entry, _a in scan_spans(head) for o in entry.observations}
    tail_keys = {o for _s, _e, entry, _a in scan_spans(tail) for o in entry.observations}
    if not head_keys or not tail_keys:
        return None
    if m.group("word").lower() == "without":
        tail = re.sub(r"^(?:evidence\s+of|signs?\s+of)\s+", "evidence of ", tail, flags=re.IGNORECASE)
        return [_capitalise(head) + end_punct, "No " + tail + end_punct]
    if _NEGATED_LEAD.match(head) or _UNCERTAIN_LEAD.match(head) or head_keys == tail_keys:
        return None
    return [_capitalise(head) + end_punct, _capitalise(tail) + end_punct]


def split_report(report: str) -> list[str]:
    """The report's single-entity sentences from FINDINGS + IMPRESSION, temporal statements removed."""
    return split_text(report_body(report))


def split_text(body: str) -> list[str]:
    """``split_report`` for text whose sections are already extracted (e.g. findings + impression)."""
    out: list[str] = []
    for sent in split_sentences(body):
        out.extend(_process_sentence(sent))
    return out


@functools.lru_cache(maxsize=200_000)
def _process_sentence(sentence: str) -> tuple[str, ...]:
    """Single-entity split + temporal rewrite of one sentence; cached, as report corpora repeat their
    sentences ("No pleural effusion or pneumothorax." appears in a large share of MIMIC-CXR)."""
    return tuple(remove_temporal(split_single_entity(sentence)))
