"""Reading reports: a CSV / Parquet table with a text column, or a folder of ``.txt`` reports.

``read_reports(input, text_column) -> DataFrame`` with columns ``report_id``, ``report`` (the text,
"" when unreadable or empty), ``source`` (file the row came from) and ``read_error`` (None, or why
the report could not be read). Every input row / file gives one output row: nothing is silently lost.
Other columns of a table are kept.

Folder layout: any tree of ``.txt`` files, searched recursively; MIMIC-CXR's
``files/pNN/pSUBJECT/sSTUDY.txt`` gives ``report_id`` = ``sSTUDY`` (the file stem) and
``patient_id`` = ``pSUBJECT`` when the parent folder looks like one.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pandas as pd

from clinclip.errors import ClinclipError
from clinclip.files import read_csv

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}


def _read_table(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    for suffix in (".gz", ".bz2", ".zip", ".xz"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    kind = next((k for s, k in TABLE_SUFFIXES.items() if name.endswith(s)), None)
    if kind is None:
        raise ClinclipError(f"{path}: unknown table format (expected .csv, .tsv, .parquet, or a folder of .txt)")
    if kind != "parquet":
        return read_csv(path, "report table", sep="\t" if kind == "tsv" else ",", dtype=str, keep_default_na=False,
                        compression="infer", encoding_errors="replace")
    try:
        frame = pd.read_parquet(path)
    except (ValueError, OSError) as err:
        raise ClinclipError(f"{path}: cannot read the table: {err}") from err
    if frame.empty:
        raise ClinclipError(f"{path}: the table has no rows")
    return frame


def _read_folder(folder: Path) -> pd.DataFrame:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".txt" and not p.is_dir())
    if not files:
        raise ClinclipError(f"{folder}: no .txt reports found (searched recursively)")
    rows = []
    for p in files:
        text, error = _read_text(p)
        parent = p.parent.name
        rows.append({
            "report_id": p.stem,
            "patient_id": parent if parent[:1] == "p" and parent[1:].isdigit() else None,
            "report": text,
            "source": str(p),
            "read_error": error,
        })
    frame = pd.DataFrame(rows)
    frame["read_error"] = pd.Series([r["read_error"] for r in rows], dtype=object)  # keep None, not NaN
    return frame


def _control_characters(text: str) -> int:
    return sum(1 for c in text if unicodedata.category(c) == "Cc" and c not in "\t\n\r\f\v")


def _read_text(path: Path) -> tuple[str, str | None]:
    """(text, None) of a report, or ("", why) for a file that is not text: unreadable, or binary (NUL or
    other control bytes). UTF-8 first; a file that is not UTF-8 is read as Windows-1252 (old Western
    reports) only when that gives clean text, since a one-byte encoding decodes any binary file."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        return "", f"unreadable: {err.strerror or err}"
    if b"\x00" in raw:
        return "", "binary file (NUL bytes), not a text report"
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        try:
            text = raw.decode("cp1252")
        except UnicodeDecodeError:
            return "", f"not text: byte 0x{raw[err.start]:02x} at offset {err.start} is neither UTF-8 nor Windows-1252"
    bad = _control_characters(text)
    if bad:
        return "", f"binary file ({bad} control characters), not a text report"
    return text, None


def has_error(value) -> bool:
    """Whether a ``read_error`` cell holds an error (None / NaN / "" mean no error)."""
    return isinstance(value, str) and bool(value)


def read_reports(input: str | Path, text_column: str | None = "report") -> pd.DataFrame:
    """Reports of a table (``text_column`` holds the text) or of a folder of ``.txt`` files."""
    path = Path(input)
    if not path.exists():
        raise ClinclipError(f"input not found: {path}")
    if path.is_dir():
        return _read_folder(path)
    frame = _read_table(path)
    if text_column not in frame.columns:
        raise ClinclipError(f"{path}: no column {text_column!r}; the file has columns {list(frame.columns)}")
    out = frame.copy()
    texts = out[text_column]
    out["report"] = [t if isinstance(t, str) else ("" if t is None or pd.isna(t) else str(t)) for t in texts]
    if "report_id" not in out.columns:
        out["report_id"] = [str(i) for i in range(len(out))]
    out["source"] = [f"{path}:row {i + 2}" for i in range(len(out))]
    out["read_error"] = None
    return out
