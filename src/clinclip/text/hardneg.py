"""Hard negatives r^n and removed-entity reports r^r (paper 4.1, Fig. 2; docs/text-pipeline.md).

Abnormal report r (some finding positive): one positive finding is chosen uniformly; the sentences
about it are removed (giving r^r) and a negative statement for it, from ``templates/negations.yaml``, is
inserted at a uniformly chosen position (beginning / middle / end, by sentence index), giving r^n.
Normal report (No Finding positive, or nothing positive): r^n is a random report of the pool of reports
whose only positive finding is one finding (position ``"pool"``).

r^n is re-labelled by the labeler, in batch, and must show the chosen entity negative or absent. When it
does not (another sentence still asserts it), the kept sentences are labelled one by one and those that
assert the entity are dropped too; when that fails as well the next positive entity is tried; and when
every entity fails the report gets no hard negative and ``failure`` says why. Every such event is counted
in the returned ``Counter``, never silent.

Randomness: each report has its own ``numpy.random.Generator`` seeded from ``(seed, report index)``, so
a report's r^n does not depend on how the corpus was chunked across processes.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from clinclip.errors import ClinclipError
from clinclip.files import read_mapping
from clinclip.observations import FINDINGS, LABEL_POSITIVE, LABEL_UNCERTAIN, NO_FINDING, OBSERVATIONS

POSITIONS = ("beginning", "middle", "end")
POOL = "pool"
_OBS_INDEX = {name: i for i, name in enumerate(OBSERVATIONS)}
_NO_FINDING_INDEX = _OBS_INDEX[NO_FINDING]

# A callable that removes the sentences about an entity: ([(sentences, entity)]) -> [kept or None].
# None means "could not do it" (e.g. an LLM answer that failed validation); the rules remover is then used.
SentenceRemover = Callable[[Sequence[tuple[Sequence[str], str]]], list]


@dataclass(frozen=True)
class HardNegative:
    """One report's hard negative. ``negated_labels`` are the labeler's labels of ``text_negated`` (14, in
    OBSERVATIONS order). ``text_removed`` is r^r (None for normal reports, whose r^n comes from the pool).
    ``failure`` is None on success, else the reason no hard negative could be made (the texts are None)."""

    text_negated: str | None
    text_removed: str | None
    entity: str | None
    position: str | None
    negated_labels: tuple[float, ...] | None
    sentences_negated: tuple[str, ...] = ()
    sentences_removed: tuple[str, ...] = ()
    failure: str | None = None


@dataclass
class HardNegativePool:
    """Reports whose only positive finding is one finding: the r^n of normal reports.
    ``sentences[i]``, ``labels[i]`` and ``entity[i]`` describe pool report i."""

    sentences: list[tuple[str, ...]] = field(default_factory=list)
    labels: list[tuple[float, ...]] = field(default_factory=list)
    entities: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sentences)

    @classmethod
    def from_reports(cls, sentence_lists: Sequence[Sequence[str]], labels: np.ndarray,
                     keep: Sequence[bool] | None = None) -> "HardNegativePool":
        pool = cls()
        labels = np.asarray(labels, dtype=np.float64)
        for i, sentences in enumerate(sentence_lists):
            if keep is not None and not keep[i]:
                continue
            entity = single_finding(labels[i])
            if entity is not None and sentences:
                pool.sentences.append(tuple(sentences))
                pool.labels.append(tuple(float(v) for v in labels[i]))
                pool.entities.append(entity)
        return pool


def positive_findings(labels: Sequence[float]) -> list[str]:
    """Findings (not No Finding) labelled positive, in OBSERVATIONS order."""
    return [name for name in FINDINGS if labels[_OBS_INDEX[name]] == LABEL_POSITIVE]


def is_normal(labels: Sequence[float]) -> bool:
    """Normal (docs/text-pipeline.md): No Finding positive, or no finding positive at all."""
    return labels[_NO_FINDING_INDEX] == LABEL_POSITIVE or not positive_findings(labels)


def single_finding(labels: Sequence[float]) -> str | None:
    """The finding of a report whose only positive finding is exactly one (not Support Devices, which
    leaves a study normal under the CheXpert convention), else None."""
    found = positive_findings(labels)
    if len(found) == 1 and found[0] != "Support Devices" and labels[_NO_FINDING_INDEX] != LABEL_POSITIVE:
        return found[0]
    return None


def report_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of report ``index``: independent of chunking and of the other reports."""
    return np.random.default_rng([int(seed), int(index)])


