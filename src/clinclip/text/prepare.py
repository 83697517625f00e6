"""``clinclip text prepare``: the whole report pipeline over a corpus, into one prepared manifest.

Stages (docs/text-pipeline.md): sections -> single-entity sentences -> temporal statements removed -> 14 labels ->
hard negative r^n and removed-entity report r^r -> graphs of r and r^n. Text stages and the rules labeler
run in worker processes over chunks of rows (results in input order); the CheXbert labeler and the LLM
backend run in the main process (a GPU, an HTTP thread pool). Distinct report texts go through the text
stages once (MIMIC repeats its templated normal reports); hard negatives are made per row, each from its
own generator seeded by (seed, row position), so the output does not depend on ``workers`` or chunking.

Bad rows are kept with ``skip_reason`` (missing / empty / over-long report, no findings or impression
text, only temporal statements, unparseable given labels, no verifiable hard negative) and counted in the
summary; a structural problem (missing column) raises ``ClinclipError``.
"""

from __future__ import annotations

import math
import multiprocessing
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from clinclip.errors import ClinclipError
from clinclip.manifest import PREPARED_COLUMNS, write_manifest
from clinclip.observations import OBSERVATIONS

LABELERS = ("rules", "chexbert", "csv")
GRAPH_BACKENDS = ("rules", "radgraph")
GIVEN_PREFIX = "given_"
DEFAULT_MAX_REPORT_CHARS = 20_000
# Typographic characters that NFKD does not reduce to ASCII.
_ASCII_MAP = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-",
                            "\u2014": "-", "\u2212": "-", "\u2026": "...", "\u2022": "-", "\u00b7": ".",
                            "\u00d7": "x", "\u00b0": " degrees", "\u00a0": " "})


@dataclass
class PrepareOptions:
    """Everything ``prepare_corpus`` needs besides the frame."""

    text_column: str = "report"
    labeler: str = "rules"
    labeler_options: dict = field(default_factory=dict)  # chexbert: checkpoint_path, tokenizer_dir, device...
    graph_backend: str = "rules"
    graph_options: dict = field(default_factory=dict)  # radgraph: model_type, model_cache_dir
    llm: Any = None  # a clinclip.text.llm.LLMConfig, or None for the rules backend
    seed: int = 0
    workers: int = 1
    chunk_size: int = 256
    max_report_chars: int = DEFAULT_MAX_REPORT_CHARS
    templates_path: str | None = None
    progress: bool = True
    dedupe: bool = True  # run the text stages once per distinct report text


