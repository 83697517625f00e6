"""A Hugging Face image processor's preprocessing, honoured in full and written in torch so that it batches.

CLIP and SigLIP are published with a ``preprocessor_config.json``; its model saw images prepared exactly so:

1. ``do_resize``: ``size.shortest_edge`` scales the shorter side to that length (the longer side becomes
   ``int(shortest_edge * long / short)``, as transformers computes it), ``size.height``/``width`` resizes to
   that (possibly non-square) shape; with the ``resample`` kernel (PIL's numbering: 0 nearest, 2 bilinear,
   3 bicubic -- bicubic in every published CLIP / SigLIP processor). transformers resizes the 8-bit image
   with PIL, so the result is rounded to whole 8-bit levels here too;
2. ``do_center_crop`` to ``crop_size`` (zero padding where the image is smaller, as transformers does);
3. ``do_rescale`` by ``rescale_factor`` (1/255);
4. ``do_normalize`` with ``image_mean`` / ``image_std``.

PIL's bicubic and bilinear filters widen their support when shrinking (antialiasing) and use the cubic
coefficient a = -0.5; torch's ``interpolate(..., antialias=True)`` implements the same filters, so the pixels
agree with ``AutoImageProcessor``'s to within rounding (tests/test_models_processor.py measures it).

A spec is the processor's resolved settings as a JSON-able dict (``processor_spec``); it is what a clinclip
model folder records under ``image.processor`` and writes back as ``preprocessor_config.json``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from clinclip.errors import ClinclipError

# PIL.Image.Resampling values -> torch interpolate modes
RESAMPLE_MODES = {0: "nearest-exact", 2: "bilinear", 3: "bicubic"}
RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
SPEC_KEYS = ("image_processor_type", "do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale",
             "rescale_factor", "do_normalize", "image_mean", "image_std")


def _size_dict(value: Any, where: str, name: str) -> dict[str, int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return {"height": value, "width": value}
    if dataclasses.is_dataclass(value):  # transformers 5's SizeDict
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if v is not None}
    if isinstance(value, dict):
        if set(value) == {"shortest_edge"} or set(value) == {"height", "width"}:
            if all(isinstance(v, int) and v > 0 for v in value.values()):
                return {k: int(v) for k, v in value.items()}
    raise ClinclipError(f"{where}: {name} {value!r} is not supported; expected {{'shortest_edge': N}} or "
                        "{'height': H, 'width': W} with positive integers")


def processor_spec(processor_or_dict: Any, where: str = "image processor") -> dict[str, Any]:
    """The settings that define preprocessing, JSON-able, from a transformers image processor (its resolved
    attributes, class defaults included) or from a spec / ``preprocessor_config.json`` dict already complete."""
    if isinstance(processor_or_dict, dict):
        source = dict(processor_or_dict)
    else:
        source = {key: getattr(processor_or_dict, key, None) for key in SPEC_KEYS}
        source["image_processor_type"] = type(processor_or_dict).__name__.removesuffix("Pil").removesuffix("Fast")
    missing = [k for k in ("do_resize", "do_rescale", "do_normalize") if source.get(k) is None]
    if missing:
        raise ClinclipError(f"{where}: missing {missing}; load the folder with AutoImageProcessor first")
    spec: dict[str, Any] = {"image_processor_type": source.get("image_processor_type") or "CLIPImageProcessor",
                            "do_resize": bool(source["do_resize"]),
                            "size": _size_dict(source.get("size"), where, "size"),
                            "resample": int(source["resample"]) if source.get("resample") is not None else 2,
                            "do_center_crop": bool(source.get("do_center_crop") or False),
                            "crop_size": _size_dict(source.get("crop_size"), where, "crop_size"),
                            "do_rescale": bool(source["do_rescale"]),
                            "rescale_factor": float(source.get("rescale_factor") or 1 / 255),
                            "do_normalize": bool(source["do_normalize"]),
                            "image_mean": [float(v) for v in (source.get("image_mean") or (0.5, 0.5, 0.5))],
                            "image_std": [float(v) for v in (source.get("image_std") or (0.5, 0.5, 0.5))]}
    check_spec(spec, where)
    return spec


def check_spec(spec: dict[str, Any], where: str = "image processor") -> None:
    if spec["do_resize"] and spec.get("size") is None:
        raise ClinclipError(f"{where}: do_resize is true but no size is given")
    if spec["do_resize"] and spec["resample"] not in RESAMPLE_MODES:
        name = RESAMPLE_NAMES.get(spec["resample"], spec["resample"])
        raise ClinclipError(f"{where}: resample {name!r} is not supported (nearest, bilinear, bicubic are)")
    if spec["do_center_crop"] and spec.get("crop_size") is None:
        raise ClinclipError(f"{where}: do_center_crop is true but no crop_size is given")
    if len(spec["image_mean"]) != 3 or len(spec["image_std"]) != 3 or min(spec["image_std"]) <= 0:
        raise ClinclipError(f"{where}: image_mean / image_std must be 3 numbers each, std > 0")


def load_processor_spec(directory: str | Path) -> dict[str, Any]:
    """The spec of a folder's ``preprocessor_config.json``, defaults resolved by ``AutoImageProcessor``."""
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(str(directory))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ClinclipError(f"{Path(directory) / 'preprocessor_config.json'}: not a usable image processor "
                            f"({err.__class__.__name__}: {str(err).strip().splitlines()[0]})") from None
    return processor_spec(processor, f"{Path(directory) / 'preprocessor_config.json'}")


