"""Rendering a radiograph-like frontal chest image from a study's ground truth.

The picture is built as a density map (0 air .. ~1 soft tissue, more for bone and metal) on a grid of
normalised coordinates (x to the viewer's right = the patient's left, y downwards, both in [-1, 1]),
then turned into a grayscale X-ray (dense = bright) with exposure, noise and blur. Anatomy (habitus,
rotation, inspiration, heart size within normal, exposure) is drawn from the study's anatomy stream;
each present finding adds its own layer from its own stream, so toggling one finding changes that
finding's pixels only (bar shared non-linear exposure), and an absent finding leaves no trace.

Visible signs, one per finding: heart width (Cardiomegaly), upper mediastinal width (Enlarged
Cardiomediastinum), basal meniscus (Pleural Effusion), lucent apex without lung markings behind a
pleural line (Pneumothorax), dense lobar opacity (Consolidation), patchy multifocal opacity (Pneumonia),
hazy ill-defined opacity (Lung Opacity), perihilar haze (Edema), round nodules (Lung Lesion), linear
plate-like bands (Atelectasis), bright tubes/leads/generator (Support Devices), a rib discontinuity
(Fracture), a lateral pleural band (Pleural Other).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from clinclip.observations import OBSERVATIONS
from clinclip.phantom.studies import STREAM_ANATOMY, STREAM_FINDING, StudySpec, study_rng


@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    return xx, yy


def _soft(signed_distance: np.ndarray, width: float) -> np.ndarray:
    """A soft mask: 1 inside (negative distance), 0 outside, a smooth edge ``width`` wide."""
    return 1.0 / (1.0 + np.exp(np.clip(signed_distance / width, -30, 30)))


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Zero-mean, unit-variance, spatially correlated noise (correlation length ~ sigma pixels)."""
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), sigma, mode="wrap")
    return field / (field.std() + 1e-6)


def _segment(xx, yy, x0, y0, x1, y1, width: float) -> np.ndarray:
    """A soft line segment from (x0, y0) to (x1, y1)."""
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / (dx * dx + dy * dy + 1e-9), 0.0, 1.0)
    dist = np.hypot(xx - (x0 + t * dx), yy - (y0 + t * dy))
    return np.exp(-((dist / width) ** 2))


def _polyline(xx, yy, points, width: float) -> np.ndarray:
    out = np.zeros_like(xx)
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        out = np.maximum(out, _segment(xx, yy, x0, y0, x1, y1, width))
    return out


@dataclass
class Anatomy:
    """Per-study anatomy; the geometry that findings refer to."""

    cx: float  # midline
    lung_outer: float  # lateral extent of each lung from the midline
    apex: float  # y of the lung apices
    base: float  # y of the costophrenic angles
    heart_half_width: float
    heart_cy: float
    mediastinum_half_width: float
    angle: float  # patient rotation (radians), applied to the grid


def _anatomy(rng: np.random.Generator, spec: StudySpec) -> Anatomy:
    lung_outer = float(rng.uniform(0.66, 0.8))
    ctr = float(rng.uniform(0.38, 0.47))  # normal cardiothoracic ratio
    mediastinum = float(rng.uniform(0.085, 0.11))
    # Drawn unconditionally, so that a finding's presence never shifts the other anatomy draws.
    heart_jitter, mediastinum_jitter = float(rng.uniform(0, 0.03)), float(rng.uniform(0, 0.02))
    if "Cardiomegaly" in spec.present:
        ctr = (0.53, 0.58, 0.64)[spec.attrs["Cardiomegaly"]["severity"] - 1] + heart_jitter
    if "Enlarged Cardiomediastinum" in spec.present:
        mediastinum = (0.15, 0.18, 0.22)[spec.attrs["Enlarged Cardiomediastinum"]["severity"] - 1] + mediastinum_jitter
    return Anatomy(
        cx=float(rng.normal(0.0, 0.03)),
        lung_outer=lung_outer,
        apex=float(rng.uniform(-0.8, -0.68)),
        base=float(rng.uniform(0.4, 0.55)),
        heart_half_width=ctr * lung_outer,
        heart_cy=float(rng.uniform(0.28, 0.36)),
        mediastinum_half_width=mediastinum,
        angle=float(rng.normal(0.0, 0.03)),
    )


LUNG_INNER = 0.06  # medial edge of the lung fields from the midline (the mediastinum covers it)


def _lateral_wall(yy: np.ndarray, a: Anatomy) -> np.ndarray:
    """Distance of the lateral lung wall from the midline at each height: curving in at the apex."""
    t = np.clip((yy - a.apex) / (a.base - a.apex), 0.0, 1.0)
    return LUNG_INNER + (a.lung_outer - LUNG_INNER) * np.sqrt(np.clip(t * 1.6, 0, 1)) * (1.0 - 0.08 * t)


