"""The training loop: ``run_training(TrainConfig) -> TrainResult``, for one process or under ``torchrun``.

AdamW (no weight decay on biases, norm weights and the logit scale), linear warmup then cosine decay, bf16
autocast on GPUs (fp16 with a gradient scaler on GPUs without bf16), gradient clipping, fixed seeds; a JSON
line per logged step in ``log.jsonl`` (and TensorBoard events when tensorboard is installed, W&B when
enabled); atomic checkpoints every ``save_every`` steps and at the end (the newest ``keep_checkpoints``
kept); ``resume`` continues from ``checkpoints/last.pt`` so that the losses are those of an uninterrupted
run. SIGTERM / SIGUSR1 (a cluster's preemption notice) write a checkpoint at the end of the current step and
stop cleanly. Every ``validate_every`` steps the validate split is scored (loss, CXR-Align A/B, mean zero-shot
AUC) and the best model by ``best_metric`` is kept in ``best_model/``. ``accum_steps`` > 1 splits each
batch into micro-batches whose features are cached without gradient and recomputed one at a time with it
(open_clip's ``--accum-freq``), so the loss, its soft labels and negatives span the whole batch.
Under DDP only rank 0 logs and saves; the loss gathers the global batch itself (``ClinClipLoss``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from clinclip.errors import ClinclipError
from clinclip.files import parse_mapping
from clinclip.losses import ClinClipLoss
from clinclip.models import factory
from clinclip.system import available_cpus
from clinclip.train.checkpoint import (capture_rng_state, checkpoint_path, keep_newest, load_checkpoint,
                                       restore_rng_state, save_checkpoint)
from clinclip.train.config import BEST_METRICS, CONFIG_FILE, TrainConfig
from clinclip.train.data import (ManifestDataset, ResumableDistributedSampler, SkippedImages, TrainCollator,
                                 load_training_rows, store_batch_transform, summarise_skipped)
from clinclip.train.distributed import DistributedContext, init_distributed
from clinclip.train.validation import Validator

LOG_FILE = "log.jsonl"
MODEL_DIR = "model"
SUMMARY_FILE = "summary.json"
# Fields that may change between a run and its resume (they do not change the trajectory of the losses,
# except steps/epochs which extend or shorten the schedule; a warning is printed for those).
RESUME_FREE = {"out_dir", "num_workers", "log_every", "save_every", "resume", "progress", "tensorboard",
               "device", "keep_checkpoints", "validate_every", "best_metric", "wandb", "wandb_project"}
BEST_MODEL_DIR = "best_model"
BEST_FILE = "best.json"
STOP_SIGNALS = ("SIGTERM", "SIGUSR1")
RESUME_SCHEDULE = {"steps", "epochs"}


@dataclass
class TrainResult:
    model_dir: Path  # save_pretrained directory of the final model
    log_path: Path  # log.jsonl
    seconds: float  # wall time of this call
    history: list[dict[str, Any]] = field(default_factory=list)  # the logged rows (rank 0)
    checkpoint: Path | None = None
    steps: int = 0
    summary: dict[str, Any] = field(default_factory=dict)  # excluded rows / skipped images by reason
    stopped_by: str | None = None  # "SIGTERM" / "SIGUSR1" when a signal stopped the run (checkpoint written)
    validations: list[dict[str, Any]] = field(default_factory=list)  # the validation rows logged (rank 0)


StepCallback = Callable[[dict[str, Any]], None]


def run_training(cfg: TrainConfig, step_callback: StepCallback | None = None) -> TrainResult:
    """Train as configured. ``step_callback(record)`` is called on every rank after each optimisation step
    with ``{"step", "epoch", "loss", ...}`` (progress reporting; raising stops training)."""
    cfg = cfg.validate()
    ctx = init_distributed(cfg.device)
    try:
        return _Trainer(cfg, ctx, step_callback).run()
    finally:
        ctx.close()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for fp32. fp16 is trained with a gradient scaler (see ``_Trainer``)."""
    if precision == "fp32":
        return None
    cuda = device.type == "cuda"
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    if precision == "bf16":
        if not bf16_ok:
            raise ClinclipError(f"train config: precision = 'bf16' needs a CUDA device with bf16 support; this run "
                                f"is on {device} (use precision=auto, fp16 or fp32)")
        return torch.bfloat16
    if precision == "fp16":
        if not cuda:
            raise ClinclipError(f"train config: precision = 'fp16' needs a CUDA device; this run is on {device} "
                                "(use precision=auto or fp32)")
        return torch.float16
    if bf16_ok:
        return torch.bfloat16
    return torch.float16 if cuda else None


