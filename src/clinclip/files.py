"""Reading the small JSON / YAML files every part has (configs, presets, prompt files, benchmarks), with
one set of error messages that name the file and what is wrong with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clinclip.errors import ClinclipError


def read_mapping(path: str | Path, what: str = "file") -> dict[str, Any]:
    """Parse ``path`` (JSON when it ends in ``.json``, else YAML) and return its top-level mapping.

    ``what`` names the file in the messages ("model config", "prompt file", ...). Raises ClinclipError
    when the file is absent, does not parse, or holds something other than a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ClinclipError(f"{path}: {what} not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ClinclipError(f"{path}: {what} is not valid JSON ({err})") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ClinclipError(f"{path}: {what} is not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ClinclipError(f"{path}: {what} must hold a mapping at the top level, got {type(data).__name__}")
    return data