@functools.lru_cache(maxsize=8)
def _load_templates_cached(path: str | None) -> dict[str, tuple[str, ...]]:
    source = Path(path) if path is not None else Path(__file__).parent / "templates" / "negations.yaml"
    where = path if path is not None else "clinclip/text/templates/negations.yaml"
    data = read_mapping(source, "negation templates file (a mapping observation -> list of sentences)")
    unknown = sorted(set(data) - set(FINDINGS))
    if unknown:
        raise ClinclipError(f"{where}: unknown observation(s) {unknown}; expected names from {list(FINDINGS)}")
    missing = [name for name in FINDINGS if not data.get(name)]
    if missing:
        raise ClinclipError(f"{where}: no negation template for {missing}")
    out = {}
    for name, items in data.items():
        if not isinstance(items, list) or not all(isinstance(s, str) and s.strip() for s in items):
            raise ClinclipError(f"{where}: '{name}' must be a list of non-empty sentences")
        out[name] = tuple(s.strip() for s in items)
    return out


def load_templates(path: str | Path | None = None) -> dict[str, tuple[str, ...]]:
    """Negation templates per finding: the packaged YAML, or a user's file of the same shape."""
    return _load_templates_cached(None if path is None else str(path))


def remove_entity_sentences(sentences: Sequence[str], entity: str,
                            mentions: Sequence[Sequence] | None = None) -> list[str]:
    """The sentences that do not mention ``entity`` (any assertion): the rules remover. ``mentions[i]``
    may give the already-found mentions of sentence i (they are found once per sentence in prepare)."""
    if mentions is None:
        from clinclip.text.graph import sentence_mentions

        mentions = [sentence_mentions(s) for s in sentences]
    return [s for s, ms in zip(sentences, mentions) if not any(m.observation == entity for m in ms)]


def _insert(kept: Sequence[str], negation: str, rng: np.random.Generator) -> tuple[list[str], str]:
    """Insert ``negation`` at a uniformly chosen position among those that exist for len(kept)."""
    k = len(kept)
    available = POSITIONS if k >= 2 else (("beginning", "end") if k == 1 else ("end",))
    position = available[int(rng.integers(len(available)))]
    at = {"beginning": 0, "end": k}.get(position)
    if at is None:
        at = int(rng.integers(1, k))  # strictly between the first and the last kept sentence
    return [*kept[:at], negation, *kept[at:]], position


def _verified(labels_row: Sequence[float], entity: str) -> bool:
    """The chosen entity is negative or absent (not positive, not uncertain)."""
    value = labels_row[_OBS_INDEX[entity]]
    return not (value == LABEL_POSITIVE or value == LABEL_UNCERTAIN)


def join_sentences(sentences: Sequence[str]) -> str:
    return " ".join(sentences)


@dataclass
class _Attempt:
    """The state of one abnormal report while its hard negative is being made and checked."""

    index: int
    sentences: tuple[str, ...]
    mentions: Sequence[Sequence] | None
    rng: np.random.Generator
    queue: list[str]  # entities still to try, the first drawn uniformly
    entity: str | None = None
    template: str | None = None
    kept: list[str] | None = None  # r^r sentences
    negated: list[str] | None = None  # r^n sentences
    position: str | None = None
    used_remover: bool = False


