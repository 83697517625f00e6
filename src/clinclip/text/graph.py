"""Report graphs in the RadGraph schema (docs/text-pipeline.md).

Output (one dict per report, the shape of RadGraph's own output; the schema is ``clinclip.manifest``'s)::

    {"text": "left pleural effusion .",          # the report's tokens joined by single spaces
     "entities": {"1": {"tokens": "left", "label": "ANAT-DP", "start_ix": 0, "end_ix": 0,
                        "relations": [["modify", "2"]]},
                  "2": {"tokens": "pleural", "label": "ANAT-DP", "start_ix": 1, "end_ix": 1, "relations": []},
                  "3": {"tokens": "effusion", "label": "OBS-DP", "start_ix": 2, "end_ix": 2,
                        "relations": [["located_at", "2"]]}}}

``start_ix``/``end_ix`` are inclusive token indices into ``text``. Labels: ANAT-DP, OBS-DP (present),
OBS-U (uncertain), OBS-DA (absent); relations ``modify``, ``located_at``, ``suggestive_of``. A report with
no entity has the single node ``{"tokens": "no entity", "label": "EMPTY", "start_ix": -1, "end_ix": -1,
"relations": []}``.

Backends: ``rules`` (default, no model: an anatomy lexicon, observations and their assertion from
``clinclip.text.rules.find_mentions``, relations attached within each sentence) and ``radgraph`` (the
``radgraph`` package with its downloaded weights; its output mapped onto the same labels).
"""

from __future__ import annotations

import functools
import json
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Iterable, Sequence

from clinclip.errors import ClinclipError
from clinclip.manifest import EMPTY_NODE, ENTITY_TYPES, RELATION_TYPES
from clinclip.observations import NO_FINDING
from clinclip.text.rules import find_mentions

ASSERTION_TO_LABEL = {"positive": "OBS-DP", "negative": "OBS-DA", "uncertain": "OBS-U"}