def precision_name(dtype: torch.dtype | None) -> str:
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


EMBEDDING_KEYS = ("image_embeds", "text_embeds", "neg_text_embeds", "graph_embeds", "neg_graph_embeds")


def forward_backward(train_model: nn.Module, model: nn.Module, loss_fn, inputs: dict[str, Any], labels, neg_labels,
                     accum_steps: int, forward: Callable, backward: Callable, distributed: bool = False) -> dict:
    """Forward, loss and backward of one batch; the gradients accumulate in the parameters' ``.grad``.

    With ``accum_steps`` = k > 1 (open_clip's ``--accum-freq``): the batch is cut into k micro-batches whose
    embeddings are first computed without gradient (``model``, cached), then each micro-batch is run again
    with gradient (``train_model``) and the loss of the *whole* batch -- its cached embeddings with this
    micro-batch's replaced -- is backpropagated. The loss, soft labels and negatives span the whole batch,
    and the sum of the k backward passes is the gradient of the one large batch, while activations are held
    for one micro-batch at a time. (Needs a deterministic forward: dropout would differ between the cached
    and the recomputed pass.) ``forward(module, inputs)`` -> model outputs in fp32; ``backward(loss)``."""
    if accum_steps == 1:
        losses = loss_fn(forward(train_model, inputs), labels, neg_labels)
        backward(losses["loss"])
        return losses
    micro = split_batch(inputs, accum_steps)
    with torch.no_grad():
        cached = [forward(model, part) for part in micro]
    for j, part in enumerate(micro):
        last = j == accum_steps - 1
        sync = train_model.no_sync() if distributed and not last else contextlib.nullcontext()
        with sync:
            out = forward(train_model, part)
            full = {key: torch.cat([c[key] for c in cached[:j]] + [out[key]] + [c[key] for c in cached[j + 1:]])
                    for key in EMBEDDING_KEYS if key in out}
            # The logit scale enters every micro-batch's loss; it carries gradient in one of them only (the
            # last, so that DDP's synchronising backward sees every parameter), else it would get k times its
            # gradient.
            full["logit_scale"] = out["logit_scale"] if last else out["logit_scale"].detach()
            losses = loss_fn(full, labels, neg_labels)
            backward(losses["loss"])
    return losses