def make_hard_negatives(sentence_lists: Sequence[Sequence[str]], labels: np.ndarray, *, seed: int = 0,
                        indices: Sequence[int] | None = None, pool: HardNegativePool | None = None,
                        labeler=None, mentions: Sequence[Sequence[Sequence]] | None = None,
                        templates: Mapping[str, Sequence[str]] | None = None,
                        remover: SentenceRemover | None = None) -> tuple[list[HardNegative], Counter]:
    """Hard negatives for a batch of reports.

    ``sentence_lists[i]``: report i's single-entity sentences; ``labels``: N x 14 (its labels);
    ``indices[i]``: the report's global index (seeds its generator; default 0..N-1); ``pool``: the
    single-finding pool for normal reports; ``labeler``: re-labels r^n (default: rules);
    ``mentions[i][j]``: rules mentions of sentence j of report i, if already found; ``remover``: an
    alternative sentence remover (the LLM backend), checked like the rules one and replaced by it when its
    answer is rejected. Returns the hard negatives (input order) and a Counter of events and failures.
    """
    if labeler is None:
        from clinclip.text.labeler import get_labeler

        labeler = get_labeler("rules")
    templates = templates or load_templates()
    labels = np.asarray(labels, dtype=np.float64)
    n = len(sentence_lists)
    if labels.shape != (n, len(OBSERVATIONS)):
        raise ClinclipError(f"hard negatives: labels have shape {labels.shape}, expected ({n}, 14)")
    indices = list(range(n)) if indices is None else list(indices)
    if len(indices) != n:
        raise ClinclipError(f"hard negatives: {len(indices)} indices for {n} reports")
    counts: Counter = Counter()
    results: list[HardNegative | None] = [None] * n
    pending: list[_Attempt] = []
    for i in range(n):
        rng = report_rng(seed, indices[i])
        if is_normal(labels[i]):
            results[i] = _from_pool(rng, pool, counts)
            continue
        candidates = positive_findings(labels[i])
        order = [candidates[j] for j in rng.permutation(len(candidates))]
        pending.append(_Attempt(i, tuple(sentence_lists[i]), None if mentions is None else mentions[i], rng,
                                order))

    # Rounds: every pending report tries its next entity; all r^n of a round are labelled in one batch.
    while pending:
        answers = _ask_remover(remover, pending)
        built = []
        for a, answer in zip(pending, answers):
            if _build(a, answer, templates, counts):
                built.append(a)
            else:
                results[a.index] = _failure("no positive entity is mentioned in the text", counts)
        failed = _keep_verified(built, labeler, results, counts)
        # An alternative remover's answer that the labeler rejects is replaced by the rules removal.
        rejected = [a for a in failed if a.used_remover]
        unusable = []  # rules removal finds nothing to remove for the entity the remover handled
        if rejected:
            counts["remover answer rejected by the labeler: rules used"] += len(rejected)
            failed = [a for a in failed if not a.used_remover]
            rebuilt = [a for a in rejected if _build(a, None, templates, counts, new_entity=False)]
            unusable = [a for a in rejected if a.negated is None]
            failed += _keep_verified(rebuilt, labeler, results, counts)
        failed = _fix_by_sentence_labels(failed, labeler, counts, results) + unusable
        pending = []
        for a in failed:
            counts[f"entity still positive after removal: {a.entity}"] += 1
            if a.queue:
                counts["retried with another entity"] += 1
                pending.append(a)
            else:
                results[a.index] = _failure(f"every positive entity stays positive after removal "
                                            f"(last: {a.entity})", counts)
    return results, counts  # type: ignore[return-value]


def make_hard_negative(sentences: Sequence[str], labels: Sequence[float], rng_or_seed=0, *,
                       index: int = 0, pool: HardNegativePool | None = None, labeler=None,
                       templates: Mapping[str, Sequence[str]] | None = None,
                       mentions: Sequence[Sequence] | None = None) -> HardNegative:
    """One report's hard negative (see ``make_hard_negatives``). ``rng_or_seed``: a seed (int, used with
    ``index`` as in the batch form), or a ``numpy.random.Generator`` whose next integer seeds this report."""
    if isinstance(rng_or_seed, np.random.Generator):
        seed = int(rng_or_seed.integers(2**63))
    else:
        seed = int(rng_or_seed)
    out, _ = make_hard_negatives([list(sentences)], np.asarray([labels], dtype=np.float64), seed=seed,
                                 indices=[index], pool=pool, labeler=labeler, templates=templates,
                                 mentions=None if mentions is None else [mentions])
    return out[0]


