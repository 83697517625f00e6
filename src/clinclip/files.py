"""Reading the small JSON / YAML files every part has (configs, presets, prompt files, benchmarks), with
one set of error messages that name the file and what is wrong with it; and the one way every part writes a
file atomically."""

from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

from clinclip.errors import ClinclipError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed onto ``path`` when the block ends without an
    error, removed otherwise. A killed run never leaves a half-written file, and parallel writers never read
    one. The temporary name ends in ``path``'s suffix, so writers that pick a format by suffix still work."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unique per process and thread (parallel writers); created by the writer, so with the usual permissions.
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through ``atomic_path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def read_mapping(path: str | Path, what: str = "file") -> dict[str, Any]:
    """Parse ``path`` (JSON when it ends in ``.json``, else YAML) and return its top-level mapping.

    ``what`` names the file in the messages ("model config", "prompt file", ...). Raises ClinclipError
    when the file is absent, does not parse, or holds something other than a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ClinclipError(f"{path}: {what} not found")
    return parse_mapping(path.read_text(encoding="utf-8"), str(path), what, as_json=path.suffix == ".json")


def parse_mapping(text: str, where: str, what: str = "file", as_json: bool = False) -> dict[str, Any]:
    """``read_mapping`` for text already in hand (e.g. a config stored in a checkpoint); ``where`` names it."""
    if as_json:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ClinclipError(f"{where}: {what} is not valid JSON ({err})") from None
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ClinclipError(f"{where}: {what} is not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ClinclipError(f"{where}: {what} must hold a mapping at the top level, got {type(data).__name__}")
    return data


def _first_bad_line(path: Path, sep: str, n_fields: int) -> tuple[int, int] | None:
    """(line number, field count) of the first CSV record whose field count differs from the header's."""
    import csv
    import gzip

    csv.field_size_limit(2**31 - 1)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.reader(handle, delimiter=sep)
        start = 1
        for i, row in enumerate(reader):
            if i and row and len(row) != n_fields:
                return start, len(row)
            start = reader.line_num + 1
    return None


def read_csv(path: str | Path, what: str = "table", **kwargs):
    """``pandas.read_csv`` that never shifts columns: a record with more or fewer fields than the header
    is an error naming the file and the line (pandas would silently take an extra first field as the row
    index and move every value one column left). An empty file, or a header with no row, is an error too
    unless ``allow_empty=True``."""
    import pandas as pd

    path = Path(path)
    allow_empty = kwargs.pop("allow_empty", False)
    sep = kwargs.get("sep", ",")
    try:
        frame = pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:
        raise ClinclipError(f"{path}: {what} is empty (no header line)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as err:
        message = " ".join(str(err).split())
        raise ClinclipError(f"{path}: {what} could not be read: {message}") from None
    if "index_col" not in kwargs and not isinstance(frame.index, pd.RangeIndex):
        bad = _first_bad_line(path, sep, len(frame.columns))
        where = f"line {bad[0]} has {bad[1]} fields" if bad else "a record has more fields"
        raise ClinclipError(f"{path}: {what} {where}, the header has {len(frame.columns)} "
                            f"({', '.join(map(str, frame.columns))}); quote fields that hold the separator")
    if frame.empty and not allow_empty:
        raise ClinclipError(f"{path}: {what} has a header but no rows")
    return frame


def file_fingerprint(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB blocks: names the exact data a model was trained on."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
