"""Report sections: keep FINDINGS and IMPRESSION, drop everything else (docs/text-labels.md, "What each stage does").

Headers are recognised MIMIC-style: a known section name at the start of a line (or after a
sentence end), followed by a colon, in any case: ``FINDINGS:``, ``Impression:``, ``CONCLUSION:``.
``FINAL REPORT`` (a title line, no colon) is dropped. A report with no findings/impression header is
all findings, minus the sections that are known to be something else (INDICATION, HISTORY,
COMPARISON, TECHNIQUE, EXAMINATION, ...). Notification and signature sentences ("Dr. X was
notified ...", "Electronically signed by ...") are removed from what is kept.
"""

from __future__ import annotations

import re

# Section names (lower case, single spaces) -> kind.
_FINDINGS_NAMES = (
    "findings", "finding", "findings and impression", "findings/impression", "impression and findings",
    "report", "body", "description", "observations", "result", "results", "chest", "pa and lateral chest",
    "chest x-ray", "chest radiograph", "portable chest", "frontal and lateral views of the chest",
)
_IMPRESSION_NAMES = (
    "impression", "impressions", "conclusion", "conclusions", "summary", "opinion", "diagnosis",
    "interpretation", "assessment", "final impression", "final diagnosis",
)
_DROP_NAMES = (
    "indication", "indications", "history", "clinical history", "clinical information", "clinical indication",
    "clinical data", "clinical details", "clinical notes", "reason for exam", "reason for examination",
    "reason for study", "reason", "comparison", "comparisons", "prior", "priors", "technique", "techniques",
    "examination", "exam", "procedure", "study", "type of examination", "views", "view", "wet read",
    "notification", "recommendation", "recommendations", "addendum", "attending", "signed by",
    "electronically signed by", "dictated by", "reported by", "referring physician", "provider",
    "exam date", "date", "time", "accession number", "clinical question", "question", "request",
    "clinical", "hx", "ind", "cc", "dx", "note", "narrative", "accession", "accession number",
    "exam code", "procedure code", "order", "ordering physician",
)
_KIND = {**{n: "findings" for n in _FINDINGS_NAMES}, **{n: "impression" for n in _IMPRESSION_NAMES},
         **{n: "drop" for n in _DROP_NAMES}}

_MAX_NAME_WORDS = max(len(n.split()) for n in _KIND)
# Candidate header: a run of letters / spaces / "/" / "&" right before a colon. The known name is the
# longest run of its last words that is in _KIND; it must start a line or follow a sentence end.
_BEFORE_COLON = re.compile(r"([A-Za-z][A-Za-z /&-]{0,60}?)[ \t]*:")


