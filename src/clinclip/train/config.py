"""``TrainConfig``: everything one training run needs, as one typed dataclass (torch-free).

Layers, later wins: the defaults below -> the training preset of the scale (``presets/training/<scale>.yaml``,
``tiny`` or ``paper``; by default the one named like the model preset) -> a config YAML (e.g. a previous run's
``config.yaml``) -> ``key=value`` overrides. Overrides use dotted paths (``data.manifest=...``); values are
parsed as YAML and checked against the field's type. ``model.<path>=...`` and ``loss.<path>=...`` go into
the model preset and the loss variant (validated by ``ModelConfig`` and ``LossConfig``).
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from clinclip.config import (apply_overrides, check_number, coerce, list_presets, load_preset, parse_overrides,
                             unknown_key, yaml_value)
from clinclip.errors import ClinclipError
from clinclip.files import read_mapping, write_text_atomic
from clinclip.losses.config import LossConfig, load_variant
from clinclip.models.config import ModelConfig

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BEST_METRICS = {"val_loss": "min", "cxr_align_a": "max", "cxr_align_b": "max", "zero_shot_auc": "max"}
AUGMENT_ON = ("auto", "loader", "device")
CONFIG_FILE = "config.yaml"


@dataclass
class DataConfig:
    """Which rows of which prepared manifest, and the training augmentation (``ImageTransform``)."""

    manifest: str | None = None  # the prepared manifest (Parquet or CSV) written by `clinclip text prepare`
    split: str = "train"
    image_root: str | None = None  # base of relative image paths; default: the manifest's folder
    max_rows: int | None = None  # keep only the first N usable rows (quick runs)
    augment: bool = True  # random resized crop + CLAHE + brightness/contrast jitter (else: eval transform)
    crop_scale_min: float = 0.8  # random resized crop covers [crop_scale_min, 1] of the area
    clahe_p: float = 0.5  # probability of CLAHE per image
    brightness: float = 0.1  # multiplicative jitter range +-
    contrast: float = 0.1
    # Packed image store (prepare-images --format store): where the batched augmentation runs. auto: on the
    # training device when it is a GPU, else in the loader workers; loader; device.
    augment_on: str = "auto"
    validate_split: str = "validate"  # rows the in-training validation (validate_every) scores
    validate_max_rows: int | None = 2000  # first N usable rows of that split (validation cost); null: all


@dataclass
class TrainConfig:
    """One training run. ``batch_size`` is the global batch (all ranks together): under DDP each of N ranks
    takes ``batch_size / N`` and the loss is computed on the gathered global batch."""

    # --- what is trained
    variant: str = "clip-ng-dtcg"  # loss variant preset name or YAML path (clinclip/presets/variants)
    model: str = "tiny"  # model preset name (tiny, paper) or YAML path
    scale: str | None = None  # training preset (presets/training); default: the model preset's name if present
    model_overrides: dict[str, Any] = field(default_factory=dict)  # dotted ModelConfig keys, from model.<key>=
    loss_overrides: dict[str, Any] = field(default_factory=dict)  # dotted LossConfig keys, from loss.<key>=
    init: str | None = None  # start from a clinclip model dir or a Hugging Face CLIP/SigLIP dir
    data: DataConfig = field(default_factory=DataConfig)
    # --- optimisation
    epochs: int = 1
    steps: int | None = None  # total optimisation steps; when set it wins over epochs
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 1e-4  # not applied to biases, norm weights and the logit scale
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 0  # linear warmup; give this or warmup_epochs
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.0  # the cosine decays to lr * min_lr_ratio
    grad_clip: float | None = 1.0  # max global gradient norm; null = no clipping
    accum_steps: int = 1  # micro-batches per step: activations of batch_size/accum_steps rows, loss over all
    # --- runtime
    out_dir: str = "runs/clinclip"
    seed: int = 0
    # auto: bf16 autocast on a GPU that supports it, fp16 + gradient scaler on an older GPU, fp32 on a CPU
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under torchrun each rank uses cuda:LOCAL_RANK)
    num_workers: int | None = 2  # loader processes per rank; null: the CPUs this rank may use, minus one
    log_every: int = 10
    save_every: int = 500
    keep_checkpoints: int = 1  # checkpoints kept: last.pt, plus step-N.pt of the newest K when K > 1
    validate_every: int | None = None  # steps between validations on data.validate_split; null: none
    best_metric: str = "val_loss"  # the validation metric that picks best_model/: val_loss, cxr_align_a/_b, zero_shot_auc
    resume: bool = False  # continue from out_dir/checkpoints/last.pt
    progress: bool = True  # a tqdm bar on rank 0
    tensorboard: bool = True  # also write TensorBoard events when tensorboard is installed
    wandb: bool = False  # also log to Weights & Biases (pip install wandb; imported only when on)
    wandb_project: str = "clinclip"

    # ------------------------------------------------------------------ validation
    def validate(self) -> "TrainConfig":
        where = "train config"

        def bad(key: str, value: Any, expected: str) -> ClinclipError:
            return ClinclipError(f"{where}: {key} = {value!r}: {expected}")

        positive_ints = ("epochs", "batch_size", "log_every", "save_every")
        for key in positive_ints:
            if getattr(self, key) < 1:
                raise bad(key, getattr(self, key), "expected an integer >= 1")
        if self.steps is not None and self.steps < 1:
            raise bad("steps", self.steps, "expected an integer >= 1 or null (then epochs decide)")
        if self.num_workers is not None and self.num_workers < 0:
            raise bad("num_workers", self.num_workers, "expected an integer >= 0 or null (from the CPUs)")
        if self.accum_steps < 1 or self.batch_size % self.accum_steps:
            raise bad("accum_steps", self.accum_steps, f"expected an integer >= 1 that divides batch_size "
                      f"({self.batch_size})")
        if self.keep_checkpoints < 1:
            raise bad("keep_checkpoints", self.keep_checkpoints, "expected an integer >= 1")
        if self.validate_every is not None and self.validate_every < 1:
            raise bad("validate_every", self.validate_every, "expected an integer >= 1 or null (no validation)")
        if self.best_metric not in BEST_METRICS:
            raise bad("best_metric", self.best_metric, f"allowed: {', '.join(BEST_METRICS)}")
        if self.data.validate_max_rows is not None and self.data.validate_max_rows < 1:
            raise bad("data.validate_max_rows", self.data.validate_max_rows, "expected an integer >= 1 or null")
        check_number(where, "lr", self.lr, low=0, low_open=True)
        check_number(where, "weight_decay", self.weight_decay, low=0)
        check_number(where, "eps", self.eps, low=0, low_open=True)
        if len(self.betas) != 2:
            raise bad("betas", list(self.betas), "expected two numbers in [0, 1)")
        for i, beta in enumerate(self.betas):
            check_number(where, f"betas[{i}]", beta, low=0, high=1, high_open=True)
        check_number(where, "warmup_steps", self.warmup_steps, low=0)
        check_number(where, "warmup_epochs", self.warmup_epochs, low=0)
        if self.warmup_steps and self.warmup_epochs:
            raise bad("warmup_steps", self.warmup_steps, "give warmup_steps or warmup_epochs, not both "
                      f"(warmup_epochs = {self.warmup_epochs})")
        check_number(where, "min_lr_ratio", self.min_lr_ratio, low=0, high=1)
        check_number(where, "grad_clip", self.grad_clip, low=0, low_open=True, none_means="no clipping")
        if self.precision not in PRECISIONS:
            raise bad("precision", self.precision, f"allowed: {', '.join(PRECISIONS)}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise bad("device", self.device, "allowed: auto, cpu, cuda, cuda:N")
        d = self.data
        check_number(where, "data.crop_scale_min", d.crop_scale_min, low=0, low_open=True, high=1)
        check_number(where, "data.clahe_p", d.clahe_p, low=0, high=1)
        for key in ("brightness", "contrast"):
            check_number(where, f"data.{key}", getattr(d, key), low=0, high=1, high_open=True)
        if d.augment_on not in AUGMENT_ON:
            raise bad("data.augment_on", d.augment_on, f"allowed: {', '.join(AUGMENT_ON)}")
        if d.max_rows is not None and d.max_rows < 1:
            raise bad("data.max_rows", d.max_rows, "expected an integer >= 1 or null")
        return self

    def require_manifest(self) -> Path:
        if not self.data.manifest:
            raise ClinclipError("train config: data.manifest is not set; give the prepared manifest, e.g. "
                                "data.manifest=prepared.parquet (written by `clinclip text prepare`)")
        path = Path(self.data.manifest).expanduser()
        if not path.is_file():
            raise ClinclipError(f"train config: data.manifest = {self.data.manifest!r}: file not found")
        return path

    # ------------------------------------------------------------------ the parts it names
    def model_config(self) -> ModelConfig:
        """The ModelConfig of the model preset with ``model_overrides`` applied (unused with ``init``)."""
        return ModelConfig.from_preset(self.model, self.model_overrides or None)

    def loss_config(self) -> LossConfig:
        """The LossConfig of the variant with ``loss_overrides`` applied."""
        cfg = load_variant(self.variant)
        if not self.loss_overrides:
            return cfg
        data = apply_overrides(cfg.to_dict(), self.loss_overrides, f"variant {self.variant}")
        return LossConfig.from_dict(data, f"variant {self.variant} with overrides {self.loss_overrides}")

    # ------------------------------------------------------------------ dict / yaml
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data

    def to_yaml(self) -> str:
        header = ("# clinclip training config (reload with: clinclip train <this file> [key=value ...])\n")
        return header + yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.suffix not in (".yaml", ".yml"):
            path = path / CONFIG_FILE
        return write_text_atomic(path, self.to_yaml())

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "train config") -> "TrainConfig":
        return apply_to(TrainConfig(), flatten(data), where).validate()

    @classmethod
    def build(cls, variant_or_config: str | Path | None = None,
              overrides: Mapping[str, Any] | Iterable[str] | None = None) -> "TrainConfig":
        """What ``clinclip train VARIANT_OR_CONFIG_YAML key=value ...`` runs: the first argument is a variant
        name, a variant YAML, or a training config YAML (one with a ``variant`` key, such as a run's
        ``config.yaml``); ``overrides`` are ``key=value`` strings or a mapping of dotted keys."""
        given = parse_overrides(overrides, _EXAMPLE)
        file_values: dict[str, Any] = {}
        where = "override"
        if variant_or_config is not None:
            source = str(variant_or_config)
            config_data = _read_training_yaml(source)
            if config_data is None:
                file_values["variant"] = source
            else:
                file_values = flatten(config_data)
                where = source
        # The scale (training preset) is chosen from the model preset, so read those first.
        model = given.get("model", file_values.get("model", TrainConfig.model))
        scale = given.get("scale", file_values.get("scale"))
        preset_values = flatten(load_training_preset(scale, model, explicit=scale is not None))
        cfg = apply_to(TrainConfig(), preset_values, f"training preset {scale or model}")
        cfg = apply_to(cfg, file_values, where)
        cfg = apply_to(cfg, given, "override")
        return cfg.validate()

    @classmethod
    def from_presets(cls, model: str = "tiny", variant: str = "clip-ng-dtcg",
                     overrides: Mapping[str, Any] | Iterable[str] | None = None) -> "TrainConfig":
        """Python API: ``TrainConfig.from_presets(model="tiny", variant="clip", overrides={"steps": 200})``."""
        given = parse_overrides(overrides, _EXAMPLE)
        given.setdefault("model", model)
        return cls.build(variant, given)


# ---------------------------------------------------------------------- presets
def list_training_presets() -> list[str]:
    return list_presets("training")


def load_training_preset(scale: str | None, model: str, explicit: bool) -> dict[str, Any]:
    """The training preset's values; the default scale is the model preset's name when such a preset exists."""
    name = scale if scale is not None else Path(str(model)).stem
    if name not in list_training_presets():
        if explicit:
            raise ClinclipError(f"train config: scale = {scale!r}: no training preset of that name; available: "
                                f"{', '.join(list_training_presets())}")
        return {}
    return load_preset("training", name, "training preset")[0]


def _read_training_yaml(source: str) -> dict[str, Any] | None:
    """A training config YAML as a dict, or None when ``source`` is a variant (name or variant YAML)."""

    path = Path(source).expanduser()
    if path.suffix not in (".yaml", ".yml"):
        return None
    if not path.is_file():
        raise ClinclipError(f"{source}: config file not found (give a variant name, a variant YAML or a "
                            "training config YAML)")
    data = read_mapping(path, "training config")
    is_variant = "weights" in data or "pairs" in data
    if is_variant and "variant" not in data:
        return None
    return data


# ---------------------------------------------------------------------- overrides
_PASS_THROUGH = {"model": "model_overrides", "loss": "loss_overrides"}
_EXAMPLE = "steps=200, data.manifest=prep.parquet"


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config mapping -> dotted keys. ``data`` is a section; the pass-through dicts stay whole."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key == "data" and not prefix and isinstance(value, Mapping):
            out.update(flatten(value, "data."))
        else:
            out[dotted] = value
    return out


def _all_keys() -> list[str]:
    keys = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "data"]
    keys += [f"data.{f.name}" for f in dataclasses.fields(DataConfig)]
    return keys + ["model.<ModelConfig key>", "loss.<LossConfig key>"]


def apply_to(cfg: TrainConfig, values: Mapping[str, Any], where: str) -> TrainConfig:
    """Set dotted keys on a copy of ``cfg`` with type checking."""
    cfg = copy.deepcopy(cfg)
    hints = typing.get_type_hints(TrainConfig)
    data_hints = typing.get_type_hints(DataConfig)
    for key, raw in values.items():
        head, _, rest = key.partition(".")
        if head in _PASS_THROUGH and rest:
            target = getattr(cfg, _PASS_THROUGH[head])
            target[rest] = yaml_value(raw)
            continue
        if head == "data" and rest:
            if rest not in data_hints:
                raise unknown_key(key, _all_keys(), where)
            setattr(cfg.data, rest, coerce(raw, data_hints[rest], key, where))
            continue
        if key == "data":
            raise ClinclipError(f"{where}: 'data' is a section; set its keys, e.g. data.manifest=...")
        if key not in hints:
            raise unknown_key(key, _all_keys(), where)
        if key in _PASS_THROUGH.values():
            if not isinstance(raw, Mapping):
                raise ClinclipError(f"{where}: {key} must be a mapping of dotted keys to values")
            getattr(cfg, key).update(raw)
            continue
        setattr(cfg, key, coerce(raw, hints[key], key, where))
    return cfg
