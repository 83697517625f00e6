"""``ClinClipModel``: image, text and graph encoders with projections to a shared space and a learnable
temperature (docs/models.md), saved and loaded as a directory (config.json + model.safetensors + tokenizer)."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from clinclip.data.processor import ImageProcessorTransform
from clinclip.data.transforms import ImageTransform
from clinclip.errors import ClinclipError
from clinclip.models import backbones
from clinclip.models.config import ModelConfig
from clinclip.models.graph import PhraseEncoder
from clinclip.models.io import (CONFIG_NAME, WEIGHTS_NAME, AtomicDirectory, detect_model_kind, load_weights,
                                read_config_json, save_weights)

PHRASE_ENCODER_DIR = "phrase_encoder"


def _backbone_width(model, what: str) -> int:
    config = model.config
    for name in ("hidden_size", "projection_dim"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    sizes = getattr(config, "hidden_sizes", None)
    if sizes:
        return int(sizes[-1])
    raise ClinclipError(f"{what}: cannot tell the output width of a {config.model_type!r} backbone "
                        "(its config has no hidden_size / hidden_sizes)")


def _clinclip_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("clinclip")
    except PackageNotFoundError:
        return "unknown"


class ClinClipModel(nn.Module):
    """The paper's model (family ``clinclip``). Build with ``ClinClipModel.from_config(ModelConfig.from_preset(
    "tiny"))`` or load with ``ClinClipModel.from_pretrained(dir)``; for a config or directory of either family
    use ``clinclip.models.build_model`` / ``load_model`` (``clinclip.models.factory``)."""

    family = "clinclip"

    def __init__(self, config: ModelConfig, tokenizer, image_backbone: nn.Module, text_backbone: nn.Module,
                 phrase_encoder=None):
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.image_backbone = image_backbone
        self.text_backbone = text_backbone
        d = config.embed_dim
        self.image_projection = nn.Linear(_backbone_width(image_backbone, "image backbone"), d, bias=False)
        self.text_projection = nn.Linear(_backbone_width(text_backbone, "text backbone"), d, bias=False)
        self.graph_encoder = None
        if config.graph_enabled:
            from clinclip.models.graph import GraphEncoder, PhraseEmbeddingCache, phrase_cache_fingerprint

            g = config.graph
            if phrase_encoder is None:
                raise ClinclipError("model config: graph.enabled is true but no phrase encoder was given")
            if g.phrase_dim is not None and g.phrase_dim != phrase_encoder.dim:
                raise ClinclipError(f"model config: graph.phrase_dim = {g.phrase_dim} but the phrase encoder "
                                    f"{g.phrase_encoder!r} has width {phrase_encoder.dim}")
            g.phrase_dim = phrase_encoder.dim
            cache = PhraseEmbeddingCache(
                phrase_encoder, phrase_encoder.dim,
                phrase_cache_fingerprint(g.phrase_encoder, g.phrase_pooling, g.phrase_max_length,
                                         phrase_encoder.dim),
                cache_dir=g.phrase_cache_dir)
            self.graph_encoder = GraphEncoder(phrase_encoder, g.entity_types, g.hidden_dim, g.num_layers, d, cache)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(config.logit_scale_init)))
        # What the model card records (training run, data fingerprint, metrics); read back on loading.
        self.card_info: dict[str, Any] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: ModelConfig) -> "ClinClipModel":
        """A new model: backbones with a source load their pretrained weights (hub or local directory),
        backbones given inline are randomly initialised; projections, graph layers and the scale are new."""
        config = copy.deepcopy(config)
        _check_family(cls, config.family, "model config")
        if config.image.backbone is not None:
            image_backbone = backbones.load_pretrained_backbone(config.image.backbone, "image backbone")
        else:
            image_backbone = backbones.build_backbone_from_config(
                _with_image_size(config.image.backbone_config, config.image.image_size), "image backbone")
        tokenizer = backbones.load_tokenizer(config.text.tokenizer or config.text.backbone, "text tokenizer")
        if config.text.backbone is not None:
            text_backbone = backbones.load_pretrained_backbone(config.text.backbone, "text backbone",
                                                               drop_pooler=True)
        else:
            text_config = dict(config.text.backbone_config)
            text_config.setdefault("vocab_size", len(tokenizer))
            if hasattr(tokenizer, "pad_token_id") and tokenizer.pad_token_id is not None:
                text_config.setdefault("pad_token_id", tokenizer.pad_token_id)
            text_backbone = backbones.build_backbone_from_config(text_config, "text backbone", drop_pooler=True)
        phrase_encoder = _load_phrase_encoder(config) if config.graph_enabled else None
        model = cls(config, tokenizer, image_backbone, text_backbone, phrase_encoder)
        model._check_tokenizer_fits()
        return model

    @classmethod
    def from_preset(cls, name_or_path: str, overrides: dict[str, Any] | None = None) -> "ClinClipModel":
        return cls.from_config(ModelConfig.from_preset(name_or_path, overrides))

    def _check_tokenizer_fits(self) -> None:
        vocab = getattr(self.text_backbone.config, "vocab_size", None)
        if vocab is not None and len(self.tokenizer) > vocab:
            raise ClinclipError(f"text tokenizer has {len(self.tokenizer)} tokens but the text backbone's "
                                f"vocab_size is {vocab}; use the backbone's own tokenizer or a larger vocab_size")

    # ------------------------------------------------------------------ text
    @property
    def max_text_length(self) -> int:
        return self.config.text.max_text_length

    def set_max_text_length(self, length: int) -> None:
        limit = getattr(self.text_model.config, "max_position_embeddings", None)
        if limit is not None and length > limit:
            raise ClinclipError(f"max_text_length {length} exceeds the text backbone's {limit} positions")
        if self.config.family == "hf-clip":
            self.config.hf_clip.max_text_length = length
        else:
            self.config.text.max_text_length = length

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokens for ``forward``/``encode_text``: padded to the longest text, truncated to max_text_length."""
        if isinstance(texts, str):
            raise ClinclipError("tokenize() takes a list of texts, not a single string")
        encoded = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_text_length,
                                 return_tensors="pt")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Raw (unnormalised) text projections. ``inputs_embeds`` replaces ``input_ids`` (attribution)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids if input_ids is not None else inputs_embeds[..., 0],
                                             dtype=torch.long)
        if inputs_embeds is not None:
            hidden = self.text_backbone(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
        else:
            hidden = self.text_backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.config.text.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.text_projection(pooled)

    @property
    def text_model(self) -> nn.Module:
        """The transformer under the text projection (for attribution and head ablation)."""
        return self.text_backbone

    # ------------------------------------------------------------------ image / graph
    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.image_backbone(pixel_values=pixel_values)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            pooled = out.last_hidden_state.mean(dim=1)
        return self.image_projection(pooled.flatten(1))

    def graph_features(self, graphs: Sequence[str | dict]) -> torch.Tensor:
        if self.graph_encoder is None:
            raise ClinclipError("this model has no graph encoder (graph.enabled is false in its config)")
        return self.graph_encoder(graphs)

    def current_logit_scale(self) -> torch.Tensor:
        """exp of the ``logit_scale`` parameter. The cap is kept on the parameter itself
        (``clamp_logit_scale_`` after each optimiser step), so the gradient reaches it at any value."""
        return self.logit_scale.exp()

    @torch.no_grad()
    def clamp_logit_scale_(self) -> None:
        """Clamp the ``logit_scale`` parameter in place to [0, log(logit_scale_max)], as open_clip does
        after each optimiser step: a multiplier between 1 (or the initial one, when below 1) and the cap."""
        low = min(0.0, math.log(self.config.logit_scale_init))
        self.logit_scale.clamp_(low, math.log(self.config.logit_scale_max))

    # ------------------------------------------------------------------ forward
    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Embeddings for whatever the batch holds (keys of docs/ARCHITECTURE.md); raw, not normalised."""
        out: dict[str, torch.Tensor] = {}
        if batch.get("pixel_values") is not None:
            out["image_embeds"] = self.image_features(batch["pixel_values"])
        if batch.get("input_ids") is not None:
            if batch.get("neg_input_ids") is not None:
                # One pass over [texts; negated texts]: one larger batch is faster than two.
                ids, mask = _stack_padded(batch["input_ids"], batch.get("attention_mask"), batch["neg_input_ids"],
                                          batch.get("neg_attention_mask"), self._pad_token_id())
                both = self.text_features(ids, mask)
                out["text_embeds"], out["neg_text_embeds"] = both.split(batch["input_ids"].shape[0])
            else:
                out["text_embeds"] = self.text_features(batch["input_ids"], batch.get("attention_mask"))
        elif batch.get("neg_input_ids") is not None:
            out["neg_text_embeds"] = self.text_features(batch["neg_input_ids"], batch.get("neg_attention_mask"))
        if self.graph_encoder is not None:
            graphs, neg_graphs = batch.get("graphs"), batch.get("neg_graphs")
            if graphs is not None and neg_graphs is not None:
                both = self.graph_encoder(list(graphs) + list(neg_graphs))
                out["graph_embeds"], out["neg_graph_embeds"] = both.split(len(graphs))
            elif graphs is not None:
                out["graph_embeds"] = self.graph_encoder(graphs)
            elif neg_graphs is not None:
                out["neg_graph_embeds"] = self.graph_encoder(neg_graphs)
        out["logit_scale"] = self.current_logit_scale()
        return out

    def _pad_token_id(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        return 0 if pad is None else int(pad)

    # ------------------------------------------------------------------ inference helpers
    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def encode_image(self, pixel_values: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        embeds = self.image_features(pixel_values.to(self.device))
        return nn.functional.normalize(embeds, dim=-1) if normalize else embeds

    def encode_text(self, texts_or_tokens: Sequence[str] | dict[str, torch.Tensor],
                    normalize: bool = True) -> torch.Tensor:
        tokens = texts_or_tokens if isinstance(texts_or_tokens, dict) else self.tokenize(texts_or_tokens)
        embeds = self.text_features(tokens["input_ids"].to(self.device),
                                    tokens.get("attention_mask").to(self.device)
                                    if tokens.get("attention_mask") is not None else None)
        return nn.functional.normalize(embeds, dim=-1) if normalize else embeds

    def encode_graph(self, graphs: Sequence[str | dict], normalize: bool = True) -> torch.Tensor:
        embeds = self.graph_features(graphs)
        return nn.functional.normalize(embeds, dim=-1) if normalize else embeds

    def image_transform(self, train: bool = False, **options):
        """The preprocessing this model expects: uint8 H×W array -> float tensor 3×S×S. A model with an image
        processor (``config.image.processor``: Hugging Face CLIP / SigLIP) is evaluated exactly as that
        processor prepares images; training augments at ``image_size`` with its mean / std."""
        image = self.config.image
        if image.processor is not None and not train:
            return ImageProcessorTransform(image.processor)
        return ImageTransform(image.image_size, train=train, mean=image.mean, std=image.std,
                              resize_mode=image.resize_mode, **options)

    # ------------------------------------------------------------------ save / load
    def saved_config(self) -> ModelConfig:
        """The config written to config.json: backbone architectures inline so the directory rebuilds
        offline; the original sources are kept as provenance."""
        from clinclip.models.hub import portable_source

        config = copy.deepcopy(self.config)
        config.image.backbone_config = backbones.backbone_config_dict(self.image_backbone)
        config.text.backbone_config = backbones.backbone_config_dict(self.text_backbone)
        # Provenance only (the folder rebuilds from the inline configs): no path of this machine.
        config.image.backbone = portable_source(config.image.backbone)
        config.text.backbone = portable_source(config.text.backbone)
        config.text.tokenizer = portable_source(config.text.tokenizer)
        config.graph.phrase_cache_dir = None
        return config

    def save_pretrained(self, directory: str | Path, save_phrase_encoder: bool | None = None,
                        card: dict[str, Any] | None = None) -> Path:
        """Write ``config.json`` + ``model.safetensors`` + tokenizer files + ``README.md`` (the model card),
        replacing the directory atomically; the folder is ready for ``push_to_hub`` and gets the user's
        usual permissions. ``card`` adds to what the card records (``variant``, ``steps``, ``data``,
        ``data_fingerprint``, ``split``, ``rows``, ``seed``, ``metrics``, ...; see ``clinclip.models.hub``).

        The frozen phrase encoder of the graph tower is copied to ``phrase_encoder/`` (weights + tokenizer) so
        the directory loads offline wherever it goes -- except, by default (``None``), when its source is a
        ``package:`` directory (installed with clinclip's [demo] extra, e.g. the tiny preset's MiniLM).
        ``True`` / ``False`` force the copy / the reference to the config's ``graph.phrase_encoder``."""
        from clinclip.models.hub import CARD_NAME, model_card, portable_source

        directory = Path(directory)
        if save_phrase_encoder is None:
            save_phrase_encoder = not str(self.config.graph.phrase_encoder or "").startswith(
                backbones.PACKAGE_PREFIX)
        self.card_info = {**self.card_info, **(card or {})}
        config = self.saved_config()
        copy_phrase = self.graph_encoder is not None and save_phrase_encoder
        if copy_phrase:  # the copy inside the folder is what loads; the source stays as provenance
            config.graph.phrase_encoder = portable_source(config.graph.phrase_encoder)
        with AtomicDirectory(directory) as tmp:
            config.save(tmp / CONFIG_NAME, extra={"clinclip_version": _clinclip_version()})
            save_weights(self, tmp / WEIGHTS_NAME, {"family": self.config.family})
            self.tokenizer.save_pretrained(str(tmp))
            if copy_phrase:
                phrase = self.graph_encoder.phrase_encoder
                phrase.model.save_pretrained(str(tmp / PHRASE_ENCODER_DIR))
                phrase.tokenizer.save_pretrained(str(tmp / PHRASE_ENCODER_DIR))
            self._save_extra_files(tmp)
            (tmp / CARD_NAME).write_text(model_card(config, self.card_info, name=directory.resolve().name),
                                         encoding="utf-8")
        return directory

    def _save_extra_files(self, directory: Path) -> None:
        """Files a family adds to its saved folder (hf-clip: the image processor)."""

    def push_to_hub(self, repo_id: str, **kwargs):
        """Upload this model (saved with its model card) to the Hugging Face hub; see
        ``clinclip.models.hub.push_to_hub`` for the options."""
        from clinclip.models.hub import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device | None = None,
                        load_graph: bool = True, revision: str | None = None, cache_dir: str | Path | None = None,
                        local_files_only: bool | None = None) -> "ClinClipModel":
        """Load a folder written by ``save_pretrained`` (either family) -- a local directory, or a hub name
        ``owner/model`` fetched with huggingface_hub (``revision``, ``cache_dir``, ``local_files_only``); no
        network for a local folder. ``load_graph=False`` skips the graph encoder and its phrase encoder
        (evaluation needs only the image and text towers)."""
        from clinclip.models.hub import read_card_info, resolve_model_dir

        directory = resolve_model_dir(directory, revision=revision, cache_dir=cache_dir,
                                      local_files_only=local_files_only)
        kind = detect_model_kind(directory)
        if kind != "clinclip":
            raise ClinclipError(f"{directory}: a Hugging Face {kind!r} directory, not a clinclip model; use "
                                "clinclip.models.load_encoder() to evaluate it or clinclip.models.init_from() "
                                "(train --init) to fine-tune it")
        config = ModelConfig.from_dict(read_config_json(directory), where=str(directory / CONFIG_NAME))
        skip = ()
        if not load_graph and config.graph_enabled:
            config.graph.enabled = False
            skip = ("graph_encoder.",)
        _check_family(cls, config.family, str(directory))
        model = cls._build_saved(config, directory)
        load_weights(model, directory / WEIGHTS_NAME, skip_prefixes=skip)
        model.card_info = read_card_info(directory)
        if map_location is not None:
            model.to(map_location)
        return model

    @classmethod
    def _build_saved(cls, config: ModelConfig, directory: Path) -> "ClinClipModel":
        where = directory / CONFIG_NAME
        for section in ("image", "text"):
            if getattr(config, section).backbone_config is None:
                raise ClinclipError(f"{where}: {section}.backbone_config is missing; this config was not written "
                                    "by save_pretrained (it records each backbone's architecture inline)")
        image_backbone = backbones.build_backbone_from_config(config.image.backbone_config, f"{where}: image")
        text_backbone = backbones.build_backbone_from_config(config.text.backbone_config, f"{where}: text",
                                                             drop_pooler=True)
        tokenizer = backbones.load_tokenizer(str(directory), f"tokenizer in {directory}")
        phrase_encoder = None
        if config.graph_enabled:
            local = directory / PHRASE_ENCODER_DIR
            phrase_encoder = _load_phrase_encoder(config, str(local) if local.is_dir() else None)
        model = cls(config, tokenizer, image_backbone, text_backbone, phrase_encoder)
        model._check_tokenizer_fits()
        return model


