"""`LossConfig` and the variant presets (`clinclip/presets/variants/<name>.yaml`).

A variant is data, not code: which modality pairs take part (candidates/anchors), which target streams
are mixed with which weights and thresholds, whether hard negatives and graphs are used. Torch-free, so
the training config can import it cheaply.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinclip.config import list_presets, load_preset
from clinclip.errors import ClinclipError

STREAMS = ("i", "t", "c", "g", "s")
PAPER_PAIRS = ("I-T", "T-I", "I-G", "G-I", "T-G", "G-T")
PAIRS = PAPER_PAIRS + ("N-I",)
GRAPH_PAIRS = frozenset({"I-G", "G-I", "T-G", "G-T"})
TEXT_SOURCES = ("report", "negation_prompts")
# What a batch may have to carry (derived from the variant by ``LossConfig.needed_inputs``), in this order.
REQUIREMENTS = ("hard_negatives", "graphs", "labels", "neg_labels")
# The paper publishes no thresholds or weights; these starting points are ours (docs/losses.md).
DEFAULT_TAUS = {"t": 0.8, "c": 0.5, "g": 0.8}


def _weight_ok(w) -> bool:
    """A weight is a finite number >= 0 (NaN compares False with everything and would pass ``w < 0``)."""
    return isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0


@dataclass
class SoftClipOptions:
    """SoftCLIP baseline (Gao et al., AAAI 2024) as a target stream ``s``: the target of an anchor is
    the row-softmax of its own modality's self-similarity (global embeddings here, ROI/tag features in
    the original), compared with the cross-modal prediction by KL."""

    negatives_only: bool = True  # SoftCLIP's "neg-KL": drop the positive from target and prediction
    scale: float | None = None  # softmax scale of the self-similarity; None = the model's logit scale


@dataclass
class LossConfig:
    name: str = "clip"
    description: str = ""
    weights: dict[str, float] = field(default_factory=lambda: {"i": 1.0})
    taus: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TAUS))
    pairs: dict[str, float] | None = None  # None: the paper's six (four graph pairs only with graph)
    pair_stream_weights: dict[str, dict[str, float]] = field(default_factory=dict)
    hard_negatives: bool = False
    graph: bool = False
    uncertain_as: int = 0  # clinical vector value of an uncertain (-1) label: 0 or 1
    text_source: str = "report"  # what training feeds as the caption: "report" or "negation_prompts"
    softclip: SoftClipOptions = field(default_factory=SoftClipOptions)
    exact_kl: bool = True  # False: report cross-entropy (same gradient, skips the targets' entropy)
    ours: list[str] = field(default_factory=list)  # values we chose (the papers give none)
    reference: str = ""

    def active_pairs(self) -> dict[str, float]:
        if self.pairs is not None:
            return {p: w for p, w in self.pairs.items() if w != 0}
        return {p: 1.0 for p in PAPER_PAIRS if self.graph or p not in GRAPH_PAIRS}

    def streams_used(self) -> set[str]:
        used = set()
        for pair in self.active_pairs():
            ws = self.pair_stream_weights.get(pair, self.weights)
            used |= {k for k, w in ws.items() if w != 0}
        return used

    def needed_inputs(self) -> list[str]:
        """What the batch must carry for this variant, in REQUIREMENTS order."""
        needs = set()
        if self.hard_negatives:
            needs.add("hard_negatives")
        if self.graph:
            needs.add("graphs")
        if "c" in self.streams_used():
            needs.add("labels")
            if self.hard_negatives:
                needs.add("neg_labels")
        return [r for r in REQUIREMENTS if r in needs]

    def validate(self, where: str = "LossConfig") -> "LossConfig":
        def bad(field_name: str, msg: str) -> ClinclipError:
            return ClinclipError(f"{where}: field '{field_name}': {msg}")

        for k, w in self.weights.items():
            if k not in STREAMS:
                raise bad("weights", f"unknown stream {k!r} (known: {', '.join(STREAMS)})")
            if not _weight_ok(w):
                raise bad("weights", f"weight of {k!r} must be a number >= 0, got {w!r}")
        for k, tau in self.taus.items():
            if k not in ("t", "c", "g"):
                raise bad("taus", f"unknown thresholded stream {k!r} (known: t, c, g)")
            if not isinstance(tau, (int, float)) or not -1.0 <= tau < 1.0:
                raise bad("taus", f"threshold of {k!r} must lie in [-1, 1), got {tau!r}")
        for pair, w in (self.pairs or {}).items():
            if pair not in PAIRS:
                raise bad("pairs", f"unknown pair {pair!r} (known: {', '.join(PAIRS)})")
            if not _weight_ok(w):
                raise bad("pairs", f"weight of {pair} must be a number >= 0, got {w!r}")
        for pair, ws in self.pair_stream_weights.items():
            if pair not in PAIRS:
                raise bad("pair_stream_weights", f"unknown pair {pair!r}")
            for k, w in ws.items():
                if k not in STREAMS or not _weight_ok(w):
                    raise bad("pair_stream_weights", f"{pair}: bad stream weight {k!r}: {w!r}")
        active = self.active_pairs()
        if not active:
            raise bad("pairs", "no pair has a nonzero weight: the loss would be empty")
        if not self.graph and GRAPH_PAIRS & active.keys():
            raise bad("pairs", f"graph pairs {sorted(GRAPH_PAIRS & active.keys())} need graph: true")
        if "N-I" in active and not self.hard_negatives:
            raise bad("pairs", "N-I (negated texts as anchors) needs hard_negatives: true")
        used = self.streams_used()
        if not used:
            raise bad("weights", "every stream weight is zero: the loss would be empty")
        if "g" in used and not self.graph:
            raise bad("weights", "the graph stream g needs graph: true")
        if "s" in used and self.hard_negatives:
            raise bad("weights", "the SoftCLIP stream s is defined without hard negatives")
        for k in used & {"t", "c", "g"}:
            if k not in self.taus:
                raise bad("taus", f"stream {k!r} is used but has no threshold")
        if self.uncertain_as not in (0, 1):
            raise bad("uncertain_as", f"must be 0 or 1, got {self.uncertain_as!r}")
        if self.text_source not in TEXT_SOURCES:
            raise bad("text_source", f"must be one of {', '.join(TEXT_SOURCES)}, got {self.text_source!r}")
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "LossConfig") -> "LossConfig":
        if not isinstance(data, dict):
            raise ClinclipError(f"{where}: expected a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)} | {"requires"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ClinclipError(f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")
        data = dict(data)
        softclip = data.pop("softclip", None) or {}
        if not isinstance(softclip, dict):
            raise ClinclipError(f"{where}: field 'softclip' must be a mapping")
        try:
            options = SoftClipOptions(**softclip)
        except TypeError as exc:
            raise ClinclipError(f"{where}: field 'softclip': {exc}") from None
        taus = {**DEFAULT_TAUS, **(data.pop("taus", None) or {})}
        stated = data.pop("requires", None)  # older files state what the variant needs; it must agree
        cfg = cls(**data, taus=taus, softclip=options).validate(where)
        if stated is not None and sorted(stated) != sorted(cfg.needed_inputs()):
            raise ClinclipError(f"{where}: field 'requires': says {sorted(stated)} but the variant needs "
                                f"{sorted(cfg.needed_inputs())} (leave 'requires' out: it is derived)")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

def list_variants() -> list[str]:
    """Names of the bundled variant presets."""
    return list_presets("variants")


def load_variant(name_or_path: str | Path) -> LossConfig:
    """A bundled variant by name (``clip-ng-dtcg``) or a YAML file path -> validated LossConfig."""
    data, where = load_preset("variants", name_or_path, "loss variant")
    return LossConfig.from_dict(data, where)
