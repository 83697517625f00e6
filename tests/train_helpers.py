"""Helpers for the training tests: a tiny prepared manifest (real report pipeline, PNG images) and a model
even smaller than the ``tiny`` preset."""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPORTS = [
    "FINDINGS: Moderate cardiomegaly. Small left pleural effusion. No pneumothorax. IMPRESSION: Cardiomegaly.",
    "FINDINGS: The lungs are clear. No pleural effusion or pneumothorax. Heart size is normal. "
    "IMPRESSION: No acute cardiopulmonary process.",
    "FINDINGS: Right lower lobe consolidation concerning for pneumonia. No effusion. IMPRESSION: Pneumonia.",
    "FINDINGS: Right pneumothorax. Endotracheal tube in place. IMPRESSION: Right pneumothorax.",
    "FINDINGS: Pulmonary edema. Bilateral pleural effusions. IMPRESSION: Edema.",
    "FINDINGS: Left upper lobe nodule. IMPRESSION: Lung nodule.",
    "FINDINGS: Bibasilar atelectasis. No pneumothorax. IMPRESSION: Atelectasis.",
    "FINDINGS: Lungs are clear. IMPRESSION: Normal chest.",
]

# A model far smaller than the tiny preset (same code paths: Swin, BERT, GCN over MiniLM phrase vectors);
# dropout off so that runs can be compared number for number (DDP vs one process).
SMALL_MODEL = {
    "image.image_size": 32,
    "image.backbone_config.embed_dim": 16,
    "image.backbone_config.depths": [1, 1],
    "image.backbone_config.num_heads": [1, 2],
    "text.backbone_config.hidden_size": 32,
    "text.backbone_config.num_hidden_layers": 1,
    "text.backbone_config.num_attention_heads": 2,
    "text.backbone_config.intermediate_size": 64,
    "text.backbone_config.hidden_dropout_prob": 0.0,
    "text.backbone_config.attention_probs_dropout_prob": 0.0,
    "text.max_text_length": 48,
    "graph.hidden_dim": 32,
    "embed_dim": 32,
}


def small_overrides(manifest: Path, out_dir: Path, **extra) -> dict:
    """Overrides for a fast CPU run of the small model on ``manifest``."""
    values = {f"model.{k}": v for k, v in SMALL_MODEL.items()}
    values.update({"data.manifest": str(manifest), "out_dir": str(out_dir), "batch_size": 8, "steps": 4,
                   "lr": 1e-3, "warmup_steps": 0, "num_workers": 0, "log_every": 1, "save_every": 1000,
                   "progress": False, "tensorboard": False, "device": "cpu", "precision": "fp32",
                   "data.augment": False})
    values.update(extra)
    return values


def write_image(path: Path, kind: int, size: int = 40, seed: int = 0) -> None:
    """A grayscale PNG whose pattern depends on ``kind`` (so image and report can be matched)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    angle = kind * np.pi / len(REPORTS)
    wave = np.sin(2 * np.pi * (2 + kind % 3) * (x * np.cos(angle) + y * np.sin(angle)))
    image = 127 + 100 * wave + rng.normal(0, 8, size=(size, size))
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path)


def make_prepared_manifest(root: Path, n_rows: int = 16, corrupt: int = 0, missing: int = 0,
                           empty_reports: int = 0) -> Path:
    """``root/prepared.parquet`` made by the real report pipeline from REPORTS (cycled), with PNGs in
    ``root/images``. The last rows get a corrupt image file, a missing image file, or an empty report."""
    import pandas as pd

    from clinclip.text.prepare import prepare_corpus

    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    reports, paths = [], []
    for i in range(n_rows):
        kind = i % len(REPORTS)
        path = images / f"img{i:03d}.png"
        write_image(path, kind, seed=i)
        reports.append(REPORTS[kind])
        paths.append(f"images/{path.name}")  # relative to the manifest's folder
    for i in range(corrupt):
        path = images / f"corrupt{i}.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
        reports.append(REPORTS[i % len(REPORTS)])
        paths.append(f"images/{path.name}")
    for i in range(missing):
        reports.append(REPORTS[(i + 1) % len(REPORTS)])
        paths.append(f"images/missing{i}.png")
    for i in range(empty_reports):
        path = images / f"empty{i}.png"
        write_image(path, 0, seed=100 + i)
        reports.append("")
        paths.append(f"images/{path.name}")
    frame = pd.DataFrame({"image_path": paths, "split": "train", "report": reports,
                          "study_id": [str(i) for i in range(len(paths))]})
    prepared = prepare_corpus(frame, seed=0)
    out = root / "prepared.parquet"
    prepared.to_parquet(out)
    return out
