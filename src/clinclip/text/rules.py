"""Rule-based mention finder: CheXpert observations with NegEx-style negation and uncertainty scopes.

The lexicons are YAML files in ``clinclip/text/lexicon/`` (``mentions.yaml``, ``cues.yaml``) that
users can read and extend. Each lexicon is compiled once per process into a ``_regex.WordScanner``
(candidate entries looked up by the first characters at each word start), so a report is scanned
three times in total (mentions, exclusions, cues) whatever the size of the lexicons.

Public API: ``Mention`` and ``find_mentions(text)``.
"""

from __future__ import annotations

import bisect
import functools
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

from clinclip.files import read_mapping
from clinclip.observations import NO_FINDING, OBSERVATIONS
from clinclip.text._regex import Branch, WordScanner

POSITIVE, NEGATIVE, UNCERTAIN = "positive", "negative", "uncertain"
ASSERTIONS = (POSITIVE, NEGATIVE, UNCERTAIN)

#: pseudo-observation of ``find_mentions(..., include_other=True)``: CheXpert's "No Finding" mentions,
#: abnormalities outside the 14 observations (emphysema, granuloma, scoliosis, ...)
OTHER_FINDING = "Other Finding"


@dataclass(frozen=True)
class Mention:
    """One mention of an observation in a text: ``text[start:end] == phrase``."""

    observation: str
    phrase: str
    start: int
    end: int
    assertion: str  # "positive" | "negative" | "uncertain"


# --------------------------------------------------------------------------------------------------
# Lexicon loading


def _read_yaml(name: str) -> dict:
    return read_mapping(Path(__file__).parent / "lexicon" / name, "lexicon")


def _expand_macros(pattern: str, macros: dict[str, str]) -> str:
    def repl(m: re.Match) -> str:
        name = m.group(1)
        if name not in macros:
            raise ValueError(f"lexicon: unknown macro {{{name}}} in pattern {pattern!r}")
        return macros[name]

    # Repeat so macros may use macros.
    for _ in range(5):
        new = re.sub(r"\{([A-Z_]+)\}", repl, pattern)
        if new == pattern:
            break
        pattern = new
    return pattern


def _wrap(pattern: str) -> str:
    """Word boundaries around an entry; an entry ending in \\w* is a prefix (no trailing boundary)."""
    tail = "" if pattern.endswith(r"\w*") else r"\b"
    return rf"\b(?:{pattern}){tail}"


@dataclass(frozen=True)
class _Entry:
    observations: tuple[str, ...]
    fixed: str | None  # assertion fixed by the statement itself, or None (from scopes)
    implies_uncertain: tuple[str, ...] = ()
    predicate: bool = False  # subject + predicate statement: a cue between them applies ("may be")


