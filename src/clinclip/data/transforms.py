"""Image preprocessing and augmentation in torch (no torchvision): uint8 H×W grayscale -> float 3×S×S.

Evaluation: resize (shorter side to S, then centre crop S×S; or ``squash`` straight to S×S as SigLIP's
processor does), grayscale replicated to 3 channels, normalised by the model's mean/std.
Training (the CXR-CLIP recipe the paper presets follow): random resized crop (scale 0.8-1, aspect 3/4-4/3),
optional CLAHE (contrast-limited adaptive histogram equalisation, tile grid 8×8, clip limit 2, applied
with probability ``clahe_p``), light brightness/contrast jitter. ``BatchImageTransform`` applies the same
augmentation to a whole batch of equally sized images at once (a packed store's records), on the GPU when
the batch is there. Every random draw goes through an optional
``torch.Generator`` so augmentation is reproducible; without one the global torch RNG is used (which the
DataLoader seeds per worker).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from clinclip.errors import ClinclipError
from clinclip.manifest import RESIZE_MODES


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(high_exclusive: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(high_exclusive, (), generator=generator)) if high_exclusive > 1 else 0


def to_float_image(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 H×W (or H×W×1 / H×W×3, reduced to gray) -> float tensor 1×1×H×W in [0, 1]."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise ClinclipError(f"image transform: expected a numpy uint8 array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ClinclipError(f"image transform: expected dtype uint8 (load_image's output), got {image.dtype}")
    if image.ndim == 3 and image.shape[2] in (1, 3):
        image = image.mean(axis=2).round().astype(np.uint8) if image.shape[2] == 3 else image[..., 0]
    if image.ndim != 2 or min(image.shape) < 1:
        raise ClinclipError(f"image transform: expected an H×W grayscale array, got shape {image.shape}")
    return torch.from_numpy(np.ascontiguousarray(image)).float().div_(255.0)[None, None]


def resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize of N×C×H×W with antialiasing when shrinking (as PIL / torchvision do)."""
    if x.shape[-2:] == (height, width):
        return x
    shrinking = height < x.shape[-2] or width < x.shape[-1]
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=shrinking)


def resize_shorter_center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    x = resize(x, new_h, new_w)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return x[..., top:top + size, left:left + size]


