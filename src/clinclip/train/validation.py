"""Validation during training (``validate_every``): the loss on the validate split and the paper's headline
checks on it, computed on rank 0 with the model being trained.

- ``val_loss``: the training loss (the run's variant) over batches of ``batch_size`` validate rows, with the
  evaluation transform (no augmentation), averaged over the batches.
- ``cxr_align_a`` / ``cxr_align_b``: CXR-Align tasks A (report over its negation) and B (report over the report
  with the finding removed) on triplets built once from the validate rows (``evaluate.cxr_align``).
- ``zero_shot_auc``: mean AUROC of the 14 CheXpert observations, prompts ``chexpert14``
  (``evaluate.classification.zero_shot``).

A metric that cannot be computed on this split (no abnormal study for CXR-Align, a class without both
labels) is left out of the row and named once under ``unavailable``. Only the validate split is read.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from clinclip.errors import ClinclipError
from clinclip.evaluate.classification import zero_shot
from clinclip.evaluate.cxr_align import build_benchmark, score_benchmark
from clinclip.evaluate.embeddings import EmbeddingStore
from clinclip.evaluate.prompts import load_prompts
from clinclip.losses import ClinClipLoss
from clinclip.manifest import drop_skipped, read_manifest, select_split
from clinclip.models.interface import VisionLanguageEncoder
from clinclip.train.data import ManifestDataset, TrainCollator, load_training_rows, store_batch_transform


class LiveEncoder(VisionLanguageEncoder):
    """The model being trained seen through the evaluation interface, without freezing or moving it."""

    def __init__(self, model, autocast_dtype: torch.dtype | None = None):
        self.model = model
        self.name = "training model"
        self.device = model.device
        self.image_size = model.config.image.image_size
        self.transform = model.image_transform(train=False)
        self.text_model = model.text_model
        self.tokenizer = model.tokenizer
        self._embed_dim = model.config.embed_dim
        self.autocast_dtype = autocast_dtype

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype or torch.float32,
                              enabled=self.autocast_dtype is not None)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        return self.transform(image)

    def image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.model.image_features(pixel_values).float()

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.model.tokenize(texts)

    def embed_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        with self._autocast():
            return self.model.text_features(input_ids, attention_mask).float()


class Validator:
    """Built once (rows, CXR-Align triplets, prompts); ``run(model)`` returns the metrics of that model."""

    def __init__(self, cfg, loss_cfg, model, ctx):
        manifest = cfg.require_manifest()
        split = cfg.data.validate_split
        self.cfg = cfg
        self.ctx = ctx
        self.manifest = manifest
        self.rows = load_training_rows(manifest, split, loss_cfg.needed_inputs(), cfg.data.image_root,
                                       cfg.data.validate_max_rows)
        if len(self.rows) == 0:
            raise ClinclipError(f"{manifest}: validate_every is set but split {split!r} has no usable row "
                                f"(excluded: {dict(self.rows.excluded)}); set data.validate_split")
        self.loss_fn = ClinClipLoss(loss_cfg)  # one process: the validation batch is all here
        self.unavailable: dict[str, str] = {}
        frame, _ = drop_skipped(select_split(read_manifest(manifest, cfg.data.image_root), split, manifest))
        self.frame = frame.head(cfg.data.validate_max_rows) if cfg.data.validate_max_rows else frame
        self.benchmark = None
        try:
            self.benchmark, _ = build_benchmark(self.frame, seed=cfg.seed, manifest=manifest)
            if not any(self.benchmark.values()):
                self.unavailable["cxr_align"] = "no abnormal study of the split gave a hard negative"
                self.benchmark = None
        except ClinclipError as err:
            self.unavailable["cxr_align"] = str(err)
        self.prompts = load_prompts("chexpert14")

    def _loader(self, model):
        transform = model.image_transform(train=False)
        batch_transform = store_batch_transform(self.rows.image_paths, transform, verify=False)
        dataset = ManifestDataset(self.rows, transform, seed=self.cfg.seed, batched=batch_transform is not None)
        batch = min(self.cfg.batch_size, len(self.rows))
        workers = self.cfg.num_workers if self.cfg.num_workers is not None else 0
        return torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=False, drop_last=True,
                                           num_workers=workers, collate_fn=TrainCollator.for_model(model, batch_transform))

    @torch.no_grad()
    def validation_loss(self, model, autocast_dtype) -> float:
        device = model.device
        needs = set(self.loss_fn.cfg.needed_inputs())
        losses = []
        for batch in self._loader(model):
            if batch["indices"].numel() < 2:
                continue
            inputs = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()
                      if k not in ("skipped", "indices", "labels", "neg_labels")}
            with torch.autocast(device_type=device.type, dtype=autocast_dtype or torch.float32,
                                enabled=autocast_dtype is not None):
                outputs = model(inputs)
            outputs = {k: (v.float() if torch.is_tensor(v) else v) for k, v in outputs.items()}
            labels = batch["labels"].to(device) if "labels" in needs else None
            neg_labels = batch["neg_labels"].to(device) if "neg_labels" in needs else None
            losses.append(float(self.loss_fn(outputs, labels, neg_labels)["loss"]))
        return float(np.mean(losses)) if losses else float("nan")

    def run(self, model, autocast_dtype: torch.dtype | None = None) -> dict[str, Any]:
        metrics: dict[str, Any] = {"val_loss": self.validation_loss(model, autocast_dtype), "rows": len(self.rows)}
        store = EmbeddingStore(LiveEncoder(model, autocast_dtype), "training", cache_dir=None,
                               batch_size=min(64, self.cfg.batch_size), progress=False,
                               num_workers=self.cfg.num_workers or 0)
        if self.benchmark is not None:
            result = score_benchmark(store, self.benchmark, self.frame, self.manifest)
            metrics.update(cxr_align_a=result["metrics"]["A"], cxr_align_b=result["metrics"]["B"],
                           cxr_align_n=result["metrics"]["n"])
        try:
            result = zero_shot(store, self.frame, self.prompts, self.manifest)
            auc = result["metrics"]["auc"]
            if np.isfinite(auc):
                metrics["zero_shot_auc"] = float(auc)
            else:
                self.unavailable["zero_shot_auc"] = "no observation has both positive and negative labels"
        except ClinclipError as err:
            self.unavailable["zero_shot_auc"] = str(err)
        if self.unavailable:
            metrics["unavailable"] = dict(self.unavailable)
        return metrics