def to_ascii(text: str) -> str:
    """Typographic punctuation mapped, accents stripped, anything else non-ASCII dropped."""
    text = text.translate(_ASCII_MAP)
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def check_report(value, max_chars: int) -> tuple[str | None, str | None, bool]:
    """(cleaned report, skip reason, was non-ASCII) for one raw value of the text column."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None, "missing report", False
    text = value if isinstance(value, str) else str(value)
    if len(text) > max_chars:
        return None, f"report too long (over {max_chars} characters)", False
    non_ascii = not text.isascii()
    if non_ascii:
        text = to_ascii(text)
    if not text.strip():
        return None, "empty report", non_ascii
    return text, None, non_ascii


# ------------------------------------------------------------------------------------------ worker state

_STATE: dict = {}


def _init_worker(state: dict) -> None:
    _STATE.clear()
    _STATE.update(state)


_LABELERS: dict = {}


def _labeler(backend: str):
    """The labeler of this process, built once per process and options (a CheXbert model loads once)."""
    from clinclip.text.labeler import get_labeler

    options = _STATE.get("labeler_options", {}) if backend == _STATE.get("labeler") else {}
    key = (backend, repr(sorted(options.items())))
    if key not in _LABELERS:
        _LABELERS[key] = get_labeler(backend, **options)
    return _LABELERS[key]


def _text_stage(reports: list[str]) -> list[tuple[str, str, list[str]]]:
    """Sections and single-entity sentences (temporal statements removed) of distinct report texts."""
    from clinclip.text.sections import extract_sections
    from clinclip.text.sentences import split_text

    out = []
    for report in reports:
        sections = extract_sections(report)
        findings, impression = sections.get("findings") or "", sections.get("impression") or ""
        out.append((findings, impression, list(split_text(_body(findings, impression)))))
    return out


def _body(findings: str, impression: str) -> str:
    """Findings followed by impression (as ``sections.report_body``), from already extracted sections."""
    return "\n".join(s for s in (findings, impression) if s)


def _text_and_label_stage(reports: list[str]) -> tuple[list, np.ndarray | None]:
    rows = _text_stage(reports)
    labels = None
    if _STATE.get("label_in_workers"):
        labels = _labeler(_STATE["labeler"]).label([" ".join(s) for _, _, s in rows])
    return rows, labels


def _hardneg_and_graph_stage(chunk: tuple[list[int], list[list[str]], np.ndarray]) -> tuple[list, list, list, Counter]:
    """Hard negatives and graphs for rows (global positions, sentences, labels)."""
    from clinclip.text.graph import dumps, graph_from_sentences, sentence_mentions
    from clinclip.text.hardneg import load_templates, make_hard_negatives

    positions, sentence_lists, labels = chunk
    mentions = [[sentence_mentions(s) for s in sentences] for sentences in sentence_lists]
    negatives, counts = make_hard_negatives(
        sentence_lists, labels, seed=_STATE["seed"], indices=positions, pool=_STATE["pool"],
        labeler=_labeler(_STATE["relabeler"]), mentions=mentions, templates=load_templates(_STATE["templates_path"]),
        remover=_STATE.get("remover"))
    graphs, graphs_negated = [], []
    rules_graphs = _STATE["graph_backend"] == "rules"
    for sentences, hn in zip(sentence_lists, negatives):
        if rules_graphs:
            graphs.append(dumps(graph_from_sentences(sentences)))
            graphs_negated.append(None if hn.text_negated is None else dumps(graph_from_sentences(hn.sentences_negated)))
    return negatives, graphs, graphs_negated, counts


def _map_chunks(fn: Callable, chunks: list, workers: int, state: dict, desc: str, progress: bool) -> list:
    """``fn`` over chunks, in order, in ``workers`` processes (in this process when workers <= 1)."""
    from tqdm import tqdm

    bar = dict(total=len(chunks), desc=desc, unit="chunk", disable=not progress or len(chunks) < 2)
    if workers <= 1 or len(chunks) < 2:
        _init_worker(state)
        return [fn(c) for c in tqdm(chunks, **bar)]
    with multiprocessing.get_context().Pool(min(workers, len(chunks)), initializer=_init_worker,
                                            initargs=(state,)) as pool:
        return list(tqdm(pool.imap(fn, chunks), **bar))


def _chunks(items: Sequence, size: int) -> list:
    return [items[i:i + size] for i in range(0, len(items), size)]


# ------------------------------------------------------------------------------------------ main entry


def prepare_corpus(frame: pd.DataFrame | str | Path, text_column: str = "report", labeler: str = "rules",
                   seed: int = 0, workers: int = 1, out: str | Path | None = None, **options) -> pd.DataFrame:
    """The prepared manifest of ``frame`` (all its columns kept, the pipeline's columns added; see
    docs/ARCHITECTURE.md "Prepared manifest"). ``frame`` may also be a path (CSV, Parquet, folder of .txt,
    read by ``clinclip.text.io.read_reports``); with ``out`` the manifest is also written there (Parquet).
    Options: see ``PrepareOptions``."""
    if isinstance(frame, (str, Path)):
        from clinclip.text.io import read_reports

        frame = read_reports(frame, text_column)
        text_column = "report"  # read_reports puts the text there
    result = prepare_corpus_with_summary(frame, PrepareOptions(text_column=text_column, labeler=labeler, seed=seed,
                                                               workers=workers, **options))[0]
    if out is not None:
        write_manifest(result, out)
    return result


def prepare_corpus_with_summary(frame: pd.DataFrame, opts: PrepareOptions) -> tuple[pd.DataFrame, Counter]:
    """``prepare_corpus`` that also returns the summary: rows kept, skipped by reason, events."""
    if opts.labeler not in LABELERS:
        raise ClinclipError(f"unknown labeler '{opts.labeler}': expected one of {LABELERS}")
    if opts.graph_backend not in GRAPH_BACKENDS:
        raise ClinclipError(f"unknown graph backend '{opts.graph_backend}': expected one of {GRAPH_BACKENDS}")
    if opts.text_column not in frame.columns:
        raise ClinclipError(f"text column '{opts.text_column}' not found; columns are {list(frame.columns)} "
                            "(choose one with --text-column)")
    if opts.labeler == "csv":
        missing = [c for c in OBSERVATIONS if c not in frame.columns]
        if missing:
            raise ClinclipError(f"--labeler csv needs the 14 observation columns in the input; missing {missing}")
    n = len(frame)
    summary: Counter = Counter()
    skip: list[str | None] = [None] * n

    # 1. Raw report checks.
    cleaned: list[str | None] = [None] * n
    for i, value in enumerate(frame[opts.text_column].tolist()):
        cleaned[i], skip[i], non_ascii = check_report(value, opts.max_report_chars)
        if non_ascii:
            summary["event: non-ASCII characters normalised"] += 1
    if "read_error" in frame.columns:  # clinclip.text.io.read_reports: a file that could not be read
        for i, err in enumerate(frame["read_error"].tolist()):
            if isinstance(err, str) and err:
                skip[i] = f"unreadable report: {err}"

    given_labels = None
    if opts.labeler == "csv":
        given_labels, label_errors = _parse_given_labels(frame)
        for i, reason in label_errors.items():
            skip[i] = skip[i] or reason

    # 2. Text stages (and rules labels) over distinct texts, in parallel.
    rows_to_process = [i for i in range(n) if skip[i] is None]
    if opts.dedupe:
        distinct = list(dict.fromkeys(cleaned[i] for i in rows_to_process))
        by_text = {t: k for k, t in enumerate(distinct)}
        text_key = [by_text.get(t) for t in cleaned]
    else:
        distinct = [cleaned[i] for i in rows_to_process]
        text_key = [None] * n
        for k, i in enumerate(rows_to_process):
            text_key[i] = k
    label_in_workers = opts.labeler == "rules" and opts.llm is None
    state = {"labeler": opts.labeler, "labeler_options": opts.labeler_options, "label_in_workers": label_in_workers,
             "seed": opts.seed, "templates_path": opts.templates_path, "graph_backend": opts.graph_backend,
             "relabeler": "rules" if opts.labeler == "csv" else opts.labeler}
    llm_backend = None
    if opts.llm is not None:
        from clinclip.text.llm import LLMTextBackend

        llm_backend = LLMTextBackend.from_config(opts.llm, progress=opts.progress)
        text_rows = _llm_text_stage(distinct, llm_backend)
        distinct_labels = None
    else:
        parts = _map_chunks(_text_and_label_stage, _chunks(distinct, opts.chunk_size), opts.workers, state,
                            "sections + sentences" + (" + labels" if label_in_workers else ""), opts.progress)
        text_rows = [row for rows, _ in parts for row in rows]
        distinct_labels = np.concatenate([lab for _, lab in parts]) if label_in_workers and parts else None
    if distinct_labels is None and opts.labeler != "csv" and distinct:
        _init_worker(state)
        distinct_labels = _labeler(opts.labeler).label([" ".join(s) for _, _, s in text_rows])

    findings, impression = [None] * n, [None] * n
    sentences: list[list[str]] = [[] for _ in range(n)]
    labels = np.full((n, len(OBSERVATIONS)), np.nan)
    for i in range(n):
        if skip[i] is not None:
            continue
        k = text_key[i]
        findings[i], impression[i], sentences[i] = text_rows[k][0], text_rows[k][1], text_rows[k][2]
        if not sentences[i]:
            has_text = bool((findings[i] or "").strip() or (impression[i] or "").strip())
            skip[i] = "only temporal or procedural statements" if has_text else "no findings or impression text"
            continue
        labels[i] = given_labels[i] if given_labels is not None else distinct_labels[k]

    # 3. Hard negatives and graphs, per row; normal reports draw from the single-finding pool, which holds
    # train-split reports only, so a validate or test report never reaches training (here as an r^n).
    in_training = training_rows(frame)
    from clinclip.text.hardneg import HardNegativePool

    kept_rows = [i for i in range(n) if skip[i] is None]
    pool_rows = [i for i in kept_rows if in_training[i]]
    pool = HardNegativePool.from_reports([sentences[i] for i in pool_rows], labels[pool_rows])
    summary["event: single-finding pool size"] = len(pool)
    state["pool"] = pool
    hn_chunks = [(rows, [sentences[i] for i in rows], labels[rows]) for rows in _chunks(kept_rows, opts.chunk_size)]
    in_main = opts.labeler == "chexbert" or llm_backend is not None
    if llm_backend is not None:
        state["remover"] = llm_backend.remove_finding
    parts = _map_chunks(_hardneg_and_graph_stage, hn_chunks, 1 if in_main else opts.workers, state,
                        "hard negatives + graphs", opts.progress)
    negatives = [None] * n
    graphs, graphs_negated = [None] * n, [None] * n
    for (rows, _, _), (hns, gs, gns, counts) in zip(hn_chunks, parts):
        summary.update({f"hard negatives: {k}": v for k, v in counts.items()})
        for j, i in enumerate(rows):
            negatives[i] = hns[j]
            if gs:
                graphs[i], graphs_negated[i] = gs[j], gns[j]
    if opts.graph_backend != "rules":
        graphs, graphs_negated = _external_graphs(opts, kept_rows, sentences, negatives, graphs, graphs_negated)
    for i in kept_rows:
        if negatives[i].failure is not None:
            skip[i] = f"no verifiable hard negative: {negatives[i].failure}"
    if llm_backend is not None:
        summary.update({f"llm: {k}": v for k, v in llm_backend.summary().items()})
        llm_backend.client.close()

    # 4. Assemble: input columns (renamed where they collide) + the pipeline's columns.
    out = _rename_collisions(frame, opts.labeler)
    out["findings"] = findings
    out["impression"] = impression
    out["sentences"] = sentences
    out["text"] = [" ".join(s) for s in sentences]
    for j, name in enumerate(OBSERVATIONS):
        out[name] = labels[:, j]
    out["text_negated"] = [hn.text_negated if hn else None for hn in negatives]
    out["text_removed"] = [hn.text_removed if hn else None for hn in negatives]
    out["negated_entity"] = [hn.entity if hn else None for hn in negatives]
    out["negation_position"] = [hn.position if hn else None for hn in negatives]
    out["negated_labels"] = [list(hn.negated_labels) if hn and hn.negated_labels is not None else None
                             for hn in negatives]
    out["graph"] = graphs
    out["graph_negated"] = graphs_negated
    out["skip_reason"] = skip
    summary["rows"] = n
    summary["rows kept"] = sum(s is None for s in skip)
    for reason in skip:
        if reason is not None:
            summary[f"skipped: {reason.split(':')[0]}"] += 1
    return out, summary


def training_rows(frame: pd.DataFrame) -> np.ndarray:
    """Rows that may feed training text: those whose ``split`` is train ("training" too); every row when
    the frame has no ``split`` column (it is then one training corpus)."""
    if "split" not in frame.columns:
        return np.ones(len(frame), dtype=bool)
    return frame["split"].astype(str).str.strip().str.lower().isin(("train", "training")).to_numpy()


def _llm_text_stage(reports: list[str], backend) -> list[tuple[str, str, list[str]]]:
    """Stages 1-3 with the LLM: sections by rules, then passes (a) and (b); rules where an answer fails."""
    from clinclip.text.sections import extract_sections
    from clinclip.text.sentences import split_text

    sections = [extract_sections(r) for r in reports]
    texts = [_body(s.get("findings") or "", s.get("impression") or "") for s in sections]
    split = backend.split_sentences(texts)
    need_temporal = [k for k, s in enumerate(split) if s is not None]
    cleaned = backend.remove_temporal([split[k] for k in need_temporal])
    result: list[list[str]] = [[] for _ in reports]
    for k, sentences in zip(need_temporal, cleaned):
        result[k] = sentences
    for k, s in enumerate(split):
        if s is None:  # pass (a) failed: the rules chain for this report
            result[k] = list(split_text(texts[k]))
    return [(s.get("findings") or "", s.get("impression") or "", r) for s, r in zip(sections, result)]


def _external_graphs(opts, kept_rows, sentences, negatives, graphs, graphs_negated):
    from clinclip.text.graph import build_graphs, dumps

    texts = [" ".join(sentences[i]) for i in kept_rows]
    neg_rows = [i for i in kept_rows if negatives[i].text_negated is not None]
    both = build_graphs(texts + [negatives[i].text_negated for i in neg_rows], backend=opts.graph_backend,
                        **opts.graph_options)
    for i, g in zip(kept_rows, both[:len(kept_rows)]):
        graphs[i] = dumps(g)
    for i, g in zip(neg_rows, both[len(kept_rows):]):
        graphs_negated[i] = dumps(g)
    return graphs, graphs_negated


def _parse_given_labels(frame: pd.DataFrame) -> tuple[np.ndarray, dict[int, str]]:
    """The 14 given label columns as floats; rows with a value outside {1, 0, -1, blank} are reported."""
    values = np.full((len(frame), len(OBSERVATIONS)), np.nan)
    errors: dict[int, str] = {}
    for j, name in enumerate(OBSERVATIONS):
        raw = frame[name]
        num = pd.to_numeric(raw, errors="coerce")
        bad = (raw.notna() & raw.astype(str).str.strip().ne("") & num.isna()) | (num.notna() & ~num.isin([1, 0, -1]))
        for i in np.flatnonzero(bad.to_numpy()):
            errors.setdefault(int(i), f"unparseable label: {name}={raw.iloc[i]!r}")
        values[:, j] = num.where(~bad).to_numpy(dtype=np.float64)
    return values, errors


def _rename_collisions(frame: pd.DataFrame, labeler: str) -> pd.DataFrame:
    """A copy of the input whose columns that the pipeline writes are renamed ``given_<name>`` (with
    ``--labeler csv`` the 14 observation columns are the labels and are overwritten in place)."""
    keep_in_place = set(OBSERVATIONS) if labeler == "csv" else set()
    rename = {c: GIVEN_PREFIX + c for c in frame.columns if c in PREPARED_COLUMNS and c not in keep_in_place}
    for old, new in rename.items():
        if new in frame.columns:
            raise ClinclipError(f"input has both '{old}' and '{new}' columns; rename one of them")
    out = frame.rename(columns=rename).reset_index(drop=True)
    return out.copy()


def format_summary(summary: Counter) -> list[tuple[str, int]]:
    """Summary lines in a stable order: rows, kept, skipped by reason, then events."""
    head = [("rows", summary.get("rows", 0)), ("rows kept", summary.get("rows kept", 0))]
    rest = sorted((k, v) for k, v in summary.items() if k not in ("rows", "rows kept") and v)
    rest.sort(key=lambda kv: (not kv[0].startswith("skipped"), kv[0]))
    return head + rest
