"""Temporal statements removed (docs/text-labels.md, "What each stage does").

A training report must describe the current image, not its change from a prior study. Each sentence
is rewritten to the current state or dropped:

- change words that modify a finding go: "Unchanged moderate cardiomegaly." -> "Moderate cardiomegaly.",
  "New left lower lobe opacity." -> "Left lower lobe opacity."; "increased"/"decreased" before state
  words ("decreased lung volumes") are kept, they describe this image
- "No (significant) (interval) change in the small left effusion." -> "Small left effusion."
- change predicates and comparison phrases go: "The effusion is unchanged from the prior study." ->
  "The effusion."; "Compared to the prior study, there is a small effusion." -> "There is a small effusion."
- "Interval increase in the size of the left effusion." -> "Left effusion."
- a finding that has resolved / was removed is now ABSENT: "Pneumothorax has resolved." ->
  "No pneumothorax."; "Interval removal of the endotracheal tube." -> "No endotracheal tube."
- a sentence that only compares ("No significant interval change.", "Compared to prior study dated
  XXXX.", "Stable appearance of the chest.") is dropped.

Word lists: ``lexicon/temporal.yaml``.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Sequence

from clinclip.files import read_mapping
from clinclip.text.rules import scan_spans


def _alt(items) -> str:
    return "(?:" + "|".join(sorted(items, key=len, reverse=True)) + ")"


@functools.lru_cache(maxsize=1)
def _compiled() -> dict:
    data = read_mapping(Path(__file__).parent / "lexicon" / "temporal.yaml", "temporal lexicon")
    change = _alt(data["change_words"])
    comparative = _alt(data["comparative_words"])
    intensity = _alt(data["intensity_words"])
    state = _alt(data["state_words"])
    prior = _alt(data["prior_words"])
    strong_prior = _alt(data["strong_prior_words"])
    filler = _alt(data["filler_words"])
    I = re.IGNORECASE
    be = r"(?:is|are|was|were|has\s+been|have\s+been|remains?|remained|appears?|appeared|seems?|persists?|looks?)"
    det = r"(?:(?:the|a|an|this|these|his|her|their|known|previously\s+(?:seen|noted|described|demonstrated|identified|present)|prior|previous|preexisting|pre-existing|residual)\s+)*"
    c: dict[str, re.Pattern] = {}
    # Whole sentence is a comparison / change-only statement.
    c["only_compare"] = re.compile(
        rf"^(?:(?:as\s+)?(?:compared|in\s+comparison|when\s+compared)\s+(?:to|with)\b[^,;]*"
        rf"|comparison\b.*|(?:there\s+(?:has\s+been|is|are)\s+)?(?:no|little|minimal|only\s+minimal|very\s+little)\s+(?:(?:significant|substantial|appreciable|definite|major|other|further|interval|radiographic|visible|apparent|new|acute|overall|gross|notable|marked|measurable|real)\s+)*"
        rf"(?:interval\s+)?(?:change|changes|difference|progression|worsening|improvement)"
        rf"(?:\s+(?:since|from|compared\s+(?:to|with)|when\s+compared\s+(?:to|with)|relative\s+to|in\s+comparison\s+(?:to|with)|as\s+compared\s+(?:to|with))\b.*)?)$", I)
    # Leading comparison clause: "Compared to the prior study, ..." / "Since the last exam, ..."
    c["lead_clause"] = re.compile(
        rf"^(?:(?:as\s+)?(?:compared|in\s+comparison|when\s+compared)\s+(?:to|with)|since|from|relative\s+to|"
        rf"in\s+the\s+interval(?:\s+since)?|on\s+the\s+(?:prior|previous))\b[^,;]*,\s*", I)
    # Trailing comparison phrase: "... compared to the prior radiograph of XXXX." (the change words
    # before it, ", unchanged", are removed by trail_change afterwards).
    c["trail_compare"] = re.compile(
        rf"\b(?:(?:as\s+)?(?:compared|when\s+compared)\s+(?:to|with)|since|from|relative\s+to|in\s+comparison\s+(?:to|with)"
        rf"|than\s+(?:on|in)|than|(?:similar|identical|comparable|unchanged|stable)\s+(?:in\s+\w+\s+)?(?:to|with))\s+"
        rf"(?:the\s+|a\s+)?{prior}\b[^;]*$"
        rf"|\b(?:on|in|at)\s+(?:the\s+|a\s+)?{strong_prior}\b[^;]*$", I)
    # "Comparison XXXX, XXXX Clear lungs." (IU): the comparison tokens before the statement.
    c["comparison_lead"] = re.compile(
        rf"^(?:(?:comparison|compared|is|are|made|to|with|none|available|of|dated|and|the|{prior})\b[\s,:;.-]*|[\d/.-]+[\s,:;]*)+", I)
    c["change_and"] = re.compile(rf"\s+(?:and|or)\s+(?:(?:{intensity})\s+)?(?:{change})(?=\s)", I)
    # Trailing change predicate: "... is unchanged", ", stable", "... has increased in size".
    c["trail_change"] = re.compile(
        rf"(?:,\s*(?:which\s+|that\s+)?(?:{be}\s+)?|\s+(?:and|but)\s+(?:{be}\s+)?|\s+(?:which\s+|that\s+)?(?:{be}\s+)?(?:(?:{intensity})\s+)?|\s+(?:has|have)\s+(?:(?:{intensity})\s+)?)"
        rf"(?:(?:{intensity})\s+)?(?:{change}|{comparative}|increased|decreased|improved|worsened|progressed|grown|"
        rf"diminished|regressed|cleared\s+somewhat|partially\s+(?:resolved|cleared))"
        rf"(?:\s+(?:in|and)\s+(?:size|appearance|extent|position|configuration|degree|conspicuity|prominence|severity|distribution)"
        rf"(?:\s+and\s+(?:size|appearance|extent|position|configuration))?)?(?:\s+(?:slightly|somewhat|minimally|mildly))?$", I)
    c["persists"] = re.compile(r"\s+(?:persists?|persisted|remains?|has\s+persisted|continues?)\s*$", I)
    # Resolution: now absent.
    c["resolution_lead"] = re.compile(
        rf"^(?:(?:there\s+(?:has\s+been|is)\s+)?(?:an?\s+)?(?:interval\s+|complete\s+|near[- ]complete\s+)?"
        rf"(?:resolution|removal|clearing|clearance|disappearance)\s+of\s+){det}(?P<x>.+)$", I)
    c["resolution_trail"] = re.compile(
        rf"^{det}(?P<x>.+?)\s+(?:(?:has|have|had)\s+(?:since\s+|now\s+|completely\s+|interval\s+)?"
        rf"(?:been\s+)?|(?:is|are|was|were)\s+(?:now\s+)?)?"
        rf"(?:(?:since|now|completely|entirely|interval)\s+)?(?:resolved|cleared|removed|disappeared|gone|no\s+longer\s+(?:seen|visualized|present|evident|identified|demonstrated|visible|appreciated))"
        rf"(?:\s+(?:in\s+the\s+interval|since.*|from.*|compared.*|on\s+the.*))?$", I)
    c["partial_resolution"] = re.compile(
        r"(?:\s+(?:has|have|had|is|are|was|were)(?:\s+been)?)?\s*\b(?:nearly|almost|largely|mostly|partially|partly|"
        r"incompletely)\s+(?:resolved|cleared)\b", I)
    c["previously"] = re.compile(
        r"\b(?:the\s+)?previously\s+(?:noted|seen|described|demonstrated|identified|visualized|present|reported)\s+", I)
    # "No change in (the) X" -> "X"
    c["no_change_in"] = re.compile(
        rf"^(?:there\s+(?:has\s+been|is)\s+)?no\s+(?:(?:significant|substantial|appreciable|definite|major|interval|radiographic|apparent|gross|overall)\s+)*"
        rf"(?:interval\s+)?(?:change|changes|difference)\s+(?:in|of)\s+(?:the\s+)?(?:(?:size|appearance|extent|degree|amount|position)\s+(?:of|and\s+\w+\s+of)\s+(?:the\s+)?)?(?:the\s+)?(?P<x>.+)$", I)
    # "Interval increase in (the size of) X" -> "X"
    c["change_of"] = re.compile(
        rf"^(?:there\s+(?:has\s+been|is|are)\s+)?(?:an?\s+)?(?:(?:{intensity}|apparent|mild|slight|minimal|significant|marked|further|continued|small|moderate|overall)\s+)*"
        rf"(?:interval\s+)?(?:increase|decrease|improvement|worsening|progression|development|enlargement|reduction|regression|growth|"
        rf"placement|insertion|advancement|retraction|repositioning|change|increased|decreased|appearance|reappearance|redemonstration|re-demonstration|evolution|interval\s+development)"
        rf"(?:\s+(?:in|of)\s+(?:the\s+)?(?:size|extent|amount|degree|conspicuity|prominence|severity|number|density|appearance)(?:\s+and\s+\w+)?)?"
        rf"\s+(?:in|of)\s+(?:the\s+)?(?P<x>.+)$", I)
    c["change_of_size"] = re.compile(
        rf"^(?:(?:{intensity})\s+)?(?:increased|decreased|increasing|decreasing|larger|smaller)\s+(?:size|extent|conspicuity|prominence|amount)\s+of\s+(?P<x>.+)$", I)
    # Change word modifying a noun (not before a state word).
    c["change_adj"] = re.compile(
        rf"\b(?:(?:{intensity})\s+)?(?:{change})(?:\s+(?:and|or|to)\s+(?:{change}))?\s+(?!{state}\b)(?=[a-z(])", I)
    c["again_lead"] = re.compile(r"^(?:again|re-?demonstrated|redemonstrated|once again)\s+(?:seen|noted|demonstrated|identified|visualized)?\s*(?:is|are)?\s*", I)
    c["again_mid"] = re.compile(r"\b(?:again|once\s+again)\s+(?=(?:seen|noted|demonstrated|identified|visualized|evident|present)\b)", I)
    c["redemonstrated"] = re.compile(r"\b(?:re-?demonstrated|re-?demonstration\s+of)\b", I)
    c["filler_only"] = re.compile(rf"^(?:(?:{filler})\b[\s,.:;'\"()/-]*)*$", I)
    c["spaces"] = re.compile(r"\s+")
    c["article"] = re.compile(r"\b(a)n\s+(?=[bcdfgjklmnpqrstvwxyz])", I)
    c["orphan_punct"] = re.compile(r"\s+([,.;:])")
    c["trail_punct"] = re.compile(r"[\s,;:-]+$")
    c["lead_punct"] = re.compile(r"^[\s,;:.-]+")
    c["words"] = re.compile(r"[a-z]+")
    triggers = {re.match(r"[a-z]+", w).group() for w in data["change_words"] if re.match(r"[a-z]+", w)}
    triggers |= {"compared", "comparison", "since", "change", "changes", "changed", "resolution", "resolved",
                 "resolving", "removal", "removed", "cleared", "clearing", "clearance", "interval", "again",
                 "persist", "persists", "persisted", "redemonstrated", "redemonstration", "prior", "previous",
                 "previously", "increase", "decrease", "improvement", "worsening", "progression", "development",
                 "placement", "longer", "disappeared", "disappearance", "withdrawn", "withdrawal", "insertion",
                 "advancement", "than", "similar", "identical", "comparable", "from", "re", "remains", "remain",
                 "continues", "continue", "reappearance", "retraction", "repositioning", "enlargement",
                 "reduction", "regression", "growth", "evolution", "appearance", "gone", "larger", "smaller",
                 "grown", "diminished", "regressed", "progressed", "enlarged", "relative", "versus", "on"}
    c["triggers"] = frozenset(triggers)
    c["quick"] = re.compile(
        rf"\b(?:{change}|compared|comparison|since|change|changes|resolution|resolved|removal|removed|cleared|clearing|"
        rf"interval|again|persists?|redemonstrat\w*|re-demonstrat\w*|prior|previous|increase|decrease|improvement|"
        rf"worsening|progression|development|placement|no\s+longer|disappeared|withdrawn|insertion|advancement|than)\b", I)
    return c


def _tidy(text: str, c) -> str:
    text = c["spaces"].sub(" ", text).strip()
    text = c["orphan_punct"].sub(r"\1", text)
    text = c["lead_punct"].sub("", text)
    text = c["trail_punct"].sub("", text).rstrip(".")
    return text


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _negated(x: str, c) -> str:
    x = _tidy(x, c)
    x = re.sub(r"^(?:the|a|an)\s+", "", x, flags=re.IGNORECASE)
    return f"No {x[:1].lower() + x[1:] if not x[:2].isupper() else x}"


def rewrite_sentence(sentence: str) -> str | None:
    """The sentence rewritten to the current state, or None when it only compares with a prior."""
    c = _compiled()
    s = _tidy(sentence, c)
    if not s:
        return None
    if c["triggers"].isdisjoint(c["words"].findall(s.lower())):
        return _sentence_case(s) + "."
    stripped = c["lead_clause"].sub("", s)
    if stripped != s and stripped:
        s = _sentence_case(stripped)
    if c["only_compare"].match(s) or c["comparison_lead"].match(s) and s[:4].lower() == "comp":
        # Drop a comparison-only sentence; if it also states findings, keep what follows the
        # comparison ("No interval change, no infiltrates." -> "No infiltrates.").
        if not _has_mention(s):
            return None
        lead = c["comparison_lead"].match(s)
        if lead and lead.end() > 0 and s[:4].lower() == "comp":
            s = s[lead.end():]
        elif "," in s:
            s = s[s.index(",") + 1:]
        else:
            return None
        s = _tidy(s, c)
        if not s:
            return None
        return rewrite_sentence(s)
    s = c["lead_clause"].sub("", s)
    s = c["trail_compare"].sub("", s)
    s = _tidy(s, c)
    if not c["partial_resolution"].search(s):
        m = c["resolution_lead"].match(s) or c["resolution_trail"].match(s)
        if m:
            x = _tidy(m.group("x"), c)
            x = c["change_adj"].sub("", x)
            if x and not c["filler_only"].match(x):
                return _sentence_case(_negated(x, c)) + "."
            return None
    else:
        s = c["partial_resolution"].sub("", s)
    for key in ("no_change_in", "change_of", "change_of_size"):
        m = c[key].match(s)
        if m:
            s = m.group("x")
            break
    s = c["previously"].sub("", s)
    s = c["again_lead"].sub("", s)
    s = c["again_mid"].sub("", s)
    s = c["redemonstrated"].sub("seen", s)
    s = c["trail_change"].sub("", s)
    s = c["persists"].sub("", s)
    s = c["change_and"].sub("", s)
    s = c["change_adj"].sub("", s)
    s = c["trail_compare"].sub("", s)
    s = c["article"].sub(lambda m: m.group(1) + " ", _tidy(s, c))  # "an unchanged X" -> "a X"
    if not s or c["filler_only"].match(s):
        return None
    return _sentence_case(s) + "."


def _has_mention(text: str) -> bool:
    return bool(scan_spans(text))


def remove_temporal(sentences: Sequence[str]) -> list[str]:
    """Rewrite each sentence to the current state; drop those that only compare with a prior study."""
    out = []
    for sentence in sentences:
        rewritten = rewrite_sentence(sentence)
        if rewritten:
            out.append(rewritten)
    return out
