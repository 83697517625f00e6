"""Training (docs/training.md): ``TrainConfig`` (typed, presets + ``key=value`` overrides), the manifest
dataset, and ``run_training`` for one process or ``torchrun`` DDP, with resumable checkpoints.

    from clinclip.train import TrainConfig, run_training
    cfg = TrainConfig.build("clip-ng-dtcg", ["model=tiny", "data.manifest=prepared.parquet", "steps=200"])
    result = run_training(cfg)   # TrainResult(model_dir, log_path, seconds, history, ...)

Torch is imported on first use of ``run_training`` / ``TrainResult``, so the config stays cheap to import.
"""

from __future__ import annotations

from clinclip.lazy import lazy_getattr
from clinclip.train.config import DataConfig, TrainConfig, list_training_presets

__all__ = ["DataConfig", "TrainConfig", "TrainResult", "list_training_presets", "run_training"]


__getattr__ = lazy_getattr(__name__, {"run_training": "clinclip.train.loop", "TrainResult": "clinclip.train.loop"})
