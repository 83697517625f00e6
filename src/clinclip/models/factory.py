"""Which model family a config, a directory or a name is, and the class that builds or loads it: clinclip's
own model (``ClinClipModel``), a Hugging Face CLIP / SigLIP (``HfClipModel``, family ``hf-clip``), or an
``open_clip`` model (evaluation only). The families' classes know nothing of each other; this module does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from clinclip.errors import ClinclipError
from clinclip.models.config import ModelConfig
from clinclip.models.eval_wrappers import ModelEncoder, OpenClipEncoder
from clinclip.models.hf_clip import HfClipModel
from clinclip.models.interface import VisionLanguageEncoder
from clinclip.models.hub import portable_source, resolve_model_dir
from clinclip.models.io import detect_model_kind, read_config_json
from clinclip.models.model import ClinClipModel

OPEN_CLIP_PREFIX = "open_clip:"
MODEL_CLASSES: dict[str, type[ClinClipModel]] = {"clinclip": ClinClipModel, "hf-clip": HfClipModel}


def model_class(family: str) -> type[ClinClipModel]:
    try:
        return MODEL_CLASSES[family]
    except KeyError:
        raise ClinclipError(f"unknown model family {family!r}; known: {', '.join(MODEL_CLASSES)}") from None


def build_model(config: ModelConfig) -> ClinClipModel:
    """A new model of ``config.family`` (pretrained backbones where the config names them)."""
    return model_class(config.family).from_config(config)


def load_model(directory: str | Path, map_location: str | torch.device | None = None,
               load_graph: bool = True, **hub: Any) -> ClinClipModel:
    """A clinclip model folder written by ``save_pretrained``, of either family: a local directory (offline)
    or a hub name ``owner/model`` (``hub``: ``revision``, ``cache_dir``, ``local_files_only``)."""
    directory = resolve_model_dir(directory, **hub)
    # A missing or foreign directory: ClinClipModel.from_pretrained says what it is and what to use instead.
    own = detect_model_kind(directory) == "clinclip"
    family = read_config_json(directory).get("family", "clinclip") if own else "clinclip"
    return model_class(family).from_pretrained(directory, map_location=map_location, load_graph=load_graph)


def init_from(path: str | Path, max_text_length: int | None = None) -> ClinClipModel:
    """A model to fine-tune, initialised from ``path``: a clinclip directory (either family) or a Hugging Face
    CLIP / SigLIP directory (wrapped as family ``hf-clip``: its image and text towers, no graph); either may
    be a hub name ``owner/model``."""
    hub_name = None if Path(str(path)).expanduser().exists() else str(path)
    path = resolve_model_dir(path)
    if detect_model_kind(path) == "clinclip":
        model = load_model(path)
        # a new run starts its own card: the base's training and metrics describe the base, not this model
        model.card_info = {"base_model": hub_name or portable_source(str(path))}
    else:
        model = HfClipModel.from_hf_directory(path, name=hub_name)
    if max_text_length is not None:
        model.set_max_text_length(max_text_length)
    return model


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
    hub_name = None if Path(spec).expanduser().exists() else spec
    directory = resolve_model_dir(spec)
    kind = detect_model_kind(directory)
    if kind == "clinclip":
        model = load_model(directory, load_graph=False)  # evaluation uses no graphs
    else:
        model = HfClipModel.from_hf_directory(directory)
    name = f"{kind}:{hub_name}" if hub_name else _display_name(directory, kind)
    return ModelEncoder(model, name=name, device=device)


def _parse_open_clip(spec: str, pretrained: str | None) -> tuple[str, str | None]:
    rest = spec[len(OPEN_CLIP_PREFIX):]
    architecture, _, tag = rest.partition("@")
    if not architecture:
        raise ClinclipError(f"{spec!r}: expected open_clip:<architecture>[@<pretrained tag or weights file>]")
    return architecture, pretrained or tag or None


def _display_name(directory: Path, kind: str) -> str:
    # Training writes RUN/model/: name such a model after its run, not "model".
    resolved = directory.resolve()
    name = resolved.parent.name if resolved.name == "model" and resolved.parent.name else resolved.name
    return name if kind == "clinclip" else f"{kind}:{name}"