def _headers(text: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of every section header in ``text``."""
    out = []
    for m in _BEFORE_COLON.finditer(text):
        words = m.group(1).split()
        for k in range(min(len(words), _MAX_NAME_WORDS), 0, -1):
            name = " ".join(words[-k:]).lower()
            kind = _KIND.get(name)
            if kind is None:
                continue
            # start of the name inside the match
            start = m.start(1) + m.group(1).rfind(words[-k]) if k == 1 else _name_start(text, m, words, k)
            before = text[:start].rstrip(" \t")
            if not before or before[-1] in "\n.!?" or before.endswith(("\n", ":")):
                out.append((start, m.end(), kind))
            break
    return out


def _name_start(text: str, m: re.Match, words: list[str], k: int) -> int:
    head = m.group(1)
    pos = len(head)
    for w in reversed(words[-k:]):
        pos = head.rfind(w, 0, pos)
    return m.start(1) + pos


_TITLE_LINE = re.compile(r"^[ \t]*(?:final\s+report|preliminary\s+report|addendum)[ \t]*:?[ \t]*$",
                         re.IGNORECASE | re.MULTILINE)
# Notification / signature sentences: removed from the kept sections.
# One character of a sentence: not a sentence end (abbreviation periods and decimals allowed, a single
# line break allowed, a blank line not).
_SENT_CHAR = (r"(?:[^.!?\n]|\n(?![ \t]*\n)|(?<=\bdr)\.|(?<=\bmr)\.|(?<=\bms)\.|(?<=\bmrs)\.|(?<=\bp)\."
              r"|(?<=\ba)\.|(?<=\bm)\.|\.(?=\d))")
# Notification / signature sentences: removed from the kept sections.
_ADMIN_SENTENCE = re.compile(
    rf"(?:(?<=^)|(?<=[.!?]\s)|(?<=\n)){_SENT_CHAR}*?"
    r"(?:\b(?:notified|discussed|communicated|conveyed|relayed|paged|telephoned)\b"
    r"|\bwere\s+(?:d\s*)?(?:iscussed|reported)\b|\bcalled\s+(?:to|at|by)\b"
    r"|\belectronically\s+signed\b|\bsigned\s+by\b|\bdictated\s+by\b|\btranscribed\s+by\b"
    r"|\bi\s+have\s+(?:personally\s+)?reviewed\b|\bread\s+back\b"
    r"|\bat\s+the\s+time\s+of\s+(?:dictation|this\s+report)\b)"
    rf"{_SENT_CHAR}*[.!?]?",
    re.IGNORECASE,
)


_ADMIN_HINT = re.compile(r"notif|discuss|communicat|convey|relay|paged|telephon|\bcall|signed|dictated|transcrib"
                         r"|reviewed|read\s+back|time\s+of", re.IGNORECASE)


def strip_admin(text: str) -> str:
    """Remove notification and signature sentences ("Dr. X was notified at 3 p.m.")."""
    if not text or not _ADMIN_HINT.search(text):
        return text
    return re.sub(r"[ \t]{2,}", " ", _ADMIN_SENTENCE.sub("", text)).strip()


# CheXpert Plus style endings: "END OF IMPRESSION" closes the impression; "4-POSSIBLE SIGNIFICANT
# FINDINGS, MAY NEED ACTION" summary-code lines are not findings.
_END_OF_SECTION = re.compile(r"\bEND\s+OF\s+(?:IMPRESSION|REPORT|FINDINGS)\b.*", re.IGNORECASE | re.DOTALL)
_SUMMARY_CODE = re.compile(r"^[ \t]*\d-[A-Z][A-Z ,/-]*$", re.MULTILINE)


def _clean(section: str) -> str:
    section = _END_OF_SECTION.sub("", section)
    if "-" in section:
        section = _SUMMARY_CODE.sub("", section)
    return strip_admin(section.strip())


def extract_sections(report: str) -> dict[str, str]:
    """``{"findings": str, "impression": str}`` of a free-text report ("" where absent).

    With no FINDINGS / IMPRESSION header at all, everything that is not in a dropped section
    (INDICATION, HISTORY, COMPARISON, TECHNIQUE, ...) is the findings.
    """
    if not isinstance(report, str) or not report.strip():
        return {"findings": "", "impression": ""}
    text = _TITLE_LINE.sub("", report.replace("\r\n", "\n").replace("\r", "\n"))
    headers = _headers(text) if ":" in text else []
    parts: dict[str, list[str]] = {"findings": [], "impression": [], "drop": [], "preamble": []}
    parts["preamble"].append(text[: headers[0][0]] if headers else text)
    for i, (_start, end_of_header, kind) in enumerate(headers):
        end = headers[i + 1][0] if i + 1 < len(headers) else len(text)
        parts[kind].append(text[end_of_header: end])
    findings = "\n".join(p.strip() for p in parts["findings"] if p.strip())
    impression = "\n".join(p.strip() for p in parts["impression"] if p.strip())
    if not findings and not impression:
        # No findings/impression header: the text outside known other sections is the findings.
        findings = "\n".join(p.strip() for p in parts["preamble"] if p.strip())
    return {"findings": _clean(findings), "impression": _clean(impression)}


def report_body(report: str) -> str:
    """Findings followed by impression, as one text (the report ``r`` before sentence splitting)."""
    sec = extract_sections(report)
    return "\n".join(s for s in (sec["findings"], sec["impression"]) if s)
