"""Preprocessing as the model's authors defined it: a Hugging Face image processor honoured in full (resize
rule, kernel, crop, rescale, normalisation, non-square sizes), checked against ``AutoImageProcessor`` on the
same images, down to the embeddings of tiny saved CLIP / SigLIP models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from models_helpers import save_tiny_clip
from clinclip.data.processor import ImageProcessorTransform, load_processor_spec
from clinclip.errors import ClinclipError


def radiograph(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth gray image with structure at several scales (what a resize kernel acts on)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    image = 128 + 60 * np.sin(7 * xx + 3 * yy) + 40 * np.cos(13 * yy * (1 + xx)) + rng.normal(0, 12, (height, width))
    return image.clip(0, 255).astype(np.uint8)


IMAGES = [radiograph(97, 61, 0), radiograph(50, 83, 1), radiograph(40, 40, 2), radiograph(23, 30, 3)]


def hf_pixels(directory, images) -> torch.Tensor:
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(str(directory))
    return torch.stack([processor(images=Image.fromarray(im).convert("RGB"), return_tensors="pt")["pixel_values"][0]
                        for im in images])


def write_processor(directory, **settings):
    path = directory / "preprocessor_config.json"
    spec = json.loads(path.read_text())
    spec.update(settings)
    path.write_text(json.dumps(spec))


CASES = {
    # CLIP: shorter side to 40, centre crop 32 (the model sees the centre, not the whole image)
    "clip-shortest-edge-crop": ("clip", {"size": {"shortest_edge": 40}, "crop_size": {"height": 32, "width": 32}}),
    # SigLIP: straight to the square, bicubic
    "siglip-square": ("siglip", {}),
    # non-square size and the bilinear kernel
    "siglip-non-square-bilinear": ("siglip", {"size": {"height": 32, "width": 48}, "resample": 2}),
    # no rescale / no normalisation flags honoured
    "clip-flags-off": ("clip", {"do_rescale": False, "do_normalize": False}),
    # no resize: only the crop (with zero padding for the small image)
    "clip-no-resize": ("clip", {"do_resize": False}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_pixels_match_the_auto_image_processor(tmp_path, case):
    kind, settings = CASES[case]
    directory = save_tiny_clip(tmp_path / case, kind, image_size=32)
    write_processor(directory, **settings)
    transform = ImageProcessorTransform.from_pretrained(directory)
    expected = hf_pixels(directory, IMAGES)
    got = torch.stack([transform(im) for im in IMAGES])
    assert got.shape == expected.shape
    # one 8-bit level at most after the resize (PIL's fixed-point arithmetic vs float): 1/255 / std
    level = (1 / 255 if transform.spec["do_rescale"] else 1.0) / min(transform.spec["image_std"]) \
        if transform.spec["do_normalize"] else (1 / 255 if transform.spec["do_rescale"] else 1.0)
    assert (got - expected).abs().max().item() <= 1.01 * level
    assert (got - expected).abs().mean().item() < 0.2 * level  # nearly every pixel equal


def test_batches_equal_single_images(tmp_path):
    directory = save_tiny_clip(tmp_path / "clip", "clip", image_size=32)
    write_processor(directory, size={"shortest_edge": 40})
    transform = ImageProcessorTransform.from_pretrained(directory)
    same_size = [radiograph(97, 61, s) for s in range(4)]
    batch = torch.from_numpy(np.stack(same_size))[:, None]
    assert torch.allclose(transform.batch(batch), torch.stack([transform(im) for im in same_size]), atol=1e-6)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_embeddings_agree_with_the_hf_processor(tmp_path, kind):
    """Through clinclip's own loading path (load_encoder): embeddings at cosine >= 0.9999 to the model fed by
    AutoImageProcessor."""
    from transformers import AutoModel

    from clinclip.models import load_encoder

    directory = save_tiny_clip(tmp_path / kind, kind, image_size=32)
    if kind == "clip":
        write_processor(directory, size={"shortest_edge": 44}, crop_size={"height": 32, "width": 32})
    encoder = load_encoder(directory)
    ours = encoder.encode_images(torch.stack([encoder.preprocess(im) for im in IMAGES]))
    model = AutoModel.from_pretrained(str(directory)).eval()
    with torch.no_grad():
        out = model.get_image_features(pixel_values=hf_pixels(directory, IMAGES))
    theirs = torch.nn.functional.normalize(out if isinstance(out, torch.Tensor) else out.pooler_output, dim=-1)
    cosine = (ours * theirs).sum(-1)
    assert cosine.min().item() >= 0.9999, cosine


def test_the_old_resize_straight_to_the_crop_would_fail_this_check(tmp_path):
    """The check above can fail: resizing the whole image to the crop size (what clinclip did before) gives
    visibly different pixels from the processor's shorter-side resize + centre crop."""
    from clinclip.data.transforms import ImageTransform

    directory = save_tiny_clip(tmp_path / "clip", "clip", image_size=32)
    write_processor(directory, size={"shortest_edge": 48}, crop_size={"height": 32, "width": 32})
    spec = load_processor_spec(directory)
    squash = ImageTransform(32, mean=spec["image_mean"], std=spec["image_std"], resize_mode="squash")
    expected = hf_pixels(directory, IMAGES)
    assert (torch.stack([squash(im) for im in IMAGES]) - expected).abs().mean() > 0.1


def test_unsupported_settings_are_clear_errors(tmp_path):
    directory = save_tiny_clip(tmp_path / "clip", "clip", image_size=32)
    write_processor(directory, resample=1)  # lanczos
    with pytest.raises(ClinclipError, match="lanczos"):
        ImageProcessorTransform.from_pretrained(directory)
    with pytest.raises(ClinclipError, match="size"):
        ImageProcessorTransform({"do_resize": True, "size": {"longest_edge": 30}, "do_rescale": True,
                                 "do_normalize": True})