def _lung_masks(xx, yy, a: Anatomy) -> dict[str, np.ndarray]:
    """Soft masks of the right (viewer's left, x < 0) and left lung fields."""
    masks = {}
    lateral = _lateral_wall(yy, a)
    for side, sign in (("right", -1.0), ("left", 1.0)):
        u = sign * (xx - a.cx)  # distance from the midline towards this lung's lateral wall
        inner, outer = LUNG_INNER, a.lung_outer
        # The dome of the diaphragm is higher medially, and higher on the right (the liver).
        dome = a.base - 0.13 * np.clip(1.0 - (u - inner) / (outer - inner), 0, 1) ** 1.5 - (0.04 if side == "right" else 0.0)
        inside = np.maximum.reduce([u - lateral, inner - u, a.apex - yy, yy - dome])
        masks[side] = _soft(inside, 0.012)
    return masks


def _heart_and_mediastinum(xx, yy, a: Anatomy) -> np.ndarray:
    hw = a.heart_half_width
    # The heart sits left of the midline (viewer's right): ~1/3 to the right of midline, 2/3 to the left.
    hx = a.cx + 0.33 * hw
    heart = _soft(np.hypot((xx - hx) / hw, (yy - a.heart_cy) / 0.27) - 1.0, 0.04)
    upper = (yy > -0.85) & (yy < a.heart_cy)
    mediastinum = _soft(np.abs(xx - a.cx) - a.mediastinum_half_width, 0.012) * upper
    return np.maximum(heart, mediastinum.astype(np.float32))


def _ribs(xx, yy, a: Anatomy, fracture: dict | None) -> np.ndarray:
    """Posterior rib arcs (9 a side, one periodic pattern); a fracture breaks one rib: gap and step."""
    spacing = (a.base - a.apex + 0.05) / 9.0
    out = np.zeros_like(xx)
    for side, sign in (("right", -1.0), ("left", 1.0)):
        u = sign * (xx - a.cx)
        # Ribs slope down laterally from the spine: every arc is the first one shifted by k spacings.
        offset = a.apex + 0.02 + 0.22 * ((u - 0.1) / a.lung_outer) ** 2 - 0.1 * (u / a.lung_outer)
        phase = (yy - offset) / spacing
        k = np.round(phase)
        dist = (phase - k) * spacing
        if fracture is not None and fracture["side"] == side:
            # Lateral to the break the rib is displaced downwards by a step; at the break, a gap.
            this_rib = k == fracture["rib"] - 1
            break_at = fracture["at"] * a.lung_outer
            lateral = this_rib & (u > break_at)
            dist = np.where(lateral, dist - 0.06, dist)
            dist = np.where(this_rib & (np.abs(u - break_at) < 0.05), 1.0, dist)
        valid = (k >= 0) & (k <= 8) & (u > 0.05) & (u < a.lung_outer + 0.08)
        out = np.maximum(out, np.exp(-((dist / 0.02) ** 2)) * valid)
    return out


def _opacity_zone(xx, yy, a: Anatomy, side: str, lobe: int) -> tuple[float, float]:
    """Centre of an upper (0), middle (1) or lower (2) zone of one lung."""
    sign = -1.0 if side == "right" else 1.0
    y = a.apex + (a.base - a.apex) * (0.25, 0.55, 0.8)[lobe]
    return a.cx + sign * 0.55 * a.lung_outer, y


