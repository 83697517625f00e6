"""Prompt files for zero-shot classification, adversarial prediction and negation retrieval.

A prompt file is YAML (bundled ones live in ``clinclip/evaluate/prompts/``; users may pass their own
path). It names the label columns of the manifest and the prompts of each class:

    name: SIIM Pneumothorax
    kind: binary            # binary: each class alone, positive vs negative prompts
                            # multiclass: one label per image, argmax over the classes' prompt ensembles
    metric: auc             # headline metric: auc | accuracy
    positive_template: "{class}"      # used where a class gives no explicit prompts
    negative_template: "No {class}"
    filter: {column: "No Finding", keep: [0]}   # optional: keep only these rows
    classes:
      - Pneumothorax                             # name == column, prompts from the templates
      - {name: Pleural effusion, column: Effusion}
      - {name: Pneumonia, positive: [...], negative: [...]}
      - {name: Edema, compose: [[...], [...], [...]]}   # product of parts joined by spaces (GLoRIA)

Prompt ensembles (several prompts per side or class) are averaged as similarities.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path


from clinclip.errors import ClinclipError
from clinclip.files import read_mapping

BUNDLED_PROMPT_FILES = ("chexpert14", "chexpert_5x200", "rsna", "rsna_ab", "siim", "vindr", "cxr14")


@dataclass
class PromptClass:
    name: str  # the words used in prompts
    column: str  # the manifest column holding this class's label
    positive: list[str]  # prompts stating the class ("X"); also the class ensemble of a multiclass file
    negative: list[str]  # prompts denying it ("No X")
    entity: bool = True  # False for "No Finding": not an entity for adversarial / negation retrieval


@dataclass
class PromptSet:
    name: str
    kind: str  # "binary" or "multiclass"
    metric: str  # "auc" or "accuracy"
    classes: list[PromptClass]
    filter_column: str | None = None
    filter_keep: list[float] = field(default_factory=list)
    source: str = ""

    @property
    def columns(self) -> list[str]:
        return [c.column for c in self.classes]


def _clean(prompt: str) -> str:
    # GLoRIA's composition leaves double/leading spaces where a part is empty
    return " ".join(str(prompt).split())


def _compose(parts: list[list[str]]) -> list[str]:
    return [_clean(" ".join(combo)) for combo in itertools.product(*parts)]


def resolve_prompt_file(name_or_path: str | Path) -> Path:
    """A bundled prompt file by name (``rsna``, ``chexpert_5x200``, ...) or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise ClinclipError(f"prompt file {path} does not exist")
        return path
    bundled = resources.files("clinclip.evaluate") / "prompts" / f"{name_or_path}.yaml"
    if not bundled.is_file():
        raise ClinclipError(f"unknown prompt file {name_or_path!r}: give a YAML path or one of "
                            f"{', '.join(BUNDLED_PROMPT_FILES)}")
    return Path(str(bundled))


def load_prompts(name_or_path: str | Path) -> PromptSet:
    """Read and validate a prompt file (see the module docstring for the format)."""
    path = resolve_prompt_file(name_or_path)
    raw = read_mapping(path, "prompt file")
    if not raw.get("classes"):
        raise ClinclipError(f"prompt file {path}: expected a mapping with a non-empty 'classes' list")
    kind = raw.get("kind", "binary")
    if kind not in ("binary", "multiclass"):
        raise ClinclipError(f"prompt file {path}: field 'kind' must be binary or multiclass, got {kind!r}")
    metric = raw.get("metric", "auc" if kind == "binary" else "accuracy")
    if metric not in ("auc", "accuracy"):
        raise ClinclipError(f"prompt file {path}: field 'metric' must be auc or accuracy, got {metric!r}")
    pos_t = raw.get("positive_template", "{class}")
    neg_t = raw.get("negative_template", "No {class}")
    classes = []
    for i, entry in enumerate(raw["classes"]):
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or "name" not in entry:
            raise ClinclipError(f"prompt file {path}: classes[{i}] needs a 'name'")
        name = str(entry["name"])
        if "compose" in entry:
            parts = entry["compose"]
            if not isinstance(parts, list) or not all(isinstance(p, list) and p for p in parts):
                raise ClinclipError(f"prompt file {path}: classes[{i}].compose must be a list of "
                                    "non-empty lists")
            positive = _compose(parts)
        else:
            positive = [_clean(p) for p in entry.get("positive", [pos_t.replace("{class}", name)])]
        negative = [_clean(p) for p in entry.get("negative", [neg_t.replace("{class}", name)])]
        if not positive or not negative:
            raise ClinclipError(f"prompt file {path}: classes[{i}] ({name}) has no prompts")
        classes.append(PromptClass(name=name, column=str(entry.get("column", name)), positive=positive,
                                   negative=negative, entity=bool(entry.get("entity", True))))
    flt = raw.get("filter") or {}
    return PromptSet(name=str(raw.get("name", path.stem)), kind=kind, metric=metric, classes=classes,
                     filter_column=flt.get("column"), filter_keep=[float(v) for v in flt.get("keep", [])],
                     source=str(path))