_TOKEN = re.compile(r"[A-Za-z0-9]+(?:['\-][A-Za-z0-9]+)*|[^\sA-Za-z0-9]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

# Anatomy heads (multi-word first so that the longest phrase wins) and the location words that modify them.
_ANATOMY_HEADS = (
    "cardiomediastinal silhouette", "cardiac silhouette", "mediastinal silhouette", "mediastinal contours?",
    "hilar contours?", "costophrenic angles?", "costophrenic sulc(?:us|i)", "pleural spaces?",
    "cavoatrial junction", "soft tissues?", "lung zones?", "lung fields?", "lung bases?", "lung apex",
    "lungs?", "lobes?", "bases?", "apex", "apices", "hil(?:um|a)", "hilar", "perihilar", "heart", "cardiac",
    "mediastinum", "mediastinal", "cardiomediastinum", "pleura", "pleural", "hemidiaphragms?",
    "diaphragms?", "chest", "thorax", "thoracic", "spine", "vertebra(?:e|l)?", "ribs?", "clavicles?",
    "trachea", "carina", "bronch(?:us|i)", "aorta", "aortic", "retrocardiac", "basilar", "bibasilar",
    "basal", "apical", "lingula", "lingular", "pulmonary", "parenchyma", "parenchymal", "vasculature",
    "vascular", "svc", "atrium", "stomach", "abdomen", "osseous structures?", "bones?", "bony", "shoulders?",
    "humer(?:us|i)", "neck", "subsegmental", "midline", "cardiopulmonary", "intrathoracic", "airspaces?",
)
_ANATOMY_MODIFIERS = ("left", "right", "bilateral", "both", "upper", "lower", "middle", "mid", "lateral",
                      "medial", "posterior", "anterior")
_SEVERITY = ("mild", "mildly", "moderate", "moderately", "severe", "small", "large", "minimal", "trace",
             "tiny", "subtle", "patchy", "focal", "diffuse", "extensive", "marked", "minor", "massive",
             "slight", "borderline", "layering", "streaky", "faint", "increased", "decreased")
_SUGGESTIVE = re.compile(r"\b(?:suggestive of|suggesting|may represent|might represent|could represent|"
                         r"likely represents?|which may be|concerning for|consistent with|compatible with|"
                         r"representing|may reflect|likely reflects?|worrisome for|suspicious for)\b", re.I)
_FUNCTION_WORDS = frozenset("the a an of is are was were be been not no in on at with without to and or there "
                            "this these which that seen noted identified".split())
_NEGATION_WORDS = frozenset(("no", "without", "negative", "free"))
_ANATOMY = re.compile(r"\b(?:" + "|".join(_ANATOMY_HEADS) + r")\b", re.I)
_ANATOMY_MOD_SET = frozenset(_ANATOMY_MODIFIERS)
_SEVERITY_SET = frozenset(_SEVERITY)


def tokenize(text: str) -> list[tuple[str, int, int]]:
    """RadGraph-like word tokens (words and single punctuation marks) with their character spans."""
    return [(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def split_sentences(text: str) -> list[str]:
    """Plain sentence boundaries (after . ! ?) for a text that is already the pipeline's sentences."""
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


class _Builder:
    """Collects one sentence's entities (token spans) and relations."""

    def __init__(self):
        self.tokens: list[str] = []
        self.entities: list[dict] = []  # {"s", "e", "label", "relations": [(type, entity list index)]}

    def add(self, s: int, e: int, label: str) -> int:
        self.entities.append({"s": s, "e": e, "label": label, "relations": []})
        return len(self.entities) - 1

    def relate(self, src: int, kind: str, dst: int) -> None:
        if src != dst and (kind, dst) not in self.entities[src]["relations"]:
            self.entities[src]["relations"].append((kind, dst))


def _trim(run: list[int], lower: list[str]) -> list[int]:
    """A token run without function words and punctuation at its edges."""
    lo, hi = 0, len(run)
    while lo < hi and (lower[run[lo]] in _FUNCTION_WORDS or not lower[run[lo]][0].isalnum()):
        lo += 1
    while hi > lo and (lower[run[hi - 1]] in _FUNCTION_WORDS or not lower[run[hi - 1]][0].isalnum()):
        hi -= 1
    return run[lo:hi]


def _token_span(starts: list[int], ends: list[int], char_start: int, char_end: int) -> tuple[int, int] | None:
    """Indices (inclusive) of the tokens overlapping [char_start, char_end), or None."""
    first = bisect_right(ends, char_start)
    last = bisect_left(starts, char_end) - 1
    return (first, last) if first <= last else None


def _add_sentence(b: _Builder, sentence: str, mentions: Sequence) -> None:
    toks = tokenize(sentence)
    if not toks:
        return
    offset = len(b.tokens)
    b.tokens.extend(t for t, _, _ in toks)
    lower = [t.lower() for t, _, _ in toks]
    starts, ends = [s for _, s, _ in toks], [e for _, _, e in toks]

    # Anatomy phrases (heads) of the sentence, as local token spans.
    anatomy = []
    for m in _ANATOMY.finditer(sentence):
        span = _token_span(starts, ends, m.start(), m.end())
        if span:
            anatomy.append(span)

    # Observations: the mention's tokens minus anatomy heads inside it ("pleural effusion" -> pleural + effusion).
    observations = []  # (local s, local e, label, [anatomy spans carved out of it])
    used_anatomy = set()
    for mention in sorted(mentions, key=lambda m: (m.start, m.end)):
        span = _token_span(starts, ends, mention.start, mention.end)
        label = ASSERTION_TO_LABEL.get(getattr(mention, "assertion", "positive"), "OBS-DP")
        if mention.observation == NO_FINDING and span is not None and lower[span[0]] in _NEGATION_WORDS:
            # "No acute cardiopulmonary abnormality" states No Finding by negating an abnormality.
            label, span = "OBS-DA", ((span[0] + 1, span[1]) if span[1] > span[0] else None)
        if span is None or any(span[0] <= oe and os_ <= span[1] for os_, oe, _, _ in observations):
            continue  # overlapping mentions (one phrase counted for two observations): one node
        s, e = span
        inside = [a for a in anatomy if a[0] >= s and a[1] <= e]
        covered = {i for a in inside for i in range(a[0], a[1] + 1)}
        runs, run = [], []
        for i in range(s, e + 1):
            if i in covered:
                if run:
                    runs.append(run)
                run = []
            else:
                run.append(i)
        if run:
            runs.append(run)
        runs = [_trim(r, lower) for r in runs]
        runs = [r for r in runs if r]
        if runs:
            best = max(reversed(runs), key=len)  # the head noun usually comes last
            observations.append((best[0], best[-1], label, inside))
            used_anatomy.update(inside)
        else:  # the whole mention is an anatomy phrase: keep it as the observation
            observations.append((s, e, label, []))
    obs_tokens = {i for s, e, _, _ in observations for i in range(s, e + 1)}
    anatomy = [a for a in anatomy if a in used_anatomy or not any(i in obs_tokens for i in range(a[0], a[1] + 1))]
    anatomy = sorted(set(anatomy))

    taken = set(obs_tokens) | {i for a in anatomy for i in range(a[0], a[1] + 1)}
    anat_ids = {a: b.add(a[0] + offset, a[1] + offset, "ANAT-DP") for a in anatomy}
    anat_heads = dict(anat_ids)  # span -> entity, the targets of located_at

    # Location words before an anatomy head modify it; standing alone ("on the left") they are anatomy.
    head_at = {a[0]: aid for a, aid in anat_ids.items()}
    obs_at = {}
    obs_ids = []
    for s, e, label, inside in observations:
        oid = b.add(s + offset, e + offset, label)
        obs_ids.append((s, e, oid, inside, label))
        obs_at[s] = oid
    for i in range(len(toks) - 1, -1, -1):
        if lower[i] not in _ANATOMY_MOD_SET or i in taken:
            continue
        j = i + 1
        while j < len(toks) and (lower[j] in _ANATOMY_MOD_SET or lower[j] in ("and", ",")) and j not in obs_tokens:
            j += 1
        mid = b.add(i + offset, i + offset, "ANAT-DP")
        taken.add(i)
        if j in head_at:
            b.relate(mid, "modify", head_at[j])
        else:
            anat_heads[(i, i)] = mid
            head_at[i] = mid

    # Severity words right before an observation modify it (same assertion as the observation).
    # Severity words before an observation modify it (same assertion), also across its location words
    # ("small left pleural effusion", "mild to moderate pulmonary edema").
    anatomy_tokens = {i - offset for ent in b.entities if ent["label"] == "ANAT-DP"
                      for i in range(ent["s"], ent["e"] + 1)}
    for s, e, oid, _, label in obs_ids:
        i = s - 1
        while i >= 0:
            if lower[i] in _SEVERITY_SET and i not in taken:
                b.relate(b.add(i + offset, i + offset, label), "modify", oid)
                taken.add(i)
            elif not (i in anatomy_tokens or lower[i] in ("to", "and", ",")):
                break
            i -= 1

    # located_at: the anatomy carved from the observation's own phrase, else the nearest in the sentence.
    for s, e, oid, inside, _ in obs_ids:
        if inside:
            for a in inside:
                b.relate(oid, "located_at", anat_ids[a])
            continue
        if anat_heads:
            nearest = min(anat_heads, key=lambda a: (min(abs(a[0] - e), abs(s - a[1])), a[0]))
            b.relate(oid, "located_at", anat_heads[nearest])

    # "X suggestive of / may represent Y": X suggestive_of Y.
    for cue in _SUGGESTIVE.finditer(sentence):
        span = _token_span(starts, ends, cue.start(), cue.end())
        if not span:
            continue
        before = [o for o in obs_ids if o[1] < span[0]]
        after = [o for o in obs_ids if o[0] > span[1]]
        if before and after:
            b.relate(before[-1][2], "suggestive_of", after[0][2])


@dataclass(frozen=True)
class _SentenceGraph:
    """One sentence's graph with local token indices; entities in position order, relations pointing at
    local ranks. Reports are concatenations of these (cached per distinct sentence)."""

    text: str  # the sentence's tokens joined by spaces
    n_tokens: int
    entities: tuple  # ((start, end, label, tokens, ((kind, local rank), ...)), ...)


def _sentence_graph(sentence: str, mentions: Sequence) -> _SentenceGraph:
    b = _Builder()
    _add_sentence(b, sentence, mentions)
    order = sorted(range(len(b.entities)), key=lambda k: (b.entities[k]["s"], b.entities[k]["e"]))
    rank = {k: r for r, k in enumerate(order)}
    entities = tuple((b.entities[k]["s"], b.entities[k]["e"], b.entities[k]["label"],
                      " ".join(b.tokens[b.entities[k]["s"]:b.entities[k]["e"] + 1]),
                      tuple((kind, rank[dst]) for kind, dst in b.entities[k]["relations"])) for k in order)
    return _SentenceGraph(" ".join(b.tokens), len(b.tokens), entities)


@functools.lru_cache(maxsize=200_000)
def sentence_mentions(sentence: str) -> tuple:
    """``rules.find_mentions`` of one sentence, cached (corpora repeat sentences: "No pneumothorax.")."""
    return tuple(find_mentions(sentence))


@functools.lru_cache(maxsize=200_000)
def _cached_sentence_graph(sentence: str) -> _SentenceGraph:
    return _sentence_graph(sentence, sentence_mentions(sentence))


def graph_from_sentences(sentences: Sequence[str], mentions: Sequence[Sequence] | None = None) -> dict:
    """The rules graph of a report given as sentences. ``mentions[i]``, when given, are sentence i's
    ``rules.find_mentions`` result; by default they are found (and each sentence's graph cached)."""
    texts, entities = [], {}
    offset = 0
    for k, sentence in enumerate(sentences):
        part = _cached_sentence_graph(sentence) if mentions is None else _sentence_graph(sentence, mentions[k])
        if part.text:
            texts.append(part.text)
        base = len(entities) + 1
        for s, e, label, tokens, relations in part.entities:
            entities[str(len(entities) + 1)] = {
                "tokens": tokens, "label": label, "start_ix": s + offset, "end_ix": e + offset,
                "relations": [[kind, str(base + dst)] for kind, dst in relations]}
        offset += part.n_tokens
    if not entities:
        entities = {"1": dict(EMPTY_NODE, relations=[])}
    return {"text": " ".join(texts), "entities": entities}


def build_graph(text: str, backend: str = "rules") -> dict:
    """The RadGraph-schema graph of one report text (a dict; ``json.dumps`` it for the manifest)."""
    return build_graphs([text], backend=backend)[0]


def build_graphs(texts: Iterable[str], backend: str = "rules", **backend_options) -> list[dict]:
    """Graphs of many reports. ``backend``: ``rules`` or ``radgraph`` (options: ``model_type``,
    ``model_cache_dir``, ``batch_size``)."""
    texts = ["" if t is None else str(t) for t in texts]
    if backend == "rules":
        return [graph_from_sentences(split_sentences(t)) for t in texts]
    if backend == "radgraph":
        return RadGraphBackend(**backend_options).graphs(texts)
    raise ClinclipError(f"unknown graph backend '{backend}': expected 'rules' or 'radgraph'")


def dumps(graph: dict) -> str:
    """The manifest's JSON string of a graph (compact, key order kept)."""
    return json.dumps(graph, separators=(",", ":"), ensure_ascii=False)


# ----------------------------------------------------------------------------------------- radgraph backend

# RadGraph v1 labels are already ours; RadGraph-XL writes "<Kind>::<certainty>".
_XL_KIND = {"anatomy": "ANAT", "observation": "OBS"}
_XL_CERTAINTY = {"definitely present": "DP", "definitely absent": "DA", "uncertain": "U"}


def map_radgraph_label(label: str) -> str:
    """A radgraph package label (v1 ``OBS-DP`` or XL ``Observation::definitely present``) -> ours."""
    if label in ENTITY_TYPES:
        return label
    if "::" in label:
        kind, certainty = (part.strip().lower() for part in label.split("::", 1))
        if kind == "anatomy":
            return "ANAT-DP"  # RadGraph annotates anatomy as present whatever the certainty
        if kind in _XL_KIND and certainty in _XL_CERTAINTY:
            return f"{_XL_KIND[kind]}-{_XL_CERTAINTY[certainty]}"
    if label in ("ANAT-DA", "ANAT-U"):
        return "ANAT-DP"
    raise ClinclipError(f"radgraph output: unknown entity label '{label}' (expected one of {ENTITY_TYPES} "
                        "or 'Anatomy|Observation::definitely present|definitely absent|uncertain')")


def radgraph_to_graph(annotation: dict) -> dict:
    """Map one report's radgraph annotation (``radgraph(...)["0"]``) onto clinclip's graph JSON: labels
    mapped, ids renumbered 1..n in token order, relations kept when of the three RadGraph types."""
    entities = annotation.get("entities") or {}
    text = annotation.get("text", "")
    if not entities:
        return {"text": text, "entities": {"1": dict(EMPTY_NODE, relations=[])}}
    order = sorted(entities, key=lambda k: (int(entities[k]["start_ix"]), int(entities[k]["end_ix"]), k))
    new_id = {old: str(i + 1) for i, old in enumerate(order)}
    out = {}
    for old in order:
        ent = entities[old]
        relations = []
        for kind, target in ent.get("relations", []):
            if kind not in RELATION_TYPES:
                raise ClinclipError(f"radgraph output: unknown relation '{kind}' (expected {RELATION_TYPES})")
            if str(target) in new_id:
                relations.append([kind, new_id[str(target)]])
        out[new_id[old]] = {"tokens": ent["tokens"], "label": map_radgraph_label(ent["label"]),
                            "start_ix": int(ent["start_ix"]), "end_ix": int(ent["end_ix"]),
                            "relations": relations}
    return {"text": text, "entities": out}


class RadGraphBackend:
    """The ``radgraph`` package (``pip install radgraph``) with weights already in its cache folder (they
    download from the Hugging Face hub on first use, which needs the network)."""

    def __init__(self, model_type: str = "radgraph", model_cache_dir: str | None = None, batch_size: int = 1):
        try:
            from radgraph import RadGraph
        except ImportError as err:
            raise ClinclipError("graph backend 'radgraph' needs the radgraph package: pip install radgraph "
                                "(or clinclip[radgraph]); the default backend 'rules' needs nothing") from err
        try:
            self.model = RadGraph(model_type=model_type, model_cache_dir=model_cache_dir, batch_size=batch_size)
        except Exception as err:  # missing weights offline, a corrupt archive, a wrong model_type
            where = model_cache_dir or "radgraph's default cache folder"
            raise ClinclipError(f"radgraph model '{model_type}' could not be loaded from {where}: {err}. "
                                "Its weights download from the Hugging Face hub on first use; run once with "
                                "network access or pass model_cache_dir pointing to the extracted model") from err

    def graphs(self, texts: Sequence[str]) -> list[dict]:
        out: list[dict | None] = [None] * len(texts)
        todo = [i for i, t in enumerate(texts) if t.strip()]
        for i, t in enumerate(texts):
            if not t.strip():
                out[i] = {"text": "", "entities": {"1": dict(EMPTY_NODE, relations=[])}}
        if todo:
            annotations = self.model([texts[i] for i in todo])
            for k, i in enumerate(todo):
                out[i] = radgraph_to_graph(annotations[str(k)])
        return out  # type: ignore[return-value]