def random_resized_crop_box(height: int, width: int, scale: Sequence[float], ratio: Sequence[float],
                            generator: torch.Generator | None) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a crop covering a random fraction ``scale`` of the area with aspect in ``ratio``
    (torchvision's algorithm: 10 tries, then the largest centred crop within the ratio bounds)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * _uniform(scale[0], scale[1], generator)
        aspect = math.exp(_uniform(log_ratio[0], log_ratio[1], generator))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return _randint(height - h + 1, generator), _randint(width - w + 1, generator), h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def clahe(x: torch.Tensor, clip_limit: float = 2.0, grid: int = 8) -> torch.Tensor:
    """Contrast-limited adaptive histogram equalisation of N×1×H×W images in [0, 1] (OpenCV's method:
    per-tile clipped histograms, redistributed excess, bilinear blending of the neighbouring tiles' maps),
    all images of the batch at once, on the batch's device."""
    n, _, height, width = x.shape
    device = x.device
    grid_h, grid_w = min(grid, height), min(grid, width)
    tile_h, tile_w = math.ceil(height / grid_h), math.ceil(width / grid_w)
    pad_h, pad_w = tile_h * grid_h - height, tile_w * grid_w - width
    levels = (x[:, 0] * 255).round().clamp(0, 255).long()  # N x H x W
    padded = F.pad(levels[:, None].float(), (0, pad_w, 0, pad_h), mode="reflect" if
                   (pad_h < height and pad_w < width) else "replicate")[:, 0].long()
    tiles = padded.reshape(n, grid_h, tile_h, grid_w, tile_w).permute(0, 1, 3, 2, 4).reshape(n * grid_h * grid_w, -1)
    offsets = torch.arange(n * grid_h * grid_w, device=device).unsqueeze(1) * 256
    hist = torch.bincount((tiles + offsets).flatten(), minlength=n * grid_h * grid_w * 256).float()
    hist = hist.reshape(n * grid_h * grid_w, 256)
    tile_pixels = tile_h * tile_w
    limit = max(1.0, clip_limit * tile_pixels / 256)
    excess = (hist - limit).clamp(min=0).sum(dim=1, keepdim=True)
    hist = hist.clamp(max=limit) + excess / 256
    lut = (hist.cumsum(dim=1) / tile_pixels).clamp(0, 1)  # (N * tiles, 256) mapping level -> [0, 1]
    # Bilinear blend between the 4 tile centres around each pixel.
    fy = (torch.arange(height, dtype=torch.float32, device=device) + 0.5) / tile_h - 0.5
    fx = (torch.arange(width, dtype=torch.float32, device=device) + 0.5) / tile_w - 0.5
    y0 = fy.floor().clamp(0, grid_h - 1).long()
    x0 = fx.floor().clamp(0, grid_w - 1).long()
    y1 = (y0 + 1).clamp(max=grid_h - 1)
    x1 = (x0 + 1).clamp(max=grid_w - 1)
    wy = (fy - y0.float()).clamp(0, 1)[:, None]
    wx = (fx - x0.float()).clamp(0, 1)[None, :]
    flat = lut.flatten()
    image_base = (torch.arange(n, device=device) * (grid_h * grid_w * 256))[:, None, None] + levels

    def value(ty: torch.Tensor, tx: torch.Tensor) -> torch.Tensor:
        return flat[(ty[:, None] * grid_w + tx[None, :]) * 256 + image_base]

    top = value(y0, x0) * (1 - wx) + value(y0, x1) * wx
    bottom = value(y1, x0) * (1 - wx) + value(y1, x1) * wx
    return (top * (1 - wy) + bottom * wy)[:, None]


class ImageTransform:
    """uint8 H×W grayscale array -> normalised float tensor 3×size×size. Picklable (DataLoader workers)."""

    def __init__(self, size: int, train: bool = False, mean: Sequence[float] = (0.5, 0.5, 0.5),
                 std: Sequence[float] = (0.5, 0.5, 0.5), resize_mode: str = "shorter_crop",
                 crop_scale: Sequence[float] = (0.8, 1.0), crop_ratio: Sequence[float] = (3 / 4, 4 / 3),
                 brightness: float = 0.1, contrast: float = 0.1, clahe_p: float = 0.5,
                 clahe_clip_limit: float = 2.0, clahe_grid: int = 8):
        if not isinstance(size, int) or size < 1:
            raise ClinclipError(f"image transform: size must be a positive integer, got {size!r}")
        if resize_mode not in RESIZE_MODES:
            raise ClinclipError(f"image transform: resize_mode {resize_mode!r}; allowed: {', '.join(RESIZE_MODES)}")
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise ClinclipError(f"image transform: mean/std must be 3 numbers each, std > 0; got {mean}, {std}")
        if not (0 < crop_scale[0] <= crop_scale[1] <= 1):
            raise ClinclipError(f"image transform: crop_scale must satisfy 0 < low <= high <= 1, got {crop_scale}")
        if not (0 <= clahe_p <= 1):
            raise ClinclipError(f"image transform: clahe_p must be in [0, 1], got {clahe_p}")
        self.size = size
        self.train = train
        self.mean = torch.tensor([float(m) for m in mean]).view(3, 1, 1)
        self.std = torch.tensor([float(s) for s in std]).view(3, 1, 1)
        self.resize_mode = resize_mode
        self.crop_scale = tuple(crop_scale)
        self.crop_ratio = tuple(crop_ratio)
        self.brightness = brightness
        self.contrast = contrast
        self.clahe_p = clahe_p
        self.clahe_clip_limit = clahe_clip_limit
        self.clahe_grid = clahe_grid

    def __repr__(self) -> str:
        extra = (f", crop_scale={self.crop_scale}, brightness={self.brightness}, contrast={self.contrast}, "
                 f"clahe_p={self.clahe_p}") if self.train else ""
        return f"ImageTransform(size={self.size}, train={self.train}, resize_mode={self.resize_mode!r}{extra})"

    def draw(self, height: int, width: int, generator: torch.Generator | None = None) -> "AugmentParams":
        """The random choices of one training sample, in a fixed order (crop box, CLAHE, brightness,
        contrast), so the per-image and the batched transforms draw the same values from the same seed."""
        top, left, h, w = random_resized_crop_box(height, width, self.crop_scale, self.crop_ratio, generator)
        use_clahe = self.clahe_p > 0 and _uniform(0, 1, generator) < self.clahe_p
        brightness = _uniform(1 - self.brightness, 1 + self.brightness, generator) if self.brightness > 0 else 1.0
        contrast = _uniform(1 - self.contrast, 1 + self.contrast, generator) if self.contrast > 0 else 1.0
        return AugmentParams((top, left, h, w), use_clahe, brightness, contrast)

    def __call__(self, image: np.ndarray, generator: torch.Generator | None = None) -> torch.Tensor:
        x = to_float_image(image)
        if self.train:
            p = self.draw(x.shape[-2], x.shape[-1], generator)
            top, left, h, w = p.box
            x = resize(x[..., top:top + h, left:left + w], self.size, self.size)
            if p.clahe:
                x = clahe(x, self.clahe_clip_limit, self.clahe_grid)
            x = _jitter(x, p.brightness, p.contrast)
        elif self.resize_mode == "squash":
            x = resize(x, self.size, self.size)
        else:
            x = resize_shorter_center_crop(x, self.size)
        x = x[0].expand(3, -1, -1)
        return ((x - self.mean) / self.std).contiguous()


class AugmentParams(NamedTuple):
    box: tuple[int, int, int, int]  # top, left, height, width of the crop
    clahe: bool
    brightness: float
    contrast: float


def _jitter(x: torch.Tensor, brightness, contrast) -> torch.Tensor:
    """Brightness and contrast factors (a number, or one per image as an N×1×1×1 tensor), clamped to [0, 1]."""
    x = x * brightness
    centre = x.mean(dim=(-3, -2, -1), keepdim=True)
    return ((x - centre) * contrast + centre).clamp(0, 1)


class BatchImageTransform:
    """The batched form of an :class:`ImageTransform` for images of one shape (a packed image store's
    records): uint8 N×H×W tensor (on any device) + one seed per image -> normalised float N×3×S×S on that
    device. Each image's random choices come from ``torch.Generator().manual_seed(seed)`` exactly as the
    per-image transform draws them; the crops are then resampled together (``grid_sample``, bilinear), CLAHE
    runs on the chosen images at once (unless ``clahe_in_store``: the images chosen for CLAHE were read from
    the store's CLAHE plane), and jitter and normalisation are one fused pass. Without antialiasing, so keep
    the stored size close to the crop size (256 for 224). When the three channels share mean and std the
    result is one channel expanded to three (a view), as the channels are equal anyway."""

    def __init__(self, transform: ImageTransform, clahe_in_store: bool = False):
        self.transform = transform
        self.clahe_in_store = clahe_in_store

    def __repr__(self) -> str:
        return f"BatchImageTransform({self.transform!r}, clahe_in_store={self.clahe_in_store})"

    def _normalise(self, x: torch.Tensor, scale: torch.Tensor | float, shift: torch.Tensor | float) -> torch.Tensor:
        """clamp(x * scale + shift, 0, 1), then (· - mean) / std per channel; in place where possible."""
        t = self.transform
        mean, std = t.mean.to(x.device), t.std.to(x.device)
        if bool((mean == mean[0]).all() and (std == std[0]).all()):
            m, sd = float(mean[0]), float(std[0])
            x = x.mul_(scale / sd).add_((shift - m) / sd).clamp_(-m / sd, (1 - m) / sd)
            return x.expand(-1, 3, -1, -1)
        x = x.mul_(scale).add_(shift).clamp_(0, 1)
        return (x.expand(-1, 3, -1, -1) - mean) / std

    def __call__(self, images: torch.Tensor, seeds: Sequence[int] | None = None) -> torch.Tensor:
        t = self.transform
        if images.dtype != torch.uint8 or images.dim() != 3:
            raise ClinclipError(f"batch image transform: expected a uint8 N×H×W tensor, got {images.dtype} "
                                f"{tuple(images.shape)}")
        n, height, width = images.shape
        device = images.device
        x = images[:, None].float()  # 0..255
        if not t.train:
            x = resize(x, t.size, t.size) if t.resize_mode == "squash" else resize_shorter_center_crop(x, t.size)
            return self._normalise(x.contiguous(), 1 / 255.0, 0.0)
        if seeds is None or len(seeds) != n:
            raise ClinclipError(f"batch image transform: training needs one seed per image ({n}), got "
                                f"{None if seeds is None else len(seeds)}")
        params = [t.draw(height, width, torch.Generator().manual_seed(int(s))) for s in seeds]
        boxes = torch.tensor([p.box for p in params], dtype=torch.float32, device=device)
        top, left, h, w = boxes.unbind(1)
        # Output pixel centre u in (0, 1) of the crop -> source coordinate -> grid_sample's [-1, 1] range.
        u = (torch.arange(t.size, dtype=torch.float32, device=device) + 0.5) / t.size
        gx = 2 * (left[:, None] + u[None] * w[:, None]) / width - 1
        gy = 2 * (top[:, None] + u[None] * h[:, None]) / height - 1
        grid = torch.empty(n, t.size, t.size, 2, device=device)  # filled in place: torch.stack is 3x slower
        grid[..., 0] = gx[:, None, :]
        grid[..., 1] = gy[:, :, None]
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        chosen = torch.tensor([p.clahe for p in params], device=device)
        if not self.clahe_in_store and bool(chosen.any()):
            x[chosen] = clahe(x[chosen] / 255.0, t.clahe_clip_limit, t.clahe_grid) * 255.0
        # Jitter (as _jitter) folded into one affine map: x*b*c + mean(x)*b*(1-c), then clamp and normalise.
        factors = torch.tensor([[p.brightness, p.contrast] for p in params], dtype=torch.float32, device=device)
        b, c = factors[:, 0].view(n, 1, 1, 1), factors[:, 1].view(n, 1, 1, 1)
        centre = x.mean(dim=(1, 2, 3), keepdim=True)
        return self._normalise(x, b * c / 255.0, centre * b * (1 - c) / 255.0)
