"""Training (SPEC.md section 5): ``TrainConfig`` (typed, presets + ``key=value`` overrides), the manifest
dataset, and ``run_training`` for one process or ``torchrun`` DDP, with resumable checkpoints.

    from clinclip.train import TrainConfig, run_training
    cfg = TrainConfig.build("clip-ng-dtcg", ["model=tiny", "data.manifest=prepared.parquet", "steps=200"])
    result = run_training(cfg)   # TrainResult(model_dir, log_path, seconds, history, ...)

Torch is imported on first use of ``run_training`` / ``TrainResult``, so the config stays cheap to import.
"""

from __future__ import annotations

from typing import Any

from clinclip.train.config import DataConfig, TrainConfig, list_training_presets

__all__ = ["DataConfig", "TrainConfig", "TrainResult", "list_training_presets", "run_training"]


def __getattr__(name: str) -> Any:
    if name in ("run_training", "TrainResult"):
        from clinclip.train import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'clinclip.train' has no attribute {name!r}")
