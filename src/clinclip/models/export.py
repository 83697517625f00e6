"""Export a trained clinclip model directory back to the format its architecture came from.

``export_model(model_dir, "hf", out)`` dispatches on the model's family (``config.json``'s ``family``):

- ``hf-clip`` (a Hugging Face CLIP / SigLIP fine-tuned by clinclip, e.g. CON1 / CON2 from ``--init``): a plain
  Hugging Face folder -- ``config.json`` and ``model.safetensors`` as ``CLIPModel`` / ``SiglipModel`` write
  them (transformers' own key names), the tokenizer files and a ``preprocessor_config.json`` that resizes and
  normalises as clinclip did in training. ``transformers.AutoModel.from_pretrained`` loads it without clinclip.

Other families register their exporter in ``EXPORTERS`` (family -> format -> function).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable

from clinclip.models.export_towers import export_towers
from clinclip.errors import ClinclipError
from clinclip.models.io import HF_CLIP_KINDS, detect_model_kind, read_config_json

Exporter = Callable[[Path, Path], None]  # (model directory, empty folder to write into)


def _image_processor(model):
    """The Hugging Face image processor that resizes and normalises as the model's ``config.image`` says."""
    from transformers import CLIPImageProcessor, SiglipImageProcessor

    image = model.config.image
    size = int(image.image_size)
    mean, std = list(image.mean), list(image.std)
    if image.resize_mode == "shorter_crop":  # resize the shorter side, then centre-crop a square
        return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                  do_center_crop=True, image_mean=mean, image_std=std)
    # squash: resize straight to size x size
    if model.kind == "siglip":
        return SiglipImageProcessor(size={"height": size, "width": size}, image_mean=mean, image_std=std)
    return CLIPImageProcessor(size={"height": size, "width": size}, do_center_crop=False, image_mean=mean,
                              image_std=std)


def export_hf_clip(model_dir: Path, out: Path) -> None:
    """A clinclip ``hf-clip`` model -> a plain Hugging Face CLIP / SigLIP folder."""
    from clinclip.models.factory import load_model

    model = load_model(model_dir)
    model.hf_model.save_pretrained(str(out), safe_serialization=True)
    tokenizer = model.tokenizer
    # The text length clinclip trained with; HF tokenizers truncate to model_max_length.
    tokenizer.model_max_length = model.max_text_length
    tokenizer.save_pretrained(str(out))
    _image_processor(model).save_pretrained(str(out))


EXPORTERS: dict[str, dict[str, Exporter]] = {"hf-clip": {"hf": export_hf_clip}, "clinclip": {"hf": export_towers}}
FORMATS = ("hf",)


def export_model(model_dir: str | Path, fmt: str, out: str | Path, overwrite: bool = False) -> Path:
    """Write ``model_dir`` (a clinclip model directory) as ``fmt`` into ``out``; returns ``out``.

    ``out`` must not exist or be empty unless ``overwrite`` (then it is replaced as a whole, atomically);
    it may never be ``model_dir`` itself."""
    model_dir, out = Path(model_dir), Path(out)
    kind = detect_model_kind(model_dir)
    if kind in HF_CLIP_KINDS:
        raise ClinclipError(f"{model_dir}: already a plain Hugging Face {kind!r} folder; nothing to export "
                            "(export converts clinclip model directories)")
    family = read_config_json(model_dir).get("family", "clinclip")
    by_format = EXPORTERS.get(family, {})
    if fmt not in by_format:
        supported = [f"{fam} -> {f}" for fam, formats in EXPORTERS.items() for f in formats]
        raise ClinclipError(f"{model_dir}: exporting a model of family {family!r} to format {fmt!r} is not "
                            f"supported (supported: {', '.join(supported)})")
    if out.resolve() == model_dir.resolve():
        raise ClinclipError(f"{out}: is the model directory itself; choose another --out")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ClinclipError(f"{out}: exists and is not empty; pass --overwrite to replace it, or choose another "
                            "--out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        by_format[fmt](model_dir, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    tmp.rename(out)
    return out
