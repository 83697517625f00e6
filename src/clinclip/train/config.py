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
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from clinclip.errors import ClinclipError
from clinclip.files import read_mapping

TRAINING_PRESET_DIR = Path(__file__).resolve().parents[1] / "presets" / "training"
PRECISIONS = ("auto", "fp32", "bf16")
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
    # --- runtime
    out_dir: str = "runs/clinclip"
    seed: int = 0
    precision: str = "auto"  # auto (bf16 autocast on a GPU that supports it, else fp32) | fp32 | bf16
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under torchrun each rank uses cuda:LOCAL_RANK)
    num_workers: int = 2
    log_every: int = 10
    save_every: int = 500
    resume: bool = False  # continue from out_dir/checkpoints/last.pt
    progress: bool = True  # a tqdm bar on rank 0
    tensorboard: bool = True  # also write TensorBoard events when tensorboard is installed

    # ------------------------------------------------------------------ validation
    def validate(self) -> "TrainConfig":
        def bad(key: str, value: Any, expected: str) -> ClinclipError:
            return ClinclipError(f"train config: {key} = {value!r}: {expected}")

        positive_ints = ("epochs", "batch_size", "log_every", "save_every")
        for key in positive_ints:
            if getattr(self, key) < 1:
                raise bad(key, getattr(self, key), "expected an integer >= 1")
        if self.steps is not None and self.steps < 1:
            raise bad("steps", self.steps, "expected an integer >= 1 or null (then epochs decide)")
        if self.num_workers < 0:
            raise bad("num_workers", self.num_workers, "expected an integer >= 0")
        if not self.lr > 0:
            raise bad("lr", self.lr, "expected a number > 0")
        if self.weight_decay < 0:
            raise bad("weight_decay", self.weight_decay, "expected a number >= 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise bad("betas", list(self.betas), "expected two numbers in [0, 1)")
        if self.warmup_steps < 0 or self.warmup_epochs < 0:
            raise bad("warmup_steps" if self.warmup_steps < 0 else "warmup_epochs",
                      min(self.warmup_steps, self.warmup_epochs), "expected a number >= 0")
        if self.warmup_steps and self.warmup_epochs:
            raise bad("warmup_steps", self.warmup_steps, "give warmup_steps or warmup_epochs, not both "
                      f"(warmup_epochs = {self.warmup_epochs})")
        if not 0 <= self.min_lr_ratio <= 1:
            raise bad("min_lr_ratio", self.min_lr_ratio, "expected a number in [0, 1]")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise bad("grad_clip", self.grad_clip, "expected a number > 0 or null (no clipping)")
        if self.precision not in PRECISIONS:
            raise bad("precision", self.precision, f"allowed: {', '.join(PRECISIONS)}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise bad("device", self.device, "allowed: auto, cpu, cuda, cuda:N")
        d = self.data
        if not 0 < d.crop_scale_min <= 1:
            raise bad("data.crop_scale_min", d.crop_scale_min, "expected a number in (0, 1]")
        if not 0 <= d.clahe_p <= 1:
            raise bad("data.clahe_p", d.clahe_p, "expected a probability in [0, 1]")
        for key in ("brightness", "contrast"):
            if not 0 <= getattr(d, key) < 1:
                raise bad(f"data.{key}", getattr(d, key), "expected a number in [0, 1)")
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
    def model_config(self):
        """The ModelConfig of the model preset with ``model_overrides`` applied (unused with ``init``)."""
        from clinclip.models.config import ModelConfig

        return ModelConfig.from_preset(self.model, self.model_overrides or None)

    def loss_config(self):
        """The LossConfig of the variant with ``loss_overrides`` applied."""
        from clinclip.losses.config import LossConfig, load_variant
        from clinclip.models.config import apply_overrides

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
        import yaml

        header = ("# clinclip training config (reload with: clinclip train <this file> [key=value ...])\n")
        return header + yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.suffix not in (".yaml", ".yml"):
            path = path / CONFIG_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_yaml(), encoding="utf-8")
        tmp.replace(path)
        return path

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
        given = parse_overrides(overrides)
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
        given = parse_overrides(overrides)
        given.setdefault("model", model)
        return cls.build(variant, given)


# ---------------------------------------------------------------------- presets
def list_training_presets() -> list[str]:
    return sorted(p.stem for p in TRAINING_PRESET_DIR.glob("*.yaml"))


def load_training_preset(scale: str | None, model: str, explicit: bool) -> dict[str, Any]:
    """The training preset's values; the default scale is the model preset's name when such a preset exists."""
    import yaml

    name = scale if scale is not None else Path(str(model)).stem
    path = TRAINING_PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        if explicit:
            raise ClinclipError(f"train config: scale = {scale!r}: no training preset of that name; available: "
                                f"{', '.join(list_training_presets())}")
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ClinclipError(f"{path}: a training preset must be a mapping")
    return data


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


def parse_overrides(overrides: Mapping[str, Any] | Iterable[str] | None) -> dict[str, Any]:
    """``["lr=1e-4", "data.manifest=x.parquet"]`` or a mapping -> {dotted key: value}. String values stay raw
    here; they are parsed against the field's type when applied."""
    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        return dict(overrides)
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise ClinclipError(f"override {item!r}: expected key=value (e.g. steps=200, data.manifest=prep.parquet)")
        out[key.strip()] = value
    return out


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
            target[rest] = _yaml_value(raw)
            continue
        if head == "data" and rest:
            if rest not in data_hints:
                raise _unknown(key, where)
            setattr(cfg.data, rest, coerce(raw, data_hints[rest], key, where))
            continue
        if key == "data":
            raise ClinclipError(f"{where}: 'data' is a section; set its keys, e.g. data.manifest=...")
        if key not in hints:
            raise _unknown(key, where)
        if key in _PASS_THROUGH.values():
            if not isinstance(raw, Mapping):
                raise ClinclipError(f"{where}: {key} must be a mapping of dotted keys to values")
            getattr(cfg, key).update(raw)
            continue
        setattr(cfg, key, coerce(raw, hints[key], key, where))
    return cfg


def _unknown(key: str, where: str) -> ClinclipError:
    keys = _all_keys()
    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return ClinclipError(f"{where}: unknown config key {key!r}{hint} (known: {', '.join(keys)})")


def _yaml_value(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    import yaml

    try:
        return yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        return raw


_NONE_WORDS = {"", "null", "none", "~"}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def coerce(raw: Any, annotation: Any, key: str, where: str) -> Any:
    """``raw`` (a YAML value or a command-line string) as a value of ``annotation``, or a clear error."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in _NONE_WORDS):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return coerce(raw, inner[0], key, where)

    def fail(expected: str) -> ClinclipError:
        return ClinclipError(f"{where}: {key} = {raw!r}: expected {expected}")

    if annotation is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise fail("true or false")
    if annotation is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        if isinstance(raw, str):
            try:
                return int(raw.strip().replace("_", ""))
            except ValueError:
                try:
                    value = float(raw)
                except ValueError:
                    raise fail("an integer") from None
                if value.is_integer():
                    return int(value)
        raise fail("an integer")
    if annotation is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        if isinstance(raw, str):
            try:
                return float(raw)
            except ValueError:
                pass
        raise fail("a number")
    if annotation is str:
        if isinstance(raw, str):
            return raw
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return str(raw)
        raise fail("a string")
    if origin is tuple:
        value = _yaml_value(raw)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise fail(f"a list of {len(args)} values, e.g. [0.9, 0.98]")
        return tuple(coerce(v, a, key, where) for v, a in zip(value, args))
    if origin is dict:
        value = _yaml_value(raw)
        if not isinstance(value, Mapping):
            raise fail("a mapping")
        return dict(value)
    raise fail(str(annotation))  # pragma: no cover - every field type is handled above