def default_spec(kind: str, image_size: int, mean: Sequence[float], std: Sequence[float]) -> dict[str, Any]:
    """The published processor of a model type when a folder has none: CLIP resizes the shorter side and
    centre-crops a square, SigLIP resizes to the square; both bicubic."""
    spec = {"image_processor_type": "CLIPImageProcessor" if kind == "clip" else "SiglipImageProcessor",
            "do_resize": True, "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "image_mean": [float(v) for v in mean], "image_std": [float(v) for v in std]}
    if kind == "clip":
        spec.update(size={"shortest_edge": image_size}, do_center_crop=True,
                    crop_size={"height": image_size, "width": image_size})
    else:
        spec.update(size={"height": image_size, "width": image_size}, do_center_crop=False, crop_size=None)
    return spec


def output_size(spec: dict[str, Any]) -> tuple[int, int] | None:
    """(height, width) of the processed image, or None when it depends on the input (no crop, shortest edge)."""
    if spec["do_center_crop"]:
        return spec["crop_size"]["height"], spec["crop_size"]["width"]
    if spec["do_resize"] and "height" in spec["size"]:
        return spec["size"]["height"], spec["size"]["width"]
    return None


def resized_shape(height: int, width: int, size: dict[str, int]) -> tuple[int, int]:
    if "shortest_edge" not in size:
        return size["height"], size["width"]
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size["shortest_edge"], int(size["shortest_edge"] * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """transformers' centre crop of N×C×H×W: top = (H - h) // 2, zero padding (centred, rounded up) where the
    image is smaller than the crop."""
    h, w = x.shape[-2:]
    pad_h, pad_w = max(0, height - h), max(0, width - w)
    if pad_h or pad_w:
        top_pad, left_pad = math.ceil(pad_h / 2), math.ceil(pad_w / 2)
        x = F.pad(x, (left_pad, pad_w - left_pad, top_pad, pad_h - top_pad))
        h, w = x.shape[-2:]
    top, left = (h - height) // 2, (w - width) // 2
    return x[..., top:top + height, left:left + width]


class ImageProcessorTransform:
    """uint8 H×W grayscale (or a batch N×C×H×W of 8-bit values) -> what the model's image processor would
    give for the same image in RGB. Picklable (DataLoader workers)."""

    def __init__(self, spec: dict[str, Any]):
        self.spec = processor_spec(spec)
        self.mean = torch.tensor(self.spec["image_mean"]).view(1, 3, 1, 1)
        self.std = torch.tensor(self.spec["image_std"]).view(1, 3, 1, 1)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "ImageProcessorTransform":
        return cls(load_processor_spec(directory))

    @property
    def size(self) -> tuple[int, int] | None:
        return output_size(self.spec)

    def __repr__(self) -> str:
        s = self.spec
        resize = f"resize {s['size']} {RESAMPLE_NAMES[s['resample']]}" if s["do_resize"] else "no resize"
        crop = f", crop {s['crop_size']}" if s["do_center_crop"] else ""
        return f"ImageProcessorTransform({s['image_processor_type']}: {resize}{crop})"

    def batch(self, images: torch.Tensor) -> torch.Tensor:
        """N×C×H×W (C = 1 or 3) of 8-bit values (uint8 or float 0-255) -> N×3×h×w float."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ClinclipError(f"image processor: expected N×1×H×W or N×3×H×W images, got {tuple(images.shape)}")
        x = images.float()
        spec = self.spec
        if spec["do_resize"]:
            height, width = resized_shape(x.shape[-2], x.shape[-1], spec["size"])
            if (height, width) != tuple(x.shape[-2:]):
                mode = RESAMPLE_MODES[spec["resample"]]
                if mode == "nearest-exact":
                    x = F.interpolate(x, size=(height, width), mode=mode)
                else:
                    x = F.interpolate(x, size=(height, width), mode=mode, align_corners=False, antialias=True)
                x = x.round_().clamp_(0, 255)  # PIL resizes 8-bit images to 8-bit images
        if spec["do_center_crop"]:
            x = center_crop(x, spec["crop_size"]["height"], spec["crop_size"]["width"])
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if spec["do_rescale"]:
            x = x * spec["rescale_factor"]
        if spec["do_normalize"]:
            x = (x - self.mean) / self.std
        return x.contiguous()

    def __call__(self, image: np.ndarray | torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One image: uint8 H×W (or H×W×3, reduced to gray as clinclip loads radiographs) -> 3×h×w."""
        from clinclip.data.transforms import to_float_image

        return self.batch((to_float_image(image) * 255.0).round_())[0]