def split_batch(inputs: dict[str, Any], parts: int) -> list[dict[str, Any]]:
    """A model batch cut into ``parts`` equal micro-batches along the rows (tensors and lists alike)."""
    rows = len(inputs["input_ids"]) if "input_ids" in inputs else len(inputs["pixel_values"])
    size = rows // parts
    return [{k: v[j * size:(j + 1) * size] if v is not None else None for k, v in inputs.items()}
            for j in range(parts)]


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weight matrices/kernels only: not on biases, norm weights, embeddings' scalars, nor the
    logit scale (the CLIP convention). Frozen parameters are left out."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim < 2 or name.endswith(".bias") or "norm" in name.lower() or "logit_scale" in name:
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> Callable[[int], float]:
    """LR multiplier of optimisation step ``s`` (0-based): linear up to 1 over ``warmup_steps``, then cosine
    down to ``min_ratio`` at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def build_model(cfg: TrainConfig, loss_cfg):
    """The model to train: from the model preset, or from ``init`` (own or Hugging Face CLIP/SigLIP dir).
    Parts the variant does not train (the graph encoder of a variant without graphs) are frozen, so the
    optimizer and DDP only see parameters that get gradients."""
    if cfg.init:
        # The architecture comes from the init directory; only the text length may still be set.
        other = sorted(k for k in cfg.model_overrides if k != "text.max_text_length")
        if other:
            raise ClinclipError(f"train config: init = {cfg.init!r} fixes the architecture; drop the model "
                                f"overrides {other} (only model.text.max_text_length applies)")
        max_len = cfg.model_overrides.get("text.max_text_length")
        model = factory.init_from(cfg.init, max_text_length=max_len)
    else:
        model = factory.build_model(cfg.model_config())
    if loss_cfg.graph and getattr(model, "graph_encoder", None) is None:
        source = cfg.init or f"model preset {cfg.model!r}"
        raise ClinclipError(f"loss variant {loss_cfg.name!r} uses report graphs but the model ({source}) has no "
                            "graph encoder (graph.enabled is false; Hugging Face CLIP/SigLIP towers have none)")
    if not loss_cfg.graph and getattr(model, "graph_encoder", None) is not None:
        model.graph_encoder.requires_grad_(False)
    return model


class _RunLog:
    """log.jsonl (+ TensorBoard, + W&B) on rank 0. Step rows go to ``history``, validation rows (``event:
    validation``) to ``validations``; both survive a resume up to the checkpoint's step."""

    def __init__(self, out_dir: Path, enabled: bool, tensorboard: bool, keep_until_step: int | None,
                 wandb_config: dict[str, Any] | None = None):
        self.path = out_dir / LOG_FILE
        self.enabled = enabled
        self.history: list[dict[str, Any]] = []
        self.validations: list[dict[str, Any]] = []
        self.writer = None
        self.wandb = None
        if not enabled:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        if keep_until_step is None:
            self.path.write_text("", encoding="utf-8")
        else:  # resume: drop what a killed run logged after its last checkpoint
            kept = []
            if self.path.is_file():
                for line in self.path.read_text(encoding="utf-8").splitlines():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut off by the kill
                    if row.get("step", 0) <= keep_until_step and row.get("event") in (None, "validation"):
                        kept.append(row)
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
            self.history = [r for r in kept if "event" not in r]
            self.validations = [r for r in kept if "event" in r]
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                SummaryWriter = None
            if SummaryWriter is not None:
                self.writer = SummaryWriter(str(out_dir / "tensorboard"))
        if wandb_config is not None:
            self.wandb = _start_wandb(out_dir, wandb_config)

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if row.get("event") == "validation":
            self.validations.append(row)
            metrics = {f"val/{k}": v for k, v in row["metrics"].items() if isinstance(v, (int, float))}
            if self.writer is not None:
                for key, value in metrics.items():
                    self.writer.add_scalar(key, value, row["step"])
            if self.wandb is not None:
                self.wandb.log(metrics, step=row["step"])
        if "event" not in row:
            if self.wandb is not None:
                flat = {f"train/{k}": v for k, v in row.items() if isinstance(v, (int, float)) and k != "step"}
                flat.update({f"loss/{k}": v for k, v in row.get("components", {}).items()})
                self.wandb.log(flat, step=row["step"])
            self.history.append(row)
            if self.writer is not None:
                step = row["step"]
                for key, value in row.items():
                    if isinstance(value, (int, float)) and key not in ("step",):
                        self.writer.add_scalar(f"train/{key}", value, step)
                for key, value in row.get("components", {}).items():
                    self.writer.add_scalar(f"loss/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()


def _start_wandb(out_dir: Path, config: dict[str, Any]):
    """A W&B run for this run folder (its id kept in ``wandb_id``, so a resume continues the same run)."""
    try:
        import wandb
    except ImportError:
        raise ClinclipError("train config: wandb = true but the wandb package is not installed "
                            "(pip install wandb), or set wandb=false") from None
    id_file = out_dir / "wandb_id"
    run_id = id_file.read_text().strip() if id_file.is_file() else wandb.util.generate_id()
    id_file.write_text(run_id)
    return wandb.init(project=config.get("wandb_project") or "clinclip", name=out_dir.name, id=run_id,
                      resume="allow", dir=str(out_dir), config=config)


class _StopSignals:
    """SIGTERM / SIGUSR1 set a flag (the previous handlers are restored on exit); the loop checks it after
    each step, so a preempted job writes a checkpoint at a step boundary and stops cleanly."""

    def __init__(self):
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopSignals":
        import threading

        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for name in STOP_SIGNALS:
                number = getattr(signal, name, None)
                if number is not None:
                    self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number, frame) -> None:
        self.received = signal.Signals(number).name

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

