"""The one configuration system: the preset registry and the typed dotted-override path (torch-free).

Presets are YAML data in ``clinclip/presets/<kind>/<name>.yaml``; a kind is a folder (``models``,
``variants``, ``training``, ``demo``, ...). ``load_preset(kind, name_or_path)`` reads a bundled preset by name or
any YAML/JSON file by path, through ``clinclip.files.read_mapping``; ``register_preset_folder`` adds a
folder of presets of a kind (an application's own presets).

Overrides are ``key=value`` strings or a mapping of dotted keys (``text.pooling``, ``data.manifest``).
``apply_overrides`` sets them in a nested mapping; ``coerce`` turns a command-line string or YAML value into
a field's annotated type, or raises an error naming where, the key, the value and what was expected.
``check_number`` is the range check a config's ``validate`` uses (finite, bounds).
"""

from __future__ import annotations

import copy
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from clinclip.errors import ClinclipError
from clinclip.files import read_mapping

PRESET_ROOT = Path(__file__).resolve().parent / "presets"
_EXTRA_FOLDERS: dict[str, list[Path]] = {}


# ---------------------------------------------------------------------- presets


def register_preset_folder(kind: str, folder: str | Path) -> None:
    """Make the ``*.yaml`` files in ``folder`` presets of ``kind`` (searched after the bundled ones)."""
    folders = _EXTRA_FOLDERS.setdefault(kind, [])
    if Path(folder) not in folders:
        folders.append(Path(folder))


def _folders(kind: str) -> list[Path]:
    return [PRESET_ROOT / kind, *_EXTRA_FOLDERS.get(kind, [])]


def list_presets(kind: str) -> list[str]:
    """Names of the presets of ``kind``."""
    return sorted({p.stem for folder in _folders(kind) if folder.is_dir() for p in folder.glob("*.yaml")})


def preset_path(kind: str, name_or_path: str | Path, what: str | None = None) -> Path:
    """The file of a preset given by name (``tiny``) or by path (anything with a suffix or a folder part);
    an unknown name is an error listing the known ones."""
    what = what or f"{kind} preset"
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.suffix or len(path.parts) > 1:
        if not path.is_file():
            raise ClinclipError(f"{what} file not found: {path}")
        return path
    for folder in _folders(kind):
        candidate = folder / f"{text}.yaml"
        if candidate.is_file():
            return candidate
    raise ClinclipError(f"unknown {what} {text!r}; available: {', '.join(list_presets(kind)) or 'none'} "
                        "(or give a path to a .yaml file)")


def load_preset(kind: str, name_or_path: str | Path, what: str | None = None) -> tuple[dict[str, Any], str]:
    """A preset's mapping and a name for messages (the bundled preset's name or the file's path)."""
    path = preset_path(kind, name_or_path, what)
    bundled = any(path.parent == folder for folder in _folders(kind))
    where = f"{what or kind + ' preset'} {path.name}" if bundled else str(path)
    return read_mapping(path, what or f"{kind} preset"), where


# ---------------------------------------------------------------------- overrides


def parse_overrides(overrides: Mapping[str, Any] | Iterable[str] | None,
                    example: str = "steps=200") -> dict[str, Any]:
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
            raise ClinclipError(f"override {item!r}: expected key=value (e.g. {example})")
        out[key.strip()] = value
    return out


def yaml_value(raw: Any) -> Any:
    """A command-line string parsed as YAML (``[0.9, 0.98]`` -> a list, ``1e-4`` -> a float); other values
    and strings that are not YAML are returned as they are."""
    if not isinstance(raw, str):
        return raw
    try:
        return yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        return raw


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A copy of the nested mapping ``data`` with dotted keys (``text.pooling``) set; sections that are null
    are created. The config's own ``from_dict`` checks the result."""
    data = copy.deepcopy(dict(data))
    for dotted, value in overrides.items():
        keys = dotted.split(".")
        node = data
        for key in keys[:-1]:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict):
                raise ClinclipError(f"{where}: override {dotted!r}: {key!r} is not a section")
        node[keys[-1]] = value
    return data


def unknown_key(key: str, known: list[str], where: str) -> ClinclipError:
    """The error for a key no config field has, with the closest known keys."""
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return ClinclipError(f"{where}: unknown config key {key!r}{hint} (known: {', '.join(known)})")


_NONE_WORDS = {"", "null", "none", "~"}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def coerce(raw: Any, annotation: Any, key: str, where: str) -> Any:
    """``raw`` (a YAML value or a command-line string) as a value of ``annotation`` (bool, int, float, str,
    ``X | None``, ``tuple[...]``, ``dict``), or an error naming ``where``, ``key``, the value and the type.
    Numbers must be finite (``nan``/``inf`` are refused)."""
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
        value = _number(raw)
        if value is None or not math.isfinite(value) or not float(value).is_integer():
            raise fail("an integer")
        return int(value)
    if annotation is float:
        value = _number(raw)
        if value is None or not math.isfinite(value):
            raise fail("a finite number")
        return float(value)
    if annotation is str:
        if isinstance(raw, str):
            return raw
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return str(raw)
        raise fail("a string")
    if origin is tuple:
        value = yaml_value(raw)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise fail(f"a list of {len(args)} values, e.g. [0.9, 0.98]")
        return tuple(coerce(v, a, key, where) for v, a in zip(value, args))
    if origin is dict or annotation is dict:
        value = yaml_value(raw)
        if not isinstance(value, Mapping):
            raise fail("a mapping")
        return dict(value)
    raise fail(str(annotation))  # pragma: no cover - every field type in use is handled above


def _number(raw: Any) -> int | float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        return raw
    if isinstance(raw, str):
        text = raw.strip().replace("_", "")
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
    return None


def check_number(where: str, key: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, none_means: str | None = None) -> None:
    """Raise an error naming ``key`` unless ``value`` is a finite number in the given range (``low_open`` /
    ``high_open``: the bound itself is excluded). ``none_means``: None is allowed and means this."""
    if value is None and none_means is not None:
        return
    lower = "" if low is None else (f"> {low}" if low_open else f">= {low}")
    upper = "" if high is None else (f"< {high}" if high_open else f"<= {high}")
    wanted = " and ".join(b for b in (lower, upper) if b)
    expected = f"a finite number{' ' + wanted if wanted else ''}" + (f", or null ({none_means})" if none_means else "")
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise ClinclipError(f"{where}: {key} = {value!r}: expected {expected}")
