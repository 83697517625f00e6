"""The 'models' part (SPEC section 3): configs, the clinclip model, Hugging Face CLIP/SigLIP towers, and the
encoder interface evaluation uses for every model.

Heavy imports (torch, transformers) happen on first use of the names below, so importing
``clinclip.models.config`` stays cheap."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clinclip.models.config import (GraphEncoderConfig, HfClipConfig, ImageEncoderConfig, ModelConfig,
                                    TextEncoderConfig)

if TYPE_CHECKING:
    from clinclip.models.encoders import load_encoder
    from clinclip.models.hf_clip import HfClipModel
    from clinclip.models.interface import VisionLanguageEncoder
    from clinclip.models.model import ClinClipModel, init_from

_LAZY = {
    "ClinClipModel": "clinclip.models.model",
    "init_from": "clinclip.models.model",
    "HfClipModel": "clinclip.models.hf_clip",
    "load_encoder": "clinclip.models.encoders",
    "VisionLanguageEncoder": "clinclip.models.interface",
}

__all__ = ["ModelConfig", "ImageEncoderConfig", "TextEncoderConfig", "GraphEncoderConfig", "HfClipConfig",
           *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'clinclip.models' has no attribute {name!r}")