@functools.lru_cache(maxsize=1)
def _scanners() -> tuple[WordScanner, WordScanner]:
    """(mention scanner, exclusion scanner). An exclusion's key is the observation it excludes."""
    data = _read_yaml("mentions.yaml")
    macros: dict[str, str] = {}
    for name, pat in (data.get("macros") or {}).items():
        macros[name] = _expand_macros(pat, macros)

    excludes: list[Branch] = []
    statements: list[Branch] = []
    for item in data.get("statements") or []:
        observations = tuple(item["observations"])
        unknown = [o for o in observations if o not in OBSERVATIONS]
        if unknown or item.get("assertion") not in ASSERTIONS:
            raise ValueError(f"lexicon mentions.yaml: bad statement {item!r}")
        fixed_assertion = item["assertion"] if item["assertion"] != POSITIVE else None
        for pat in item.get("patterns") or []:
            statements.append(Branch(_wrap(_expand_macros(pat, macros)),
                                     _Entry(observations, fixed_assertion, predicate=fixed_assertion is None)))
    fixed: dict[str, list[Branch]] = {UNCERTAIN: [], NEGATIVE: [], POSITIVE: []}
    plain: list[Branch] = []
    for obs, spec in (data.get("observations") or {}).items():
        if obs not in OBSERVATIONS:
            raise ValueError(f"lexicon mentions.yaml: unknown observation {obs!r}")
        implied = spec.get("implies_uncertain") or {}
        for pat in spec.get("exclude") or []:
            excludes.append(Branch(_wrap(_expand_macros(pat, macros)), obs))
        for kind in (UNCERTAIN, NEGATIVE, POSITIVE):
            for pat in spec.get(kind) or []:
                fixed[kind].append(Branch(_wrap(_expand_macros(pat, macros)),
                                          _Entry((obs,), kind if kind != POSITIVE else None,
                                                 predicate=kind == POSITIVE)))
        for pat in spec.get("mentions") or []:
            imp = tuple(v for k, v in implied.items() if re.fullmatch(pat, k))
            src = _expand_macros(pat, macros)
            plain.append(Branch(_wrap(src), _Entry((obs,), None, implies_uncertain=imp)))
    for pat in data.get("normal") or []:
        fixed[POSITIVE].insert(0, Branch(_wrap(_expand_macros(pat, macros)), _Entry((NO_FINDING,), POSITIVE)))
    for pat in data.get("other_findings") or []:
        src = _expand_macros(pat, macros)
        plain.append(Branch(_wrap(src), _Entry((OTHER_FINDING,), None)))

    # The same phrase may be a mention of several observations (e.g. "hydropneumothorax"): merge.
    merged: dict[str, _Entry] = {}  # insertion-ordered: file order
    for br in plain:
        old = merged.get(br.pattern)
        merged[br.pattern] = br.key if old is None else _Entry(
            old.observations + br.key.observations, None,
            implies_uncertain=old.implies_uncertain + br.key.implies_uncertain)
    plain_branches = [Branch(p, entry) for p, entry in merged.items()]
    # Longest match wins (WordScanner); this order only breaks ties between equally long matches.
    branches = statements + fixed[UNCERTAIN] + fixed[NEGATIVE] + fixed[POSITIVE] + plain_branches
    # Exclusions are scanned apart: one removes its own observation from the mentions it overlaps
    # (as the CheXpert labeler's unmention phrases do), never another observation's mention.
    return WordScanner(branches, longest=True), WordScanner(excludes, longest=False)


# Cue classes, in scanner priority order.
_CUE_CLASSES = ("pseudo_change", "pseudo", "negation_post", "uncertainty_post", "negation_both",
                "uncertainty_both", "negation_pre", "uncertainty_pre", "uncertainty_link", "uncertainty_weak",
                "termination")
(_PSEUDO_CHANGE, _PSEUDO, _NEG_POST, _UNC_POST, _NEG_BOTH, _UNC_BOTH, _NEG_PRE, _UNC_PRE, _UNC_LINK,
 _UNC_WEAK, _TERM) = range(11)
_BOUNDARY = 11


@functools.lru_cache(maxsize=1)
def _cue_scanner() -> tuple[WordScanner, int]:
    data = _read_yaml("cues.yaml")
    macros = {k: v for k, v in (data.get("macros") or {}).items()}
    # Longest match wins (WordScanner); between equally long matches the class listed first wins.
    branches = [Branch(_wrap(_expand_macros(p, macros)), cls_index)
                for cls_index, cls in enumerate(_CUE_CLASSES) for p in data.get(cls) or []]
    return WordScanner(branches, longest=True), int(data.get("post_window", 80))


# Clause boundaries: sentence punctuation (not a decimal point), ";", ":", blank lines.
_CLAUSE_END = re.compile(r"[.?!;:](?!\d)|\n[ \t]*\n")


def _cues(low: str, starts: list[int] | None = None) -> list[tuple[int, int, int]]:
    """Cues and clause boundaries of a lower-cased text, in text order."""
    scanner, _ = _cue_scanner()
    cues = scanner.scan(low, starts)
    bounds = [(m.start(), m.end(), _BOUNDARY) for m in _CLAUSE_END.finditer(low)]
    if not cues:
        return bounds
    # A boundary inside a cue ("vs.") is not a boundary.
    spans = [(s, e) for s, e, _k in cues]
    starts = [s for s, _e in spans]
    kept = []
    for b in bounds:
        i = bisect.bisect_right(starts, b[0]) - 1
        if i >= 0 and spans[i][0] <= b[0] < spans[i][1]:
            continue
        kept.append(b)
    return sorted(cues + kept)


