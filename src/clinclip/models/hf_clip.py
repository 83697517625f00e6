"""Family ``hf-clip``: a Hugging Face ``CLIPModel`` or ``SiglipModel`` as the trainable image and text towers
(no graph encoder), with the same forward / encode / save / load interface as ``ClinClipModel``.

Used to fine-tune published encoders (CON1/CON2 on CLIP-style models, CheXagent's SigLIP-type encoders) and
to evaluate them through ``load_encoder``. Preprocessing is the directory's image processor, honoured in full
(``clinclip.data.processor``), else the model type's published one; a saved model folder writes it back as
``preprocessor_config.json`` beside its tokenizer.
SigLIP's ``logit_bias`` belongs to its sigmoid loss, which clinclip's softmax losses do not use: it is kept
(saved and loaded) but frozen, so that DDP sees no unused trainable parameter.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from transformers import AutoModel

from clinclip.errors import ClinclipError
from clinclip.models import backbones
from clinclip.models.config import GraphEncoderConfig, HfClipConfig, ImageEncoderConfig, ModelConfig
from clinclip.models.io import CONFIG_NAME, detect_model_kind
from clinclip.models.model import ClinClipModel

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)


def hf_image_preprocessing(source: str | None, hf_config) -> ImageEncoderConfig:
    """The preprocessing of a CLIP or SigLIP model as its image processor defines it: the folder's
    ``preprocessor_config.json`` (resolved by ``AutoImageProcessor``), else the model type's published
    processor at the vision tower's image size."""
    from clinclip.data.processor import default_spec, load_processor_spec, output_size

    kind = hf_config.model_type
    size = int(hf_config.vision_config.image_size)
    processor_path = Path(source) / "preprocessor_config.json" if source and Path(source).is_dir() else None
    if processor_path is not None and processor_path.is_file():
        spec = load_processor_spec(source)
    else:
        mean, std = (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD) if kind == "clip" else (SIGLIP_MEAN, SIGLIP_STD)
        spec = default_spec(kind, size, mean, std)
    out = output_size(spec)
    return ImageEncoderConfig(backbone=None, backbone_config=None, image_size=out[0] if out else size,
                              mean=tuple(spec["image_mean"]), std=tuple(spec["image_std"]),
                              resize_mode="shorter_crop" if spec["do_center_crop"] else "squash", processor=spec)


