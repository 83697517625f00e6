"""Model-directory I/O shared by both families: kind detection, safetensors weights with clear mismatch
errors, and atomic directory replacement. Nothing here unpickles."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from clinclip.errors import ClinclipError
from clinclip.files import read_mapping

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
HF_CLIP_KINDS = ("clip", "siglip")


def read_config_json(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    if not directory.exists():
        raise ClinclipError(f"{directory}: model directory not found")
    if not directory.is_dir():
        raise ClinclipError(f"{directory}: expected a model directory (with config.json), got a file")
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise ClinclipError(f"{directory}: no {CONFIG_NAME}; not a model directory (clinclip, Hugging Face CLIP "
                            "or SigLIP directories have one)")
    return read_mapping(path, "model config")


def detect_model_kind(directory: str | Path) -> str:
    """``clinclip``, ``clip`` or ``siglip`` from ``config.json``'s ``model_type``; anything else is an error
    naming what was found."""
    data = read_config_json(directory)
    kind = data.get("model_type")
    if kind == "clinclip" or kind in HF_CLIP_KINDS:
        return kind
    raise ClinclipError(
        f"{Path(directory) / CONFIG_NAME}: model_type {kind!r} is not a supported model kind; expected "
        "'clinclip' (saved by clinclip), 'clip' (Hugging Face CLIPModel) or 'siglip' (SiglipModel)"
        + (f" -- this looks like a plain '{kind}' backbone, not a vision-language model" if kind else ""))


def state_for_saving(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """state_dict with tensors that share storage cloned (safetensors refuses shared storage)."""
    seen: set[int] = set()
    state = {}
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach()
        ptr = tensor.untyped_storage().data_ptr() if tensor.numel() else -1
        if ptr in seen:
            tensor = tensor.clone()
        elif ptr != -1:
            seen.add(ptr)
        state[name] = tensor.contiguous().cpu()
    return state


def save_weights(module: torch.nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    save_file(state_for_saving(module), str(path), metadata={"format": "pt", **(metadata or {})})


def load_weights(module: torch.nn.Module, path: Path, skip_prefixes: tuple[str, ...] = ()) -> None:
    """Load safetensors weights strictly; missing / unexpected / wrong-shape tensors give one clear error.
    Tensors under ``skip_prefixes`` are left out on purpose (a part not built, e.g. the graph encoder)."""
    if not path.is_file():
        raise ClinclipError(f"{path.parent}: no {path.name} (weights) in the model directory")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ClinclipError(f"{path}: cannot read safetensors weights ({err})") from None
    if skip_prefixes:
        state = {k: v for k, v in state.items() if not k.startswith(skip_prefixes)}
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [f"{k} {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                   for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    if missing or unexpected or wrong_shape:
        def show(items: list[str]) -> str:
            return ", ".join(items[:8]) + (f" (+{len(items) - 8} more)" if len(items) > 8 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {show(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {show(unexpected)}")
        if wrong_shape:
            parts.append(f"{len(wrong_shape)} with the wrong shape: {show(wrong_shape)}")
        raise ClinclipError(f"{path}: weights do not match the model built from config.json -- "
                            + "; ".join(parts))
    module.load_state_dict(state, strict=True)


def _is_own_dir(directory: Path) -> bool:
    try:
        return json.loads((directory / CONFIG_NAME).read_text(encoding="utf-8")).get("model_type") == "clinclip"
    except (OSError, ValueError, AttributeError):
        return False


class AtomicDirectory:
    """Write a directory's files into a temporary sibling, then swap it into place."""

    def __init__(self, target: str | Path):
        self.target = Path(target)

    def __enter__(self) -> Path:
        if self.target.exists() and (not self.target.is_dir() or (any(self.target.iterdir()) and not _is_own_dir(self.target))):
            # Never replace a directory we did not write: it may hold the user's other files.
            raise ClinclipError(f"{self.target}: exists and is not a clinclip model directory; refusing to "
                                "overwrite it (choose a new or empty directory)")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.", dir=self.target.parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        from clinclip.models.hub import apply_default_permissions

        apply_default_permissions(self.tmp)  # mkdtemp made it 0700: give it the user's usual permissions
        backup = None
        if self.target.exists():
            backup = self.target.with_name(f".{self.target.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            self.target.rename(backup)
        self.tmp.rename(self.target)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