# --------------------------------------------------------------------------------------------------
# Scopes


_NEGATING = frozenset((_NEG_PRE, _NEG_BOTH, _NEG_POST))
_HEDGING = frozenset((_UNC_PRE, _UNC_BOTH, _UNC_LINK, _UNC_POST))


def _inner_assertion(ms: int, me: int, cues: list[tuple[int, int, int]], cue_starts: list[int]) -> str | None:
    """Assertion of a cue inside a statement's own span, between subject and predicate ("the heart
    may be / is possibly / is not enlarged"), or None."""
    for cs, _ce, kind in cues[bisect.bisect_right(cue_starts, ms):]:
        if cs >= me:
            break
        if kind in _NEGATING:
            return NEGATIVE
        if kind in _HEDGING:
            return UNCERTAIN
    return None


def _assertions(mentions: list[tuple[int, int, _Entry]], cues: list[tuple[int, int, int]],
                post_window: int) -> list[str]:
    """Assertion of each mention from the cues of its clause (see cues.yaml for the rules).

    One pass over cues and mentions in text order (linear in their number): the pre-cue state of the
    current clause is updated at each cue and read at each mention; post and weak cues are looked up
    in a bounded window after / around the mention.

    Fixed negative / positive statements keep their assertion. A fixed uncertain one ("vascular
    congestion", "borderline heart size") is negative under a negation and uncertain otherwise. A
    mention whose assertion comes from the scopes takes, in this order: the pre cues of its clause, a
    cue inside its own span ("the heart may be enlarged"), the post cues, the weak cues.
    """
    stops = [s for s, _e, k in cues if k in (_TERM, _BOUNDARY)]
    cue_starts = [s for s, _e, _k in cues]
    out: list[str | None] = [None] * len(mentions)
    # --- pre cues: stream through the text
    current = None  # class of the cue governing the clause so far
    mention_since_cue = False
    # "no change in A or B": the list under a negated change is coordination, not alternatives
    coordinated = False
    listed = [False] * len(mentions)
    ci = 0
    n_cues = len(cues)
    for idx, (ms, me, entry) in enumerate(mentions):
        while ci < n_cues and cues[ci][1] <= ms:
            _cs, _ce, kind = cues[ci]
            ci += 1
            if kind in (_TERM, _BOUNDARY):
                current, mention_since_cue, coordinated = None, False, False
                continue
            if kind == _PSEUDO_CHANGE:
                coordinated = current is None
                continue
            if kind in (_PSEUDO, _NEG_POST, _UNC_POST, _UNC_WEAK):
                continue
            if kind == _UNC_BOTH:
                kind = _UNC_PRE
            if kind == _UNC_LINK:
                if current in (_NEG_PRE, _NEG_BOTH):
                    continue  # transparent under a negation: "no opacity to suggest pneumonia"
                kind = _UNC_PRE
            # A cue after a mention starts a new scope; a cue right after a negation does not
            # override it ("no suspicious nodule").
            if current is None or mention_since_cue or current not in (_NEG_PRE, _NEG_BOTH):
                current = kind
            mention_since_cue = False
        listed[idx] = coordinated
        negated = current in (_NEG_PRE, _NEG_BOTH)
        if entry.fixed == UNCERTAIN:
            out[idx] = NEGATIVE if negated else None  # None: a post negation may still apply
        elif entry.fixed is not None:
            out[idx] = entry.fixed
        elif current is not None:
            out[idx] = NEGATIVE if negated else UNCERTAIN
        elif entry.predicate:
            out[idx] = _inner_assertion(ms, me, cues, cue_starts)
        mention_since_cue = True
    # --- post cues and weak cues for the mentions no pre cue governs
    for idx, (ms, me, entry) in enumerate(mentions):
        if out[idx] is not None:
            continue
        k = bisect.bisect_right(stops, ms)
        clause_start = stops[k - 1] if k else -1
        clause_end = stops[k] if k < len(stops) else 1 << 60
        assertion = None
        for cs, _ce, kind in cues[bisect.bisect_left(cue_starts, me):]:
            if cs >= clause_end or cs - me > post_window:
                break
            if kind in (_NEG_POST, _NEG_BOTH):
                assertion = NEGATIVE
                break
            if kind in (_UNC_POST, _UNC_BOTH):
                assertion = UNCERTAIN
                break
        if entry.fixed == UNCERTAIN:
            out[idx] = NEGATIVE if assertion == NEGATIVE else UNCERTAIN
            continue
        if assertion is None and not listed[idx]:
            # Weak cues ("or", "versus") joining this mention to a neighbour in the same clause.
            prev_end = mentions[idx - 1][1] if idx > 0 else None
            next_start = mentions[idx + 1][0] if idx + 1 < len(mentions) else None
            if prev_end is not None and prev_end <= clause_start:
                prev_end = None
            if next_start is not None and next_start >= clause_end:
                next_start = None
            windows = []
            if prev_end is not None:
                windows.append((prev_end, ms))
            if next_start is not None:
                windows.append((me, next_start))
            for a, b in windows:
                for cs, _ce, kind in cues[bisect.bisect_left(cue_starts, a):]:
                    if cs >= b:
                        break
                    if kind == _UNC_WEAK:
                        assertion = UNCERTAIN
                        break
                if assertion:
                    break
        out[idx] = assertion or POSITIVE
    return out  # type: ignore[return-value]


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _lower(text: str) -> str:
    """Lower-cased text of the same length (offsets stay those of ``text``); non-ASCII characters
    become spaces, as the lexicons are ASCII."""
    low = text.lower()
    if len(low) != len(text):  # a few non-ASCII characters change length when lowered
        low = "".join(ch.lower()[:1] or ch for ch in text)
    return low if low.isascii() else _NON_ASCII.sub(" ", low)


