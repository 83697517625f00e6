"""Losses (docs/losses.md): InfoNCE, the paper's dynamic soft-label KL (t, c, g streams, Eq. 1-10),
SoftCLIP and CoN-CLIP-style CON2, all as choices of targets and candidates of one machinery.

Public API: ``total_loss`` (functional form), ``loss_terms`` (same, with per-pair/stream components),
``LossConfig``, ``ClinClipLoss`` (nn.Module, gathers across ranks), ``load_variant``, ``list_variants``,
``clinical_vectors``. Torch is imported lazily so ``LossConfig``/``load_variant`` stay cheap.
"""

from __future__ import annotations

from clinclip.lazy import lazy_getattr
from clinclip.losses.config import LossConfig, SoftClipOptions, list_variants, load_variant

_LAZY = {
    "total_loss": "clinclip.losses.functional",
    "loss_terms": "clinclip.losses.functional",
    "ClinClipLoss": "clinclip.losses.module",
    "clinical_vectors": "clinclip.losses.soft_labels",
}

__all__ = [
    "ClinClipLoss",
    "LossConfig",
    "SoftClipOptions",
    "clinical_vectors",
    "list_variants",
    "load_variant",
    "loss_terms",
    "total_loss",
]


__getattr__ = lazy_getattr(__name__, _LAZY)
