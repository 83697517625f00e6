"""The evaluation wrappers: a loaded model of any family seen through ``VisionLanguageEncoder`` (frozen, eval
mode). ``clinclip.models.factory.load_encoder`` picks the family and wraps the model."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

from clinclip.errors import ClinclipError
from clinclip.models.interface import VisionLanguageEncoder


class ModelEncoder(VisionLanguageEncoder):
    """A ``ClinClipModel`` (family clinclip or hf-clip) seen through the evaluation interface."""

    def __init__(self, model, name: str, device: str | torch.device = "cpu"):
        self.model = model.eval().to(device)
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.name = name
        self.device = torch.device(device)
        self.image_size = model.config.image.image_size
        self.transform = model.image_transform(train=False)
        self.text_model = model.text_model
        self.tokenizer = model.tokenizer
        self._embed_dim = model.config.embed_dim

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        return self.transform(image)

    def image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.image_features(pixel_values.to(self.device))

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.model.tokenize(texts)

    def embed_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.text_features(input_ids, attention_mask)


class OpenClipEncoder(VisionLanguageEncoder):
    """An ``open_clip`` model (``open_clip:<architecture>`` + a pretrained tag or weights file), preprocessed by
    its own evaluation ``preprocess`` (the transform ``create_model_and_transforms`` returns with it)."""

    def __init__(self, architecture: str, pretrained: str | None, device: str | torch.device = "cpu"):
        try:
            import open_clip
        except ImportError:
            raise ClinclipError("open_clip models need the open_clip package: pip install 'clinclip[openclip]' "
                                "(open_clip_torch)") from None

        try:
            model, _, preprocess = open_clip.create_model_and_transforms(architecture, pretrained=pretrained)
        except (RuntimeError, ValueError, OSError) as err:
            raise ClinclipError(f"open_clip:{architecture} (pretrained={pretrained!r}): {err}") from None
        self.model = model.eval().to(device)
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.name = f"open_clip:{architecture}"
        self.device = torch.device(device)
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.transform = preprocess  # PIL image -> tensor, as the model's authors evaluate
        self.tokenizer = open_clip.get_tokenizer(architecture)
        self.text_model = getattr(model, "transformer", None) or getattr(model, "text", None)
        self._embed_dim = int(getattr(model, "embed_dim", 0) or 0)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        return self.transform(Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB"))

    def image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixel_values.to(self.device))

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        ids = self.tokenizer(list(texts))
        return {"input_ids": ids, "attention_mask": (ids != 0).long()}

    def embed_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.encode_text(input_ids)