def _drop_excluded(found: list[tuple[int, int, _Entry]],
                   excluded: list[tuple[int, int, str]]) -> list[tuple[int, int, _Entry]]:
    """``found`` without the observations an overlapping exclusion of their own removes."""
    out = []
    for s, e, entry in found:
        drop = {obs for xs, xe, obs in excluded if xs < e and xe > s}
        if drop & set(entry.observations):
            kept = tuple(o for o in entry.observations if o not in drop)
            if not kept:
                continue
            entry = replace(entry, observations=kept)
        out.append((s, e, entry))
    return out


def scan_spans(text: str) -> list[tuple[int, int, _Entry, str]]:
    """(start, end, entry, assertion) of every non-excluded mention, in text order: the raw form of
    ``find_mentions`` (``entry.observations`` may hold several observations, or OTHER_FINDING), used
    by the sentence splitter and the temporal rewriter."""
    low = _lower(text)
    scanner, exclusions = _scanners()
    starts = scanner.word_starts(low)
    found = scanner.scan(low, starts)
    if not found:
        return []
    excluded = exclusions.scan_all(low, starts)
    if excluded:
        found = _drop_excluded(found, excluded)
        if not found:
            return []
    assertions = _assertions(found, _cues(low, starts), _cue_scanner()[1])
    return [(s, e, entry, a) for (s, e, entry), a in zip(found, assertions)]


def find_mentions(text: str, include_other: bool = False) -> list[Mention]:
    """Mentions of the 14 CheXpert observations in ``text``, each with its assertion.

    ``No Finding`` mentions are whole-study normal statements ("no acute cardiopulmonary process"),
    always positive. With ``include_other`` also returns mentions of abnormalities outside the 14
    (observation ``OTHER_FINDING``), which CheXpert uses to block No Finding.
    """
    out: list[Mention] = []
    for s, e, entry, assertion in scan_spans(text):
        for obs in entry.observations:
            if obs == OTHER_FINDING and not include_other:
                continue
            out.append(Mention(obs, text[s:e], s, e, assertion))
    return out


def scan_observations(text: str) -> Iterable[tuple[str, str]]:
    """(observation, assertion) pairs of ``text`` for the labeler, including implied ones
    (CheXpert: a positive/uncertain "chf" makes Cardiomegaly uncertain) and OTHER_FINDING."""
    for _s, _e, entry, assertion in scan_spans(text):
        for obs in entry.observations:
            yield obs, assertion
        if entry.implies_uncertain and assertion != NEGATIVE:
            for obs in entry.implies_uncertain:
                yield obs, UNCERTAIN
