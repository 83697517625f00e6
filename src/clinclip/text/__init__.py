"""The 'text' part: report sections, single-entity sentences, temporal removal, CheXpert-14 labels, hard
negatives, report graphs and the whole ``text prepare`` pipeline. Documented in docs/text-labels.md and
docs/text-pipeline.md; every name below is importable from ``clinclip.text`` (loaded on first use)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinclip._lazy import lazy_exports

if TYPE_CHECKING:
    from clinclip.text.chexbert import CheXbertLabeler
    from clinclip.text.graph import build_graph, build_graphs
    from clinclip.text.hardneg import HardNegativePool, make_hard_negative, make_hard_negatives
    from clinclip.text.io import read_reports
    from clinclip.text.labeler import CsvLabeler, RuleLabeler, get_labeler, positive_agreement
    from clinclip.text.llm import LLMConfig, LLMTextBackend
    from clinclip.text.prepare import prepare_corpus
    from clinclip.text.rules import Mention, find_mentions
    from clinclip.text.sections import extract_sections, report_body
    from clinclip.text.sentences import split_report, split_sentences, split_single_entity, split_text
    from clinclip.text.temporal import remove_temporal, rewrite_sentence

_EXPORTS = {
    "extract_sections": "clinclip.text.sections", "report_body": "clinclip.text.sections",
    "split_sentences": "clinclip.text.sentences", "split_single_entity": "clinclip.text.sentences",
    "split_report": "clinclip.text.sentences", "split_text": "clinclip.text.sentences",
    "remove_temporal": "clinclip.text.temporal", "rewrite_sentence": "clinclip.text.temporal",
    "find_mentions": "clinclip.text.rules", "Mention": "clinclip.text.rules",
    "get_labeler": "clinclip.text.labeler", "RuleLabeler": "clinclip.text.labeler",
    "CsvLabeler": "clinclip.text.labeler", "positive_agreement": "clinclip.text.labeler",
    "CheXbertLabeler": "clinclip.text.chexbert",
    "read_reports": "clinclip.text.io",
    "make_hard_negative": "clinclip.text.hardneg", "make_hard_negatives": "clinclip.text.hardneg",
    "HardNegativePool": "clinclip.text.hardneg",
    "build_graph": "clinclip.text.graph", "build_graphs": "clinclip.text.graph",
    "LLMConfig": "clinclip.text.llm", "LLMTextBackend": "clinclip.text.llm",
    "prepare_corpus": "clinclip.text.prepare",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
