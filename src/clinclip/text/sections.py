"""Report sections: keep FINDINGS and IMPRESSION, drop everything else (SPEC section 2, step 1).

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
    "clinical", "hx", "ind", "cc", "dx", "note",
)
_KIND = {**{n: "findings" for n in _FINDINGS_NAMES}, **{n: "impression" for n in _IMPRESSION_NAMES},
         **{n: "drop" for n in _DROP_NAMES}}

_NAMES_RE = "|".join(sorted((re.escape(n).replace(r"\ ", r"\s+") for n in _KIND), key=len, reverse=True))
# A header: at line start (or start of text, or after a sentence end), a known name, then ":".
_HEADER = re.compile(rf"(?:^|(?<=\n)|(?<=[.!?]\s)|(?<=[.!?]\s\s))[ \t]*(?P<name>{_NAMES_RE})[ \t]*:",
                     re.IGNORECASE)
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


def _normalise_name(name: str) -> str:
    return re.sub(r"\s+", " ", name.strip().lower())


def strip_admin(text: str) -> str:
    """Remove notification and signature sentences ("Dr. X was notified at 3 p.m.")."""
    if not text:
        return text
    return re.sub(r"[ \t]{2,}", " ", _ADMIN_SENTENCE.sub("", text)).strip()


def extract_sections(report: str) -> dict[str, str]:
    """``{"findings": str, "impression": str}`` of a free-text report ("" where absent).

    With no FINDINGS / IMPRESSION header at all, everything that is not in a dropped section
    (INDICATION, HISTORY, COMPARISON, TECHNIQUE, ...) is the findings.
    """
    if not isinstance(report, str) or not report.strip():
        return {"findings": "", "impression": ""}
    text = _TITLE_LINE.sub("", report.replace("\r\n", "\n").replace("\r", "\n"))
    headers = list(_HEADER.finditer(text))
    parts: dict[str, list[str]] = {"findings": [], "impression": [], "drop": [], "preamble": []}
    if headers:
        parts["preamble"].append(text[: headers[0].start()])
    else:
        parts["preamble"].append(text)
    for i, h in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        kind = _KIND.get(_normalise_name(h.group("name")), "drop")
        parts[kind].append(text[h.end(): end])
    findings = "\n".join(p.strip() for p in parts["findings"] if p.strip())
    impression = "\n".join(p.strip() for p in parts["impression"] if p.strip())
    if not findings and not impression:
        # No findings/impression header: the text outside known other sections is the findings.
        findings = "\n".join(p.strip() for p in parts["preamble"] if p.strip())
    return {"findings": strip_admin(findings), "impression": strip_admin(impression)}


def report_body(report: str) -> str:
    """Findings followed by impression, as one text (the report ``r`` before sentence splitting)."""
    sec = extract_sections(report)
    return "\n".join(s for s in (sec["findings"], sec["impression"]) if s)
