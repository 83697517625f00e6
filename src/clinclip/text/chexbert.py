"""CheXbert labeler backend: the published CheXbert checkpoint (Smit et al., EMNLP 2020) run with
``transformers``' ``BertModel``.

The published file (``chexbert.pth``) is a ``torch.save`` of ``{"model_state_dict": ..., ...}`` written
from an ``nn.DataParallel`` model, so its keys are ``module.bert.<BertModel keys>`` (a BERT-base encoder)
and ``module.linear_heads.N.{weight,bias}`` for N = 0..13. Heads 0..12 have 4 classes
(0 blank, 1 positive, 2 negative, 3 uncertain) and head 13 (No Finding) has 2 (0 blank, 1 positive).
Each head reads the final hidden state of the [CLS] token; CheXbert's CONDITIONS order equals
``clinclip.observations.OBSERVATIONS``. The original code tokenises with ``bert-base-uncased``; pass that
tokenizer's local folder as ``tokenizer_dir``.

Loading uses ``torch.load(..., weights_only=True)``: no pickled code is ever executed.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from clinclip.errors import ClinclipError
from clinclip.observations import OBSERVATIONS

# CheXbert class index -> clinclip label value (its label.py: 0 blank -> NaN, 2 -> 0, 3 -> -1).
FINDING_CLASS_VALUES = (math.nan, 1.0, 0.0, -1.0)
NO_FINDING_CLASS_VALUES = (math.nan, 1.0)
NUM_HEADS = len(OBSERVATIONS)
MAX_TOKENS = 512  # CheXbert cuts reports at 512 tokens ([CLS] ... [SEP])

_LAYER_KEY = re.compile(r"^encoder\.layer\.(\d+)\.")
# Buffers that older transformers versions stored in the state dict and BertModel no longer has.
_IGNORED_BERT_KEYS = ("embeddings.position_ids",)


def _strip_prefixes(state: dict) -> dict:
    """Drop DataParallel's ``module.`` prefix (present in the published file) when every key has it."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def split_checkpoint(obj, path: str | Path = "<checkpoint>") -> tuple[dict, list[tuple]]:
    """Split a loaded CheXbert checkpoint into (BertModel state dict, [(head weight, head bias)] * 14).

    Raises ClinclipError naming the file and the expected/missing keys when the layout differs."""
    if not isinstance(obj, dict):
        raise ClinclipError(f"{path}: expected a dict (CheXbert checkpoint), got {type(obj).__name__}")
    state = obj.get("model_state_dict", obj)
    if not isinstance(state, dict):
        raise ClinclipError(f"{path}: 'model_state_dict' is a {type(state).__name__}, expected a dict of tensors")
    state = _strip_prefixes(state)
    bert = {k[len("bert."):]: v for k, v in state.items() if k.startswith("bert.")}
    # TF-era names (LayerNorm.gamma/beta) -> current ones.
    bert = {re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k)): v
            for k, v in bert.items()}
    heads, missing = [], []
    for i in range(NUM_HEADS):
        w, b = state.get(f"linear_heads.{i}.weight"), state.get(f"linear_heads.{i}.bias")
        if w is None:
            missing.append(f"module.linear_heads.{i}.weight")
        if b is None:
            missing.append(f"module.linear_heads.{i}.bias")
        heads.append((w, b))
    if "embeddings.word_embeddings.weight" not in bert:
        missing.insert(0, "module.bert.embeddings.word_embeddings.weight")
    if missing:
        sample = ", ".join(sorted(state)[:8]) or "(no keys)"
        raise ClinclipError(
            f"{path}: not a CheXbert checkpoint: expected a BERT encoder under 'module.bert.' and 14 heads "
            f"under 'module.linear_heads.N.' (N=0..13); missing {', '.join(missing[:6])}"
            f"{' ...' if len(missing) > 6 else ''} ({len(missing)} keys). First keys found: {sample}")
    for i, (w, b) in enumerate(heads):
        want = 2 if i == NUM_HEADS - 1 else 4
        if w.ndim != 2 or w.shape[0] != want or b.shape != (want,):
            raise ClinclipError(
                f"{path}: head {i} ({OBSERVATIONS[i]}) has weight {tuple(w.shape)} and bias {tuple(b.shape)}; "
                f"expected {want} classes (13 heads of 4 classes, No Finding of 2)")
    return bert, heads


