"""The 'evaluate' part: zero-shot and fine-tuned classification, adversarial prediction, normal detection,
report retrieval, CXR-Align, negation retrieval, text-encoder analyses, result files (JSON, Markdown, CSV,
LaTeX) with bootstrap confidence intervals, and the HTML report. Documented in docs/evaluation.md; every
name below is importable from ``clinclip.evaluate`` (loaded on first use)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinclip._lazy import lazy_exports

if TYPE_CHECKING:
    from clinclip.evaluate import metrics
    from clinclip.evaluate.adversarial import adversarial
    from clinclip.evaluate.analyses import run_analyses
    from clinclip.evaluate.classification import zero_shot
    from clinclip.evaluate.cxr_align import build_benchmark, read_benchmark, score_benchmark, write_benchmark
    from clinclip.manifest import read_manifest, select_split
    from clinclip.evaluate.embeddings import EmbeddingStore, open_store
    from clinclip.evaluate.finetune import finetune
    from clinclip.evaluate.negation_retrieval import negation_retrieval
    from clinclip.evaluate.prompts import PromptSet, load_prompts
    from clinclip.evaluate.report import figure_html, render_report
    from clinclip.evaluate.results import read_results, write_result
    from clinclip.evaluate.retrieval import normal_detection, report_retrieval

_EXPORTS = {
    "open_store": "clinclip.evaluate.embeddings", "EmbeddingStore": "clinclip.evaluate.embeddings",
    "read_manifest": "clinclip.manifest", "select_split": "clinclip.manifest",
    "load_prompts": "clinclip.evaluate.prompts", "PromptSet": "clinclip.evaluate.prompts",
    "zero_shot": "clinclip.evaluate.classification",
    "finetune": "clinclip.evaluate.finetune",
    "adversarial": "clinclip.evaluate.adversarial",
    "report_retrieval": "clinclip.evaluate.retrieval", "normal_detection": "clinclip.evaluate.retrieval",
    "build_benchmark": "clinclip.evaluate.cxr_align", "read_benchmark": "clinclip.evaluate.cxr_align",
    "write_benchmark": "clinclip.evaluate.cxr_align", "score_benchmark": "clinclip.evaluate.cxr_align",
    "negation_retrieval": "clinclip.evaluate.negation_retrieval",
    "run_analyses": "clinclip.evaluate.analyses",
    "write_result": "clinclip.evaluate.results", "read_results": "clinclip.evaluate.results",
    "render_report": "clinclip.evaluate.report", "figure_html": "clinclip.evaluate.report",
}
__all__ = sorted([*_EXPORTS, "metrics"])
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, submodules=("metrics",))