class HfClipModel(ClinClipModel):
    """``CLIPModel`` / ``SiglipModel`` wrapped with clinclip's interface."""

    family = "hf-clip"

    def __init__(self, config: ModelConfig, tokenizer, hf_model: nn.Module):
        nn.Module.__init__(self)
        if hf_model.config.model_type not in ("clip", "siglip"):
            raise ClinclipError(f"family hf-clip wraps CLIP or SigLIP models, got {hf_model.config.model_type!r}")
        self.config = config
        self.tokenizer = tokenizer
        self.hf_model = hf_model
        self.graph_encoder = None
        if hf_model.config.model_type == "siglip":
            hf_model.logit_bias.requires_grad_(False)
        config.embed_dim = int(self._embed_width())
        positions = int(hf_model.config.text_config.max_position_embeddings)
        if config.hf_clip.max_text_length is not None and config.hf_clip.max_text_length > positions:
            raise ClinclipError(f"model config: hf_clip.max_text_length = {config.hf_clip.max_text_length} exceeds "
                                f"the text tower's {positions} positions")
        # The text section is not used by this family; keep it from stating a length the model cannot take.
        config.text.max_text_length = self.max_text_length

    def _embed_width(self) -> int:
        cfg = self.hf_model.config
        if cfg.model_type == "clip":
            return cfg.projection_dim
        # SigLIP's text head maps hidden_size -> projection_size (which defaults to hidden_size).
        return getattr(cfg.text_config, "projection_size", None) or cfg.text_config.hidden_size

    @property
    def kind(self) -> str:
        return self.hf_model.config.model_type

    @property
    def logit_scale(self) -> nn.Parameter:  # type: ignore[override]
        return self.hf_model.logit_scale

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: ModelConfig) -> "HfClipModel":
        config = copy.deepcopy(config)
        hf = config.hf_clip
        if hf.source is not None:
            resolved = backbones.resolve_source(hf.source, "hf-clip model")
            try:
                hf_model = AutoModel.from_pretrained(resolved)
            except (OSError, ValueError, KeyError) as err:
                raise backbones._load_error("hf-clip model", hf.source, err) from None
        else:
            hf_model = AutoModel.from_config(backbones.config_from_dict(hf.model_config, "hf_clip.model_config"))
            resolved = None
        tokenizer = backbones.load_tokenizer(hf.tokenizer or hf.source, "hf-clip tokenizer") \
            if (hf.tokenizer or hf.source) else None
        if tokenizer is None:
            raise ClinclipError("model config: hf_clip.tokenizer is required when hf_clip.source is not given")
        preprocessing = hf_image_preprocessing(resolved, hf_model.config)
        if hf.source is not None:  # a directory's processor wins over whatever the config says
            config.image = preprocessing
        return cls(config, tokenizer, hf_model)

    @classmethod
    def from_hf_directory(cls, path: str | Path, name: str | None = None) -> "HfClipModel":
        """Wrap a Hugging Face CLIP / SigLIP directory (weights, tokenizer and processor config); ``name`` is
        the hub name it came from, recorded as the model's base (default: the folder's name)."""
        from clinclip.models.hub import portable_source

        kind = detect_model_kind(path)
        if kind not in ("clip", "siglip"):
            raise ClinclipError(f"{path}: model_type {kind!r}; expected a Hugging Face 'clip' or 'siglip' directory")
        base = name or portable_source(str(path))
        config = ModelConfig(family="hf-clip", embed_dim=1, hf_clip=HfClipConfig(source=str(path)),
                             graph=GraphEncoderConfig(enabled=False), description=f"{kind} from {base}")
        model = cls.from_config(config)
        model.card_info = {"base_model": base, "kind": kind}
        return model

    @classmethod
    def _build_saved(cls, config: ModelConfig, directory: Path) -> "HfClipModel":
        if config.hf_clip.model_config is None:
            raise ClinclipError(f"{directory / CONFIG_NAME}: hf_clip.model_config is missing; this config was not "
                                "written by save_pretrained")
        hf_model = AutoModel.from_config(backbones.config_from_dict(config.hf_clip.model_config,
                                                                    f"{directory / CONFIG_NAME}: hf_clip"))
        tokenizer = backbones.load_tokenizer(str(directory), f"tokenizer in {directory}")
        return cls(config, tokenizer, hf_model)

    def saved_config(self) -> ModelConfig:
        from clinclip.models.hub import portable_source

        config = copy.deepcopy(self.config)
        config.hf_clip.model_config = backbones.backbone_config_dict(self.hf_model)
        # The folder rebuilds from model_config and its own tokenizer: sources are provenance, no local path.
        config.hf_clip.source = portable_source(config.hf_clip.source)
        config.hf_clip.tokenizer = portable_source(config.hf_clip.tokenizer)
        config.hf_clip.max_text_length = config.text.max_text_length = self.max_text_length
        return config

    def save_pretrained(self, directory: str | Path, save_phrase_encoder: bool | None = None,
                        card: dict[str, Any] | None = None) -> Path:
        return super().save_pretrained(directory, save_phrase_encoder=False,
                                       card={"kind": self.kind, **(card or {})})

    def _save_extra_files(self, directory: Path) -> None:
        """``preprocessor_config.json``: the image processor this model is evaluated with, so the folder is
        usable as Hugging Face folders are (tokenizer files are saved beside it)."""
        import json

        from clinclip.data.processor import default_spec

        image = self.config.image
        spec = image.processor or default_spec(self.kind, image.image_size, image.mean, image.std)
        (directory / "preprocessor_config.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")

    # ------------------------------------------------------------------ towers
    @property
    def max_text_length(self) -> int:
        return self.config.hf_clip.max_text_length or int(self.hf_model.config.text_config.max_position_embeddings)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        if isinstance(texts, str):
            raise ClinclipError("tokenize() takes a list of texts, not a single string")
        # SigLIP pools the last position and was trained on texts padded to full length: pad the same way.
        padding = "max_length" if self.kind == "siglip" else True
        encoded = self.tokenizer(list(texts), padding=padding, truncation=True, max_length=self.max_text_length,
                                 return_tensors="pt")
        return {"input_ids": encoded["input_ids"],
                "attention_mask": encoded.get("attention_mask", torch.ones_like(encoded["input_ids"]))}

    @staticmethod
    def _pooled(output: Any) -> torch.Tensor:
        # transformers 5 returns a model output whose pooler_output is the projected embedding; 4.x a tensor.
        return output if isinstance(output, torch.Tensor) else output.pooler_output

    def text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        if inputs_embeds is not None:
            raise ClinclipError("hf-clip text towers take token ids, not inputs_embeds; attribute through the "
                                "embedding layer instead (text_model.embeddings)")
        if self.kind == "siglip":  # SiglipTextModel ignores padding masks by design (it pools the last token)
            return self._pooled(self.hf_model.get_text_features(input_ids=input_ids))
        return self._pooled(self.hf_model.get_text_features(input_ids=input_ids, attention_mask=attention_mask))

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self._pooled(self.hf_model.get_image_features(pixel_values=pixel_values))

    @property
    def text_model(self) -> nn.Module:
        return self.hf_model.text_model
