"""Losses (SPEC.md section 4): InfoNCE, the paper's dynamic soft-label KL (t, c, g streams, Eq. 1-10),
SoftCLIP and CoN-CLIP-style CON2, all as choices of targets and candidates of one machinery.

Public API: ``total_loss`` (functional form), ``loss_terms`` (same, with per-pair/stream components),
``LossConfig``, ``ClinClipLoss`` (nn.Module, gathers across ranks), ``load_variant``, ``list_variants``,
``clinical_vectors``. Torch is imported lazily so ``LossConfig``/``load_variant`` stay cheap.
"""

from __future__ import annotations

from clinclip.losses.config import LossConfig, SoftClipOptions, list_variants, load_variant

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


def __getattr__(name: str):
    if name in ("total_loss", "loss_terms"):
        from clinclip.losses import functional

        return getattr(functional, name)
    if name == "ClinClipLoss":
        from clinclip.losses.module import ClinClipLoss

        return ClinClipLoss
    if name == "clinical_vectors":
        from clinclip.losses.soft_labels import clinical_vectors

        return clinical_vectors
    raise AttributeError(f"module 'clinclip.losses' has no attribute {name!r}")