class _Trainer:
    def __init__(self, cfg: TrainConfig, ctx: DistributedContext, step_callback: StepCallback | None):
        self.cfg = cfg
        self.ctx = ctx
        self.step_callback = step_callback
        self.out_dir = Path(cfg.out_dir).expanduser()
        self.ckpt_path = checkpoint_path(self.out_dir)

    # ------------------------------------------------------------------ setup
    def run(self) -> TrainResult:
        cfg, ctx = self.cfg, self.ctx
        start_time = time.perf_counter()
        resume_state = None
        if cfg.resume:
            resume_state = load_checkpoint(self.ckpt_path)
            self._check_resume_config(resume_state)
        elif self.ckpt_path.exists():
            raise ClinclipError(f"{self.out_dir}: holds a training checkpoint already ({self.ckpt_path}); continue "
                                "it with --resume (resume=true) or choose another out_dir")
        if cfg.batch_size % (ctx.world_size * cfg.accum_steps):
            raise ClinclipError(f"train config: batch_size = {cfg.batch_size} is the global batch and must divide "
                                f"evenly over the {ctx.world_size} ranks x accum_steps = {cfg.accum_steps} "
                                "micro-batches")
        per_rank = cfg.batch_size // ctx.world_size
        seed_everything(cfg.seed)
        loss_cfg = cfg.loss_config()
        needs = loss_cfg.needed_inputs()
        rows = load_training_rows(cfg.require_manifest(), cfg.data.split, needs, cfg.data.image_root,
                                  cfg.data.max_rows)
        if len(rows) < cfg.batch_size:
            raise ClinclipError(f"{rows.manifest}: split {cfg.data.split!r} has {len(rows)} usable rows, fewer than "
                                f"one batch ({cfg.batch_size}); excluded: {dict(rows.excluded) or 'none'}")
        model = build_model(cfg, loss_cfg)
        transform = model.image_transform(
            train=cfg.data.augment, crop_scale=(cfg.data.crop_scale_min, 1.0), clahe_p=cfg.data.clahe_p,
            brightness=cfg.data.brightness, contrast=cfg.data.contrast) if cfg.data.augment \
            else model.image_transform(train=False)
        batch_transform = store_batch_transform(rows.image_paths, transform, verify=ctx.local_rank == 0)
        dataset = ManifestDataset(rows, transform, seed=cfg.seed, batched=batch_transform is not None,
                                  clahe_in_store=batch_transform is not None and batch_transform.clahe_in_store)
        sampler = ResumableDistributedSampler(dataset, ctx.world_size, ctx.rank, cfg.seed)
        steps_per_epoch = len(sampler) // per_rank
        total_steps = cfg.steps or cfg.epochs * steps_per_epoch
        warmup = cfg.warmup_steps or round(cfg.warmup_epochs * steps_per_epoch)
        device = ctx.device
        augment_in_loader = cfg.data.augment_on == "loader" or (cfg.data.augment_on == "auto" and device.type != "cuda")
        autocast_dtype = resolve_precision(cfg.precision, device)
        scaler = torch.amp.GradScaler("cuda") if autocast_dtype == torch.float16 else None
        if loss_cfg.graph:
            graphs = rows.graphs + (rows.neg_graphs or [])
            model.graph_encoder.to(device)
            model.graph_encoder.warm_up(graphs, progress=ctx.is_main and cfg.progress)
        model.to(device)
        train_model: nn.Module = model
        if ctx.distributed:
            train_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        optimizer = torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas,
                                      eps=cfg.eps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup, total_steps,
                                                                               cfg.min_lr_ratio))
        loss_fn = ClinClipLoss(loss_cfg, rank=ctx.rank, world_size=ctx.world_size)
        position = {"step": 0, "epoch": 0, "batch_in_epoch": 0}
        skipped, skipped_batches = SkippedImages(), 0
        best = None
        if resume_state is not None:
            model.load_state_dict(resume_state["model"])
            optimizer.load_state_dict(resume_state["optimizer"])
            scheduler.load_state_dict(resume_state["scheduler"])
            if scaler is not None and resume_state.get("scaler") is not None:
                scaler.load_state_dict(resume_state["scaler"])
            best = resume_state.get("best")
            position = {k: int(resume_state[k]) for k in position}
            saved_skips = [SkippedImages.from_state(x) for x in resume_state["skipped_images_per_rank"]]
            if len(saved_skips) == ctx.world_size:
                skipped = saved_skips[ctx.rank]
            elif ctx.is_main:  # a different rank layout: rank 0 carries the totals
                skipped = SkippedImages.merged(saved_skips)
            skipped_batches = int(resume_state["skipped_batches"]) if ctx.is_main else 0
            rng = resume_state["rng"]
            restore_rng_state(rng[ctx.rank] if ctx.rank < len(rng) else rng[0])
        log = _RunLog(self.out_dir, ctx.is_main, cfg.tensorboard,
                      position["step"] if resume_state is not None else None,
                      cfg.to_dict() if cfg.wandb else None)
        validator = None
        if cfg.validate_every:
            validator = Validator(cfg, loss_cfg, model, ctx) if ctx.is_main else None
        if ctx.is_main:
            cfg.save(self.out_dir / CONFIG_FILE)
            log.write({"event": "start", "step": position["step"], "total_steps": total_steps,
                       "steps_per_epoch": steps_per_epoch, "rows": len(rows), "world_size": ctx.world_size,
                       "device": str(device), "precision": precision_name(autocast_dtype),
                       "accum_steps": cfg.accum_steps, "num_workers": self._num_workers(),
                       "image_loading": "store, batched augmentation" if batch_transform is not None else "files",
                       "variant": loss_cfg.name, **summarise_skipped(rows.excluded, SkippedImages())})
        state = _LoopState(model=model, train_model=train_model, optimizer=optimizer, scheduler=scheduler,
                           loss_fn=loss_fn, dataset=dataset, sampler=sampler, per_rank=per_rank,
                           total_steps=total_steps, steps_per_epoch=steps_per_epoch, autocast_dtype=autocast_dtype,
                           position=position, skipped=skipped, skipped_batches=skipped_batches, log=log, rows=rows,
                           needs=set(needs), batch_transform=batch_transform,
                           augment_in_loader=augment_in_loader, scaler=scaler, validator=validator, best=best)
        stop = _StopSignals()
        try:
            with stop:
                self._loop(state, stop)
        except KeyboardInterrupt:
            if not ctx.distributed and state.position["step"] > 0:
                self._save(state)
                print(f"interrupted at step {state.position['step']}: checkpoint written to {self.ckpt_path}; "
                      "continue with --resume")
            raise
        finally:
            log.close()
        if state.stopped_by is not None:
            return TrainResult(model_dir=self.out_dir / MODEL_DIR, log_path=log.path,
                               seconds=time.perf_counter() - start_time, history=log.history,
                               checkpoint=self.ckpt_path, steps=state.position["step"], stopped_by=state.stopped_by,
                               validations=log.validations)
        summary = self._finish(state)
        return TrainResult(model_dir=self.out_dir / MODEL_DIR, log_path=log.path,
                           seconds=time.perf_counter() - start_time, history=log.history,
                           checkpoint=self.ckpt_path, steps=state.position["step"], summary=summary,
                           validations=log.validations)

    def _num_workers(self) -> int:
        """Loader processes of this rank: as configured, or the CPUs this process may use shared by the ranks
        of its node, one left for the rank itself."""
        if self.cfg.num_workers is not None:
            return self.cfg.num_workers
        local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        return max(0, available_cpus() // max(1, local_ranks) - 1)

    def _check_resume_config(self, state: dict[str, Any]) -> None:
        saved = TrainConfig.from_dict(parse_mapping(state["config"], str(self.ckpt_path), "checkpoint config"))
        now, before = self.cfg.to_dict(), saved.to_dict()
        changed = [k for k in now if k not in RESUME_FREE | RESUME_SCHEDULE and now[k] != before[k]]
        if changed:
            details = "; ".join(f"{k}: {before[k]!r} -> {now[k]!r}" for k in changed)
            raise ClinclipError(f"{self.ckpt_path}: cannot resume with a different configuration ({details}); "
                                f"resume with the run's own config: clinclip train {self.out_dir / CONFIG_FILE} "
                                "--resume")
        for k in RESUME_SCHEDULE:
            if now[k] != before[k] and self.ctx.is_main:
                print(f"warning: resuming with {k} = {now[k]!r} (was {before[k]!r}): the learning-rate schedule "
                      "changes from here on")

    # ------------------------------------------------------------------ loop
    def _loop(self, s: "_LoopState", stop: _StopSignals) -> None:
        cfg, ctx = self.cfg, self.ctx
        pos = s.position
        collate = TrainCollator.for_model(s.model, s.batch_transform if s.augment_in_loader else None)
        bar = tqdm(total=s.total_steps, initial=pos["step"], disable=not (ctx.is_main and cfg.progress),
                   desc=f"train {s.loss_fn.cfg.name}", unit="step", dynamic_ncols=True)
        window_start, window_samples = time.perf_counter(), 0
        s.train_model.train()
        try:
            while pos["step"] < s.total_steps:
                epoch, steps_before = pos["epoch"], pos["step"]
                resumed_mid_epoch = pos["batch_in_epoch"] > 0
                s.sampler.set_epoch(epoch, start=pos["batch_in_epoch"] * s.per_rank)
                s.dataset.set_epoch(epoch)
                # A dedicated generator: creating the loader iterator must not consume the global RNG.
                generator = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
                loader = torch.utils.data.DataLoader(
                    s.dataset, batch_size=s.per_rank, sampler=s.sampler, collate_fn=collate, drop_last=True,
                    num_workers=self._num_workers(), pin_memory=s.model.device.type == "cuda", generator=generator)
                for batch in loader:
                    for path, reason, error in batch["skipped"]:
                        s.skipped.add(path, reason, error)
                    rows_here = int(batch["indices"].numel())
                    if ctx.min_int(rows_here) == 0:  # some rank lost its whole batch: skip the step everywhere
                        s.skipped_batches += 1
                        pos["batch_in_epoch"] += 1
                        continue
                    record = self._step(s, batch)
                    # The data position moves with the step, so a checkpoint never skips or repeats a batch.
                    pos["batch_in_epoch"] += 1
                    pos["step"] += 1
                    window_samples += record["global_batch"]
                    bar.update(1)
                    bar.set_postfix(loss=f"{record['loss']:.4f}")
                    if pos["step"] % cfg.log_every == 0 or pos["step"] == s.total_steps:
                        counts = ctx.sum_ints([len(s.skipped), s.skipped_batches])
                        elapsed = time.perf_counter() - window_start
                        record.update(samples_per_s=window_samples / max(elapsed, 1e-9),
                                      skipped_images=counts[0], skipped_batches=counts[1],
                                      excluded_rows=sum(s.rows.excluded.values()))
                        s.log.write(record)
                        window_start, window_samples = time.perf_counter(), 0
                    if cfg.validate_every and (pos["step"] % cfg.validate_every == 0 or pos["step"] == s.total_steps):
                        self._validate(s)
                    if pos["step"] % cfg.save_every == 0 and pos["step"] < s.total_steps:
                        self._save(s)
                    if self.step_callback is not None:
                        self.step_callback(record)
                    received = ctx.any_flag(stop.received is not None)  # every rank stops at the same step
                    if received and pos["step"] < s.total_steps:
                        self._stop(s, stop.received or "signal on another rank")
                        return
                    if pos["step"] >= s.total_steps:
                        break
                else:
                    if pos["step"] == steps_before and not resumed_mid_epoch:
                        raise ClinclipError(
                            f"{s.rows.manifest}: a whole epoch passed without one trainable batch: "
                            f"{len(s.skipped)} of {len(s.rows)} images could not be read (e.g. "
                            f"{next(iter(s.skipped.by_path.items()), ('-', ('-', '-')))[1][1]})")
                    pos["epoch"] += 1
                    pos["batch_in_epoch"] = 0
        finally:
            bar.close()

    def _step(self, s: "_LoopState", batch: dict[str, Any]) -> dict[str, Any]:
        cfg = self.cfg
        device = s.model.device
        inputs = {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()
                  if k not in ("skipped", "indices", "labels", "neg_labels", "images_uint8", "aug_seeds")}
        if "images_uint8" in batch:  # a packed store's records, augmented here as one batch (on the GPU)
            inputs["pixel_values"] = s.batch_transform(batch["images_uint8"].to(device, non_blocking=True),
                                                       batch["aug_seeds"].tolist())
        labels = batch["labels"].to(device) if "labels" in s.needs else None
        neg_labels = batch["neg_labels"].to(device) if "neg_labels" in s.needs else None
        s.optimizer.zero_grad(set_to_none=True)
        k = cfg.accum_steps if len(batch["indices"]) % cfg.accum_steps == 0 else 1  # a short batch: in one go
        losses = forward_backward(s.train_model, s.model, s.loss_fn, inputs, labels, neg_labels, k,
                                  lambda model, part: self._forward(model, part, s),
                                  lambda loss: self._backward(s, loss), self.ctx.distributed)
        loss = losses["loss"]
        grad_norm = None
        if s.scaler is not None:
            s.scaler.unscale_(s.optimizer)
        if cfg.grad_clip is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(s.model.parameters(), cfg.grad_clip))
        lr = s.scheduler.get_last_lr()[0]
        if s.scaler is not None:
            s.scaler.step(s.optimizer)  # skipped when the fp16 gradients overflowed
            s.scaler.update()
        else:
            s.optimizer.step()
        s.model.clamp_logit_scale_()
        s.scheduler.step()
        components = {k: float(v) for k, v in losses.items()
                      if k not in ("loss", "logit_scale", "global_batch") and torch.is_tensor(v) and v.numel() == 1}
        record = {"step": s.position["step"] + 1, "epoch": s.position["epoch"], "loss": float(loss.detach()),
                  "components": components, "lr": lr, "logit_scale": float(losses["logit_scale"]),
                  "global_batch": int(losses["global_batch"])}
        if grad_norm is not None:
            record["grad_norm"] = grad_norm
        if s.scaler is not None:
            record["grad_scale"] = float(s.scaler.get_scale())
        return record

    def _forward(self, model: nn.Module, inputs: dict[str, Any], s: "_LoopState") -> dict[str, Any]:
        device = s.model.device
        with torch.autocast(device_type=device.type, dtype=s.autocast_dtype or torch.float32,
                            enabled=s.autocast_dtype is not None):
            outputs = model(inputs)
        # The loss (softmaxes over the batch, KL of soft labels) in fp32 whatever the encoders ran in.
        return {k: (v.float() if torch.is_tensor(v) else v) for k, v in outputs.items()}

    def _backward(self, s: "_LoopState", loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise ClinclipError(f"training diverged: loss is {loss.item()} at step {s.position['step'] + 1} "
                                f"(lower lr, currently {self.cfg.lr}, or check the data)")
        (s.scaler.scale(loss) if s.scaler is not None else loss).backward()

    # ------------------------------------------------------------------ validation / stopping
    def _validate(self, s: "_LoopState") -> None:
        """Score the validate split on rank 0 (the other ranks wait), log it, keep the best model."""
        cfg = self.cfg
        if self.ctx.is_main:
            was_training = s.model.training
            s.model.eval()
            try:
                metrics = s.validator.run(s.model, s.autocast_dtype)
            finally:
                s.model.train(was_training)
            value = metrics.get(cfg.best_metric)
            better = value is not None and math.isfinite(value) and (
                s.best is None or (value < s.best["value"] if BEST_METRICS[cfg.best_metric] == "min"
                                   else value > s.best["value"]))
            if better:
                s.best = {"metric": cfg.best_metric, "value": float(value), "step": s.position["step"]}
                s.model.save_pretrained(self.out_dir / BEST_MODEL_DIR)
                (self.out_dir / BEST_FILE).write_text(json.dumps(s.best, indent=2) + "\n", encoding="utf-8")
            s.log.write({"event": "validation", "step": s.position["step"], "metrics": metrics,
                         "best": dict(s.best) if s.best else None})
        self.ctx.barrier()

    def _stop(self, s: "_LoopState", received: str) -> None:
        """A stop signal: checkpoint at this step boundary and leave the loop (no final model)."""
        self._save(s)
        s.stopped_by = received
        if self.ctx.is_main:
            s.log.write({"event": "stopped", "step": s.position["step"], "signal": received})
            print(f"{received} received: stopped at step {s.position['step']} with a checkpoint in "
                  f"{self.ckpt_path}; continue with --resume")
        self.ctx.barrier()

    # ------------------------------------------------------------------ saving
    def _save(self, s: "_LoopState") -> None:
        rng_states = self.ctx.all_gather_object(capture_rng_state())  # a collective: every rank calls it
        skipped_states = self.ctx.all_gather_object(s.skipped.to_state())
        skipped_batches = self.ctx.sum_ints([s.skipped_batches])[0]
        if not self.ctx.is_main:
            return
        save_checkpoint(self.ckpt_path, {
            **{k: int(v) for k, v in s.position.items()},
            "sampler_seed": int(self.cfg.seed),
            "world_size": self.ctx.world_size,
            "model": s.model.state_dict(),
            "optimizer": s.optimizer.state_dict(),
            "scheduler": s.scheduler.state_dict(),
            "scaler": s.scaler.state_dict() if s.scaler is not None else None,  # fp16 only
            "best": s.best,
            "rng": rng_states,
            "skipped_images_per_rank": skipped_states,
            "skipped_batches": skipped_batches,
            "config": self.cfg.to_yaml(),
        })
        keep_newest(self.ckpt_path, s.position["step"], self.cfg.keep_checkpoints)

    def _finish(self, s: "_LoopState") -> dict[str, Any]:
        self._save(s)
        gathered = self.ctx.all_gather_object(s.skipped.to_state())
        summary = summarise_skipped(s.rows.excluded, SkippedImages.merged([SkippedImages.from_state(x)
                                                                            for x in gathered]))
        summary["skipped_batches"] = self.ctx.sum_ints([s.skipped_batches])[0]
        if self.ctx.is_main:
            s.model.save_pretrained(self.out_dir / MODEL_DIR, card=self._card(s))
            s.log.write({"event": "summary", "step": s.position["step"], **summary})
            (self.out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
            if self.cfg.progress:
                print(format_summary(summary, s.rows.rows_in_split))
        self.ctx.barrier()
        return summary


    def _card(self, s: "_LoopState") -> dict[str, Any]:
        """What the saved model's card records about this run (clinclip.models.hub.model_card)."""
        from clinclip.files import file_fingerprint
        from clinclip.models.hub import portable_source

        manifest = Path(s.rows.manifest)
        return {"variant": s.loss_fn.cfg.name,
                "steps": int(s.position["step"]), "batch_size": int(self.cfg.batch_size),
                "data": manifest.name, "data_fingerprint": file_fingerprint(manifest),
                "split": self.cfg.data.split, "rows": len(s.rows), "seed": int(self.cfg.seed),
                "base_model": portable_source(self.cfg.init) if self.cfg.init else None}


def format_summary(summary: dict[str, Any], rows_in_split: int) -> str:
    lines = [f"rows in split: {rows_in_split}; excluded: {summary['excluded_rows']}; "
             f"images skipped while training: {summary['skipped_images']}"]
    for reason, n in summary["excluded_rows_by_reason"].items():
        lines.append(f"  excluded {n:>7}  {reason}")
    for reason, n in summary["skipped_images_by_reason"].items():
        lines.append(f"  skipped  {n:>7}  {reason}")
    return "\n".join(lines)


@dataclass
class _LoopState:
    model: Any
    train_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loss_fn: Any
    dataset: ManifestDataset
    sampler: ResumableDistributedSampler
    per_rank: int
    total_steps: int
    steps_per_epoch: int
    autocast_dtype: torch.dtype | None
    position: dict[str, int]
    skipped: SkippedImages
    skipped_batches: int
    log: _RunLog
    rows: Any
    needs: set
    batch_transform: Any = None  # BatchImageTransform when the images come from a packed store
    augment_in_loader: bool = True
    scaler: Any = None  # torch.amp.GradScaler under fp16
    validator: Any = None  # rank 0's Validator when validate_every is set
    best: dict[str, Any] | None = None  # {"metric", "value", "step"} of best_model/
    stopped_by: str | None = None
