"""ImageTransform: geometry, normalisation, seeded augmentation, CLAHE, input errors."""

import pickle

import numpy as np
import pytest
import torch

from clinclip.data.transforms import ImageTransform, clahe, random_resized_crop_box
from clinclip.errors import ClinclipError


def _ramp(height=80, width=120):
    return np.tile(np.linspace(0, 255, width).astype(np.uint8), (height, 1))


def test_eval_resizes_shorter_side_and_centre_crops():
    image = np.zeros((100, 300), np.uint8)
    image[:, 100:200] = 255  # only the centre third is bright: a centre crop sees all white
    out = ImageTransform(32, train=False, mean=(0, 0, 0), std=(1, 1, 1))(image)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])  # grayscale replicated
    assert out[:, :, 2:-2].min() > 0.95


def test_squash_keeps_the_whole_image_and_normalisation_applies():
    image = np.zeros((100, 300), np.uint8)
    image[:, 100:200] = 255
    out = ImageTransform(30, resize_mode="squash", mean=(0.5,) * 3, std=(0.5,) * 3)(image)
    assert out.shape == (3, 30, 30)
    assert out[0, :, 0].max() < -0.9 and out[0, :, 15].min() > 0.9  # black edges kept, white centre


def test_train_augmentation_is_seeded_and_varies():
    transform = ImageTransform(48, train=True, clahe_p=0.5)
    image = _ramp()
    a = transform(image, generator=torch.Generator().manual_seed(1))
    b = transform(image, generator=torch.Generator().manual_seed(1))
    c = transform(image, generator=torch.Generator().manual_seed(2))
    assert a.shape == (3, 48, 48)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_random_resized_crop_respects_scale():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        top, left, h, w = random_resized_crop_box(200, 100, (0.8, 1.0), (3 / 4, 4 / 3), g)
        assert 0 <= top and top + h <= 200 and 0 <= left and left + w <= 100
        assert h * w >= 0.75 * 200 * 100 or (h, w) == (133, 100)  # sampled crop or the ratio-bound fallback


def test_clahe_spreads_a_low_contrast_image():
    rng = np.random.default_rng(0)
    image = (100 + rng.integers(0, 20, (64, 64))).astype(np.float32) / 255
    out = clahe(torch.from_numpy(image)[None, None])
    assert out.shape == (1, 1, 64, 64)
    assert out.min() >= 0 and out.max() <= 1
    assert out.std() > 3 * torch.from_numpy(image).std()
    # monotone within a tile: brighter input never maps darker there
    flat_in, flat_out = torch.from_numpy(image)[:8, :8].flatten(), out[0, 0, :8, :8].flatten()
    order = flat_in.argsort()
    assert (flat_out[order].diff() >= -0.08).all()


@pytest.mark.parametrize("bad, message", [
    (np.zeros((10, 10), np.float32), "uint8"),
    (np.zeros((2, 10, 10), np.uint8), "H×W"),
    ([[0, 1]], "numpy"),
])
def test_bad_input_is_a_clear_error(bad, message):
    with pytest.raises(ClinclipError, match=message):
        ImageTransform(16)(bad)


def test_rgb_input_is_reduced_to_gray_and_transform_pickles():
    rgb = np.stack([_ramp()] * 3, axis=-1)
    transform = pickle.loads(pickle.dumps(ImageTransform(16)))
    assert torch.allclose(transform(rgb), transform(_ramp()))