def _with_image_size(backbone_config: dict[str, Any], image_size: int) -> dict[str, Any]:
    config = dict(backbone_config)
    given = config.get("image_size")
    if given is not None and given != image_size:
        raise ClinclipError(f"model config: image.backbone_config.image_size = {given} differs from "
                            f"image.image_size = {image_size}; give one value")
    config["image_size"] = image_size
    return config


def _load_phrase_encoder(config: ModelConfig, local_dir: str | None = None):
    g = config.graph
    source = local_dir or g.phrase_encoder
    model = backbones.load_pretrained_backbone(source, "graph phrase encoder")
    tokenizer = backbones.load_tokenizer(source, "graph phrase encoder tokenizer")
    return PhraseEncoder(model, tokenizer, pooling=g.phrase_pooling, max_length=g.phrase_max_length)


def _stack_padded(ids_a: torch.Tensor, mask_a: torch.Tensor | None, ids_b: torch.Tensor,
                  mask_b: torch.Tensor | None, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    mask_a = torch.ones_like(ids_a) if mask_a is None else mask_a
    mask_b = torch.ones_like(ids_b) if mask_b is None else mask_b
    length = max(ids_a.shape[1], ids_b.shape[1])

    def pad(t: torch.Tensor, value: int) -> torch.Tensor:
        return nn.functional.pad(t, (0, length - t.shape[1]), value=value)

    return (torch.cat([pad(ids_a, pad_id), pad(ids_b, pad_id)]),
            torch.cat([pad(mask_a, 0), pad(mask_b, 0)]))


def _check_family(cls: type, family: str, where: str) -> None:
    if family != cls.family:
        raise ClinclipError(f"{where}: a model of family {family!r}, which {cls.__name__} does not build; use "
                            "clinclip.models.build_model(config) or clinclip.models.load_model(directory)")
