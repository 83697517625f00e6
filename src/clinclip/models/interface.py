"""The one interface evaluation uses for every model, own or external: ``VisionLanguageEncoder``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np
import torch


class VisionLanguageEncoder(ABC):
    """Images and texts into one L2-normalised embedding space; eval mode, no gradients.

    Attributes: ``name`` (for tables), ``image_size`` (S), ``device``, ``text_model`` (the transformer under
    the text projection, for attribution / head ablation), ``tokenizer``."""

    name: str
    image_size: int
    device: torch.device
    text_model: Any
    tokenizer: Any

    @abstractmethod
    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """uint8 H×W grayscale -> float tensor 3×S×S, as the model expects (no augmentation)."""

    @abstractmethod
    def image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Unnormalised image embeddings of one batch (moved to ``device``), *with* autograd when the caller
        enables it (full fine-tuning of the image side: ``self.model`` holds the torch module)."""

    @abstractmethod
    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokens as the model's text tower expects them (``input_ids``, ``attention_mask``)."""

    @abstractmethod
    def embed_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Unnormalised text embeddings from tokens, *with* autograd when enabled by the caller (attribution:
        hook ``text_model``'s embedding layer, e.g. captum's LayerIntegratedGradients)."""

    @torch.no_grad()
    def encode_images(self, pixel_values: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Tensor[N, 3, S, S] -> Tensor[N, D] (float32, CPU, unit norm)."""
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise ValueError(f"encode_images expects N×3×S×S pixel values, got shape {tuple(pixel_values.shape)}")
        chunks = [self.image_embeddings(pixel_values[i:i + batch_size])
                  for i in range(0, len(pixel_values), batch_size)]
        if not chunks:
            return torch.zeros(0, self.embed_dim)
        return torch.nn.functional.normalize(torch.cat(chunks).float(), dim=-1).cpu()

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """list of N texts -> Tensor[N, D] (float32, CPU, unit norm)."""
        if isinstance(texts, str):
            raise ValueError("encode_texts takes a list of texts, not a single string")
        texts = list(texts)
        chunks = []
        for i in range(0, len(texts), batch_size):
            tokens = self.tokenize(texts[i:i + batch_size])
            chunks.append(self.embed_tokens(tokens["input_ids"].to(self.device),
                                            tokens["attention_mask"].to(self.device)))
        if not chunks:
            return torch.zeros(0, self.embed_dim)
        return torch.nn.functional.normalize(torch.cat(chunks).float(), dim=-1).cpu()

    @property
    def embed_dim(self) -> int:
        return int(getattr(self, "_embed_dim", 0))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, image_size={self.image_size}, device={self.device})"