def _finding_layer(name: str, attrs: dict, rng: np.random.Generator, xx, yy, a: Anatomy, lungs: dict,
                   size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Density added by a finding, and (pneumothorax only) a mask where lung markings vanish."""
    sev = attrs.get("severity", 1)
    sides = ("right", "left") if attrs.get("side") == "bilateral" else (attrs.get("side"),)
    add = np.zeros_like(xx)
    if name == "Pleural Effusion":
        for side in sides:
            sign = -1.0 if side == "right" else 1.0
            u = sign * (xx - a.cx)
            height = (0.13, 0.24, 0.38)[sev - 1] * (a.base - a.apex) + rng.uniform(-0.02, 0.02)
            # Meniscus: the fluid line climbs towards the lateral wall.
            level = a.base - height - 0.12 * np.clip(u / a.lung_outer, 0, 1) ** 2
            add += 0.42 * _soft(level - yy, 0.02) * lungs[side]
    elif name == "Pneumothorax":
        side = sides[0]
        sign = -1.0 if side == "right" else 1.0
        u = sign * (xx - a.cx)
        depth = (0.16, 0.24, 0.33)[sev - 1]
        # The collapsed lung edge runs parallel to the apical/lateral wall, ``depth`` inside it.
        t = np.clip((yy - a.apex) / (a.base - a.apex), 0, 1)
        apical_band = (yy < a.apex + (a.base - a.apex) * (0.35 + 0.25 * sev / 3))
        from_wall = np.minimum(_lateral_wall(yy, a) - u, (yy - a.apex) * 1.2)
        space = (_soft(from_wall - depth, 0.01) * apical_band * lungs[side]).astype(np.float32)
        line = np.exp(-(((from_wall - depth) / 0.008) ** 2)) * apical_band * lungs[side] * (t < 0.7)
        add += -0.15 * space + 0.3 * line
        return add, space
    elif name in ("Consolidation", "Pneumonia", "Lung Opacity"):
        side, lobe = attrs["side"], attrs["lobe"]
        x0, y0 = _opacity_zone(xx, yy, a, side, lobe)
        scale = (0.16, 0.2, 0.25)[sev - 1]
        if name == "Consolidation":  # dense, well-defined lobar opacity
            blob = _soft(np.hypot((xx - x0) / (scale * 1.2), (yy - y0) / scale) - 1.0 + 0.35 * _smooth_noise(rng, size, 5), 0.05)
            add += 0.3 * blob * lungs[side]
        elif name == "Pneumonia":  # patchy, multifocal
            envelope = np.exp(-(((xx - x0) / (scale * 1.6)) ** 2 + ((yy - y0) / (scale * 1.4)) ** 2))
            patches = np.clip(_smooth_noise(rng, size, 2.5) + 0.3, 0, None)
            add += 0.22 * patches * envelope * lungs[side]
        else:  # hazy, ill-defined
            envelope = np.exp(-(((xx - x0) / (scale * 1.4)) ** 2 + ((yy - y0) / (scale * 1.3)) ** 2))
            add += 0.2 * envelope * (1 + 0.3 * _smooth_noise(rng, size, 8)) * lungs[side]
    elif name == "Edema":
        hilum_y = a.apex + 0.5 * (a.base - a.apex)
        for side, sign in (("right", -1.0), ("left", 1.0)):
            hx = a.cx + sign * 0.2
            haze = np.exp(-(((xx - hx) / 0.3) ** 2 + ((yy - hilum_y) / 0.38) ** 2))
            add += (0.12, 0.2, 0.28)[sev - 1] * haze * (1 + 0.25 * _smooth_noise(rng, size, 3)) * lungs[side]
    elif name == "Lung Lesion":
        side = sides[0]
        sign = -1.0 if side == "right" else 1.0
        radius = (0.06, 0.08, 0.12)[sev - 1]
        for _ in range(attrs.get("count", 1)):
            u = rng.uniform(0.25, 0.8) * a.lung_outer
            y = rng.uniform(a.apex + 0.2, a.base - 0.2)
            r = radius * rng.uniform(0.8, 1.2)
            add += 0.38 * _soft(np.hypot(xx - (a.cx + sign * u), yy - y) - r, 0.008)
    elif name == "Atelectasis":
        for side in sides:
            sign = -1.0 if side == "right" else 1.0
            for _ in range(1 + (sev > 1)):
                y = a.base - rng.uniform(0.1, 0.22)
                u0, u1 = rng.uniform(0.15, 0.3), rng.uniform(0.5, 0.7)
                tilt = rng.uniform(-0.06, 0.06)
                band = _segment(xx, yy, a.cx + sign * u0 * a.lung_outer, y, a.cx + sign * u1 * a.lung_outer, y + tilt,
                                0.018 + 0.006 * sev)
                add += 0.45 * band * lungs[side]
    elif name == "Pleural Other":
        side = sides[0]
        sign = -1.0 if side == "right" else 1.0
        u = sign * (xx - a.cx)
        y_mid = (a.apex + a.base) / 2
        # A band along the lateral chest wall (thickening), strongest mid-lung.
        extent = np.exp(-(((yy - y_mid) / 0.45) ** 2))
        thickness = (0.05, 0.07, 0.09)[sev - 1]
        add += 0.35 * _soft(_lateral_wall(yy, a) - thickness - u, 0.01) * lungs[side] * extent
    elif name == "Support Devices":
        kinds = attrs["kinds"]
        carina_y = a.apex + 0.42 * (a.base - a.apex)
        if "endotracheal tube" in kinds:  # two parallel walls of a tube in the trachea
            tip = carina_y - rng.uniform(0.08, 0.15)
            for off in (-0.018, 0.018):
                add += 0.9 * _segment(xx, yy, a.cx + off, -1.0, a.cx + off, tip, 0.02)
        if "enteric tube" in kinds:  # down the oesophagus, curving into the stomach
            pts = [(a.cx + 0.03, -1.0), (a.cx + 0.03, a.base), (a.cx + 0.2, a.base + 0.18), (a.cx + 0.32, a.base + 0.15)]
            add += 0.8 * _polyline(xx, yy, pts, 0.024)
        if "central venous catheter" in kinds:  # right internal jugular to the SVC
            pts = [(a.cx - 0.28, -1.0), (a.cx - 0.16, a.apex + 0.05), (a.cx - 0.07, carina_y + 0.05)]
            add += 0.8 * _polyline(xx, yy, pts, 0.024)
        if "pacemaker" in kinds:  # generator in the left upper chest, leads to the heart
            gx, gy = a.cx + 0.55, a.apex + 0.05
            add += 1.0 * _soft(np.maximum(np.abs(xx - gx) - 0.09, np.abs(yy - gy) - 0.055), 0.008)
            pts = [(gx, gy), (a.cx + 0.15, a.apex + 0.1), (a.cx - 0.02, a.heart_cy - 0.05), (a.cx + 0.15, a.heart_cy + 0.08)]
            add += 0.8 * _polyline(xx, yy, pts, 0.02)
    elif name in ("Fracture", "Cardiomegaly", "Enlarged Cardiomediastinum"):
        pass  # drawn through the anatomy (rib break, heart and mediastinum sizes)
    else:
        raise ValueError(f"no renderer for {name!r}")
    return add, None


def render_image(spec: StudySpec, seed: int, size: int) -> np.ndarray:
    """The uint8 size×size frontal radiograph of ``spec`` (a function of its true findings and the seed)."""
    xx0, yy0 = _grid(size)
    arng = study_rng(seed, spec.index, STREAM_ANATOMY)
    a = _anatomy(arng, spec)
    cos, sin = np.cos(a.angle), np.sin(a.angle)
    xx = (cos * xx0 - sin * yy0).astype(np.float32)
    yy = (sin * xx0 + cos * yy0).astype(np.float32)

    # Body: soft tissue of the torso (habitus), shoulders, and the subdiaphragmatic organs.
    torso_half = a.lung_outer + float(arng.uniform(0.1, 0.2))
    body = _soft(np.abs(xx - a.cx) - torso_half * (1 - 0.25 * np.clip(-yy - 0.6, 0, 1)), 0.03)
    density = (0.5 + 0.05 * arng.standard_normal()) * body
    lungs = _lung_masks(xx, yy, a)
    lung = np.maximum(lungs["right"], lungs["left"])
    cardiac = _heart_and_mediastinum(xx, yy, a)
    for side in lungs:
        lungs[side] = lungs[side] * (1 - cardiac)
    lung = lung * (1 - cardiac)
    # Lungs are darker at the bases (less overlying soft tissue) than at the apices.
    lung_depth = 0.3 + 0.08 * np.clip((yy - a.apex) / (a.base - a.apex), 0, 1)
    density = density - lung_depth * lung + 0.12 * cardiac
    # Spine and clavicles.
    density += 0.12 * np.exp(-(((xx - a.cx) / 0.06) ** 2)) * body
    for sign in (-1.0, 1.0):
        density += 0.14 * _segment(xx, yy, a.cx + sign * 0.12, a.apex + 0.02, a.cx + sign * 0.7, a.apex - 0.1, 0.022)
    fracture = None
    if "Fracture" in spec.present:
        frng = study_rng(seed, spec.index, STREAM_FINDING, OBSERVATIONS.index("Fracture"))
        fracture = dict(spec.attrs["Fracture"], at=float(frng.uniform(0.4, 0.8)))
    density += float(arng.uniform(0.07, 0.1)) * _ribs(xx, yy, a, fracture)

    # Findings (each from its own stream); pneumothorax takes the markings away from its space.
    no_markings = np.zeros_like(xx)
    for name in spec.present:
        frng = study_rng(seed, spec.index, STREAM_FINDING, OBSERVATIONS.index(name))
        layer, clear = _finding_layer(name, spec.attrs[name], frng, xx, yy, a, lungs, size)
        density += layer
        if clear is not None:
            no_markings = np.maximum(no_markings, clear)

    # Lung markings: vessels fanning out from the hila, fading towards the periphery.
    hilum_dist = np.hypot(np.abs(xx - a.cx) - 0.2, (yy - (a.apex + 0.5 * (a.base - a.apex))) * 0.8)
    markings = np.clip(_smooth_noise(arng, size, 1.2), 0, None) * np.exp(-hilum_dist / 0.45)
    density += 0.09 * markings * lung * (1 - no_markings)

    # Exposure: X-ray brightness with a per-study gain, gamma and quantum noise, then a slight blur.
    gain = float(arng.uniform(0.92, 1.08))
    gamma = float(arng.uniform(0.9, 1.1))
    img = np.clip(0.05 + gain * density * 0.95, 0, 1) ** gamma
    img = img + float(arng.uniform(0.012, 0.028)) * arng.standard_normal(img.shape).astype(np.float32)
    img = ndimage.gaussian_filter(img, 0.6)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)