def _from_pool(rng: np.random.Generator, pool: HardNegativePool | None, counts: Counter) -> HardNegative:
    if pool is None or not len(pool):
        return _failure("normal report but the single-finding pool is empty", counts)
    j = int(rng.integers(len(pool)))
    counts["normal report: r^n drawn from the pool"] += 1
    sentences = pool.sentences[j]
    return HardNegative(join_sentences(sentences), None, pool.entities[j], POOL, pool.labels[j],
                        sentences_negated=sentences)


def _ask_remover(remover: SentenceRemover | None, pending: list[_Attempt]) -> list:
    """Each attempt takes its next entity; an alternative remover is asked for the kept sentences."""
    for a in pending:
        a.entity = a.queue.pop(0)
        a.template = None
    if remover is None:
        return [None] * len(pending)
    answers = list(remover([(a.sentences, a.entity) for a in pending]))
    if len(answers) != len(pending):
        raise ClinclipError(f"sentence remover returned {len(answers)} answers for {len(pending)} reports")
    return answers


def _build(a: _Attempt, answer, templates, counts: Counter, new_entity: bool = True) -> bool:
    """Remove the entity's sentences (the alternative remover's answer when usable, else rules) and
    insert a negation. An entity the text never mentions is skipped for the next one (when
    ``new_entity``). False when no entity is left."""
    while True:
        kept, a.used_remover = None, False
        if answer is not None:
            kept = [s.strip() for s in answer if s.strip()]
            if len(kept) >= len(a.sentences):
                counts["remover answer removed nothing: rules used"] += 1
                kept = None
            else:
                a.used_remover = True
        if kept is None:
            kept = remove_entity_sentences(a.sentences, a.entity, a.mentions)
        if len(kept) < len(a.sentences):
            break
        counts[f"entity not mentioned in the text: {a.entity}"] += 1
        if not new_entity or not a.queue:
            a.negated = None
            return False
        a.entity, a.template, answer = a.queue.pop(0), None, None
    if a.template is None:
        choices = templates[a.entity]
        a.template = choices[int(a.rng.integers(len(choices)))]
    a.kept = kept
    a.negated, a.position = _insert(kept, a.template, a.rng)
    return True


def _keep_verified(attempts: list[_Attempt], labeler, results: list, counts: Counter) -> list[_Attempt]:
    """Label the attempts' r^n in one batch; store the verified ones, return the others."""
    if not attempts:
        return []
    rows = labeler.label([join_sentences(a.negated) for a in attempts])
    failed = []
    for a, row in zip(attempts, rows):
        if _verified(row, a.entity):
            results[a.index] = _success(a, row, counts)
        else:
            failed.append(a)
    return failed


def _fix_by_sentence_labels(failed: list[_Attempt], labeler, counts: Counter, results: list) -> list[_Attempt]:
    """Label every kept sentence of the failed reports alone and drop those asserting the entity; return
    the reports that still fail."""
    if not failed:
        return []
    flat = [(k, s) for k, a in enumerate(failed) for s in a.kept]
    rows = labeler.label([s for _, s in flat]) if flat else np.zeros((0, len(OBSERVATIONS)))
    own: list[list] = [[] for _ in failed]
    for (k, _), row in zip(flat, rows):
        own[k].append(row)
    changed, unchanged = [], []
    for a, sentence_rows in zip(failed, own):
        keep = [s for s, row in zip(a.kept, sentence_rows) if _verified(row, a.entity)]
        if len(keep) < len(a.kept):
            a.kept = keep
            a.negated, a.position = _insert(keep, a.template, a.rng)
            changed.append(a)
        else:
            unchanged.append(a)
    still = _keep_verified(changed, labeler, results, counts)
    if len(changed) > len(still):
        counts["fixed by per-sentence labels"] += len(changed) - len(still)
    return unchanged + still


def _success(a: _Attempt, row: np.ndarray, counts: Counter) -> HardNegative:
    counts["abnormal report: entity negated"] += 1
    return HardNegative(join_sentences(a.negated), join_sentences(a.kept), a.entity, a.position,
                        tuple(float(v) for v in row), sentences_negated=tuple(a.negated),
                        sentences_removed=tuple(a.kept))


def _failure(reason: str, counts: Counter) -> HardNegative:
    counts[f"failed: {reason.split(' (')[0]}"] += 1
    return HardNegative(None, None, None, None, None, failure=reason)
