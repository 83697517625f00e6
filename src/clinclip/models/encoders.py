"""``load_encoder``: any supported model (own directory, Hugging Face CLIP / SigLIP directory or hub name,
``open_clip:<name>``) as a ``VisionLanguageEncoder`` for evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from clinclip.errors import ClinclipError
from clinclip.models.interface import VisionLanguageEncoder
from clinclip.models.io import detect_model_kind

OPEN_CLIP_PREFIX = "open_clip:"


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

    def _image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.image_features(pixel_values)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.model.tokenize(texts)

    def embed_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.text_features(input_ids, attention_mask)


class OpenClipEncoder(VisionLanguageEncoder):
    """An ``open_clip`` model (``open_clip:<architecture>`` + a pretrained tag or weights file)."""

    def __init__(self, architecture: str, pretrained: str | None, device: str | torch.device = "cpu"):
        try:
            import open_clip
        except ImportError:
            raise ClinclipError("open_clip models need the open_clip package: pip install 'clinclip[openclip]' "
                                "(open_clip_torch)") from None
        from clinclip.data.transforms import ImageTransform

        try:
            model, _, _ = open_clip.create_model_and_transforms(architecture, pretrained=pretrained)
        except (RuntimeError, ValueError, OSError) as err:
            raise ClinclipError(f"open_clip:{architecture} (pretrained={pretrained!r}): {err}") from None
        self.model = model.eval().to(device)
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.name = f"open_clip:{architecture}"
        self.device = torch.device(device)
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        self.transform = ImageTransform(self.image_size, train=False,
                                        mean=cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)),
                                        std=cfg.get("std", (0.26862954, 0.26130258, 0.27577711)))
        self.tokenizer = open_clip.get_tokenizer(architecture)
        self.text_model = getattr(model, "transformer", None) or getattr(model, "text", None)
        self._embed_dim = int(getattr(model, "embed_dim", 0) or 0)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        return self.transform(image)

    def _image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixel_values)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        ids = self.tokenizer(list(texts))
        return {"input_ids": ids, "attention_mask": (ids != 0).long()}

    def embed_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.encode_text(input_ids)


def _parse_open_clip(spec: str, pretrained: str | None) -> tuple[str, str | None]:
    rest = spec[len(OPEN_CLIP_PREFIX):]
    architecture, _, tag = rest.partition("@")
    if not architecture:
        raise ClinclipError(f"{spec!r}: expected open_clip:<architecture>[@<pretrained tag or weights file>]")
    return architecture, pretrained or tag or None


def load_encoder(path_or_name: str | Path, device: str | torch.device = "cpu",
                 pretrained: str | None = None) -> VisionLanguageEncoder:
    """Load a model for evaluation.

    - a clinclip model directory (``save_pretrained``; family clinclip or hf-clip);
    - a Hugging Face CLIP or SigLIP directory (``CLIPModel`` / ``SiglipModel`` with tokenizer and
      ``preprocessor_config.json``, as CheXagent's encoders are published), or a hub name already in the
      local cache (the hub is used only when reachable);
    - ``open_clip:<architecture>[@<pretrained>]`` (or ``pretrained=``) when open_clip is installed.
    The kind of a directory comes from its ``config.json`` ``model_type``."""
    spec = str(path_or_name)
    if spec.startswith(OPEN_CLIP_PREFIX):
        architecture, tag = _parse_open_clip(spec, pretrained)
        return OpenClipEncoder(architecture, tag, device)
    directory = Path(spec).expanduser()
    hub_name = None
    if not directory.exists():
        directory, hub_name = _hub_snapshot(spec), spec
    kind = detect_model_kind(directory)
    if kind == "clinclip":
        from clinclip.models.model import ClinClipModel

        model = ClinClipModel.from_pretrained(directory, load_graph=False)  # evaluation uses no graphs
    else:
        from clinclip.models.hf_clip import HfClipModel

        model = HfClipModel.from_hf_directory(directory)
    name = f"{kind}:{hub_name}" if hub_name else _display_name(directory, kind)
    return ModelEncoder(model, name=name, device=device)


def _display_name(directory: Path, kind: str) -> str:
    # Training writes RUN/model/: name such a model after its run, not "model".
    resolved = directory.resolve()
    name = resolved.parent.name if resolved.name == "model" and resolved.parent.name else resolved.name
    return name if kind == "clinclip" else f"{kind}:{name}"


def _hub_snapshot(name: str) -> Path:
    if name.startswith(("/", ".", "~")) or name.count("/") != 1:
        raise ClinclipError(f"{name}: model directory not found (and not a hub name of the form owner/model)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name))
    except Exception as err:  # offline, unknown repo, no permission: all mean "not available here"
        raise ClinclipError(f"{name}: not a local directory and not available from the hub or its local cache "
                            f"({err.__class__.__name__}); download it once and pass the directory") from None
