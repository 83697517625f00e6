"""The 'models' part (docs/models.md): configs, the clinclip model, Hugging Face CLIP/SigLIP towers, and the
encoder interface evaluation uses for every model.

Heavy imports (torch, transformers) happen on first use of the names below, so importing
``clinclip.models.config`` stays cheap."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinclip.lazy import lazy_getattr
from clinclip.models.config import (GraphEncoderConfig, HfClipConfig, ImageEncoderConfig, ModelConfig,
                                    TextEncoderConfig)

if TYPE_CHECKING:
    from clinclip.models.factory import build_model, init_from, load_encoder, load_model
    from clinclip.models.hf_clip import HfClipModel
    from clinclip.models.interface import VisionLanguageEncoder
    from clinclip.models.model import ClinClipModel

_LAZY = {
    "ClinClipModel": "clinclip.models.model",
    "HfClipModel": "clinclip.models.hf_clip",
    "build_model": "clinclip.models.factory",
    "load_model": "clinclip.models.factory",
    "init_from": "clinclip.models.factory",
    "load_encoder": "clinclip.models.factory",
    "VisionLanguageEncoder": "clinclip.models.interface",
}

__all__ = ["ModelConfig", "ImageEncoderConfig", "TextEncoderConfig", "GraphEncoderConfig", "HfClipConfig",
           *_LAZY]


__getattr__ = lazy_getattr(__name__, _LAZY)