def infer_bert_config(bert_state: dict, num_attention_heads: int | None = None,
                      config_json: str | Path | None = None):
    """A ``BertConfig`` matching the encoder's tensor shapes. The number of attention heads cannot be read
    from shapes: it comes from ``num_attention_heads``, else from ``config_json`` (e.g. the tokenizer
    folder's config.json), else BERT's convention of 64 dimensions per head."""
    word = bert_state["embeddings.word_embeddings.weight"]
    vocab_size, hidden = int(word.shape[0]), int(word.shape[1])
    layers = {int(m.group(1)) for k in bert_state if (m := _LAYER_KEY.match(k))}
    if not layers:
        raise ClinclipError("CheXbert checkpoint: no encoder layers found under 'module.bert.encoder.layer.N.'")
    intermediate = int(bert_state["encoder.layer.0.intermediate.dense.weight"].shape[0])
    max_positions = int(bert_state["embeddings.position_embeddings.weight"].shape[0])
    type_vocab = int(bert_state["embeddings.token_type_embeddings.weight"].shape[0])
    extra = {}
    if num_attention_heads is None and config_json is not None and Path(config_json).is_file():
        extra = json.loads(Path(config_json).read_text())
        num_attention_heads = extra.get("num_attention_heads")
    if num_attention_heads is None:
        if hidden % 64:
            raise ClinclipError(f"CheXbert checkpoint: hidden size {hidden} is not a multiple of 64; "
                                "give num_attention_heads (or a config.json in the tokenizer folder)")
        num_attention_heads = hidden // 64
    if hidden % int(num_attention_heads):
        raise ClinclipError(f"CheXbert checkpoint: hidden size {hidden} is not divisible by "
                            f"num_attention_heads={num_attention_heads}")
    return BertConfig(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=max(layers) + 1,
        num_attention_heads=int(num_attention_heads), intermediate_size=intermediate,
        max_position_embeddings=max_positions, type_vocab_size=type_vocab,
        hidden_act=extra.get("hidden_act", "gelu"), layer_norm_eps=extra.get("layer_norm_eps", 1e-12),
    )


def clean_report(text: str) -> str:
    """CheXbert's own preprocessing: newlines to spaces, runs of whitespace collapsed, stripped."""
    return re.sub(r"\s+", " ", str(text)).strip()


def class_indices_to_labels(class_indices: np.ndarray) -> np.ndarray:
    """(N, 14) arg-max class indices -> (N, 14) label values in clinclip's convention."""
    out = np.full(class_indices.shape, np.nan, dtype=np.float64)
    for j in range(NUM_HEADS):
        table = np.asarray(NO_FINDING_CLASS_VALUES if j == NUM_HEADS - 1 else FINDING_CLASS_VALUES)
        out[:, j] = table[class_indices[:, j]]
    return out


class CheXbertLabeler:
    """Labels reports with a CheXbert checkpoint. ``label(texts) -> (N, 14)`` float array in
    ``OBSERVATIONS`` order with 1.0 / 0.0 / -1.0 / NaN."""

    name = "chexbert"

    def __init__(self, checkpoint_path: str | Path, tokenizer_dir: str | Path, device: str = "cpu",
                 batch_size: int = 32, num_attention_heads: int | None = None):
        checkpoint_path, tokenizer_dir = Path(checkpoint_path), Path(tokenizer_dir)
        if not checkpoint_path.is_file():
            raise ClinclipError(f"CheXbert checkpoint not found: {checkpoint_path}")
        if not tokenizer_dir.is_dir():
            raise ClinclipError(f"CheXbert tokenizer folder not found: {tokenizer_dir} "
                                "(a local copy of bert-base-uncased's tokenizer files)")
        try:
            obj = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        except Exception as err:  # a pickle that needs code, a truncated file, not a torch file at all
            raise ClinclipError(f"{checkpoint_path}: cannot be read as a weights-only torch file: {err}") from err
        bert_state, heads = split_checkpoint(obj, checkpoint_path)
        config = infer_bert_config(bert_state, num_attention_heads, tokenizer_dir / "config.json")
        has_pooler = "pooler.dense.weight" in bert_state
        model = BertModel(config, add_pooling_layer=has_pooler)
        expected = set(model.state_dict())
        bert_state = {k: v for k, v in bert_state.items() if k not in _IGNORED_BERT_KEYS}
        missing = sorted(expected - set(bert_state))
        unexpected = sorted(set(bert_state) - expected)
        if missing or unexpected:
            raise ClinclipError(
                f"{checkpoint_path}: BERT encoder keys do not match a BertModel of the inferred shape; "
                f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
                f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        model.load_state_dict(bert_state, strict=True)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.heads = [torch.nn.Linear(w.shape[1], w.shape[0]) for w, _ in heads]
        with torch.no_grad():
            for layer, (w, b) in zip(self.heads, heads):
                layer.weight.copy_(w)
                layer.bias.copy_(b)
        self.heads = torch.nn.ModuleList(self.heads).to(self.device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
        self.batch_size = int(batch_size)
        self.max_tokens = min(MAX_TOKENS, config.max_position_embeddings)

    def label(self, texts: Sequence[str]) -> np.ndarray:
        texts = [clean_report(t) if isinstance(t, str) else "" for t in texts]
        classes = np.zeros((len(texts), NUM_HEADS), dtype=np.int64)
        # Batches of similar length waste less padding; results go back to input order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                     max_length=self.max_tokens, return_tensors="pt")
                hidden = self.model(input_ids=enc["input_ids"].to(self.device),
                                    attention_mask=enc["attention_mask"].to(self.device)).last_hidden_state
                cls = hidden[:, 0, :]
                for j, head in enumerate(self.heads):
                    classes[idx, j] = head(cls).argmax(dim=1).cpu().numpy()
        return class_indices_to_labels(classes)
