"""The manifest: the one table every part passes on (docs/ARCHITECTURE.md "Data manifest" and "Prepared
manifest"). This module owns its schema (columns, label values, the report-graph JSON), its one reader and
its one writer, and the two row selections every consumer makes (one split; rows text preparation skipped).

A data manifest (written by ``clinclip data``) has ``BASE_COLUMNS`` and, where the dataset has them, the 14
observation columns. A prepared manifest (``clinclip text prepare``) keeps every input column and adds
``PREPARED_COLUMNS``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clinclip.errors import ClinclipError
from clinclip.files import atomic_path, read_csv
from clinclip.observations import LABEL_NEGATIVE, LABEL_POSITIVE, LABEL_UNCERTAIN, OBSERVATIONS

# --- the schema -------------------------------------------------------------------------------------

BASE_COLUMNS: tuple[str, ...] = ("image_path", "image_id", "study_id", "patient_id", "split", "view", "report")
SPLITS: tuple[str, ...] = ("train", "validate", "test")
LABEL_VALUES: tuple[float, ...] = (LABEL_POSITIVE, LABEL_NEGATIVE, LABEL_UNCERTAIN)  # a blank (not mentioned) is NaN
SKIP_COLUMN = "skip_reason"
# How an ``image_path``'s image is brought to the model's square input (a model config field; applied by
# clinclip.data.transforms): shorter side to the size then centre crop, or squashed straight to the size.
RESIZE_MODES: tuple[str, ...] = ("shorter_crop", "squash")

# The columns text preparation adds, with their Arrow types (typed explicitly: an empty or all-null column
# has no type to infer).
PREPARED_TYPES: dict[str, pa.DataType] = {
    "findings": pa.string(), "impression": pa.string(), "sentences": pa.list_(pa.string()), "text": pa.string(),
    **{name: pa.float64() for name in OBSERVATIONS}, "text_negated": pa.string(), "text_removed": pa.string(),
    "negated_entity": pa.string(), "negation_position": pa.string(), "negated_labels": pa.list_(pa.float64()),
    "graph": pa.string(), "graph_negated": pa.string(), SKIP_COLUMN: pa.string(),
}
PREPARED_COLUMNS: tuple[str, ...] = tuple(PREPARED_TYPES)

# The report graph (``graph`` / ``graph_negated`` columns) is RadGraph's JSON:
#   {"text": "<tokens joined by spaces>",
#    "entities": {"<id>": {"tokens", "label", "start_ix", "end_ix" (inclusive token indices),
#                          "relations": [[<relation type>, "<target id>"], ...]}}}
# A report with no entity has the single EMPTY node below.
ENTITY_TYPES: tuple[str, ...] = ("ANAT-DP", "OBS-DP", "OBS-U", "OBS-DA")
EMPTY_ENTITY_TYPE = "EMPTY"
GRAPH_NODE_TYPES: tuple[str, ...] = (*ENTITY_TYPES, EMPTY_ENTITY_TYPE)  # what a graph encoder embeds
RELATION_TYPES: tuple[str, ...] = ("modify", "located_at", "suggestive_of")
EMPTY_PHRASE = "no entity"
EMPTY_NODE = {"tokens": EMPTY_PHRASE, "label": EMPTY_ENTITY_TYPE, "start_ix": -1, "end_ix": -1, "relations": []}
ENTITY_KEYS = frozenset(("tokens", "label", "start_ix", "end_ix", "relations"))


def validate_graph(graph: dict) -> None:
    """Raise ValueError when ``graph`` breaks the report-graph schema."""
    if set(graph) != {"text", "entities"} or not isinstance(graph["entities"], dict) or not graph["entities"]:
        raise ValueError(f"graph must have exactly 'text' and a non-empty 'entities': {list(graph)}")
    tokens = graph["text"].split()
    ents = graph["entities"]
    for key, ent in ents.items():
        if set(ent) != ENTITY_KEYS:
            raise ValueError(f"entity {key}: keys {sorted(ent)}")
        if ent["label"] == EMPTY_ENTITY_TYPE:
            if len(ents) != 1:
                raise ValueError("the EMPTY placeholder must be the only node")
            continue
        if ent["label"] not in ENTITY_TYPES:
            raise ValueError(f"entity {key}: label {ent['label']}")
        if not 0 <= ent["start_ix"] <= ent["end_ix"] < len(tokens):
            raise ValueError(f"entity {key}: span {ent['start_ix']}..{ent['end_ix']} outside {len(tokens)} tokens")
        if ent["tokens"] != " ".join(tokens[ent["start_ix"]:ent["end_ix"] + 1]):
            raise ValueError(f"entity {key}: tokens '{ent['tokens']}' do not match its span")
        for kind, target in ent["relations"]:
            if kind not in RELATION_TYPES or target not in ents or target == key:
                raise ValueError(f"entity {key}: bad relation {kind} -> {target}")


# --- reading ----------------------------------------------------------------------------------------


def read_table(path: str | Path, required: Iterable[str] = (), *, what: str = "", strip_headers: bool = False,
               **read_kwargs) -> pd.DataFrame:
    """Read a CSV (.csv/.csv.gz, by pandas) or Parquet and check its columns: a missing file or column is an
    error naming the file, the missing columns and the columns found."""
    path = Path(path)
    label = f"{what} {path}" if what else str(path)
    if not path.is_file():
        raise ClinclipError(f"{label} not found")
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:  # a row with an extra field is an error naming the line, never a silent column shift
            frame = read_csv(path, what or "table", allow_empty=True, **read_kwargs)
    except ClinclipError:
        raise
    except Exception as err:  # noqa: BLE001 - pandas parser / gzip / encoding errors
        raise ClinclipError(f"{label} could not be read: {type(err).__name__}: {err}") from None
    if strip_headers:  # e.g. SIIM's " EncodedPixels" has a leading space in the published file
        frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ClinclipError(f"{label}: missing column(s) {missing}; columns found: {list(frame.columns)}")
    return frame


def blank(values: pd.Series) -> np.ndarray:
    """Where a column is missing or only white space."""
    return (values.isna() | (values.astype(str).str.strip() == "")).to_numpy()


def read_manifest(path: str | Path, image_root: str | Path | None = None) -> pd.DataFrame:
    """A data or prepared manifest (Parquet, or CSV with the id columns read as text).

    A relative ``image_path`` is made absolute against ``image_root`` (default: the manifest's folder); a blank
    one stays ''. ``image_id`` is filled from the file stem where the manifest lacks it; the id columns are
    strings (CXR-Align matches on them)."""
    path = Path(path)
    if path.suffix == ".parquet":
        frame = read_table(path, ["image_path"], what="manifest")
    else:
        ids = {c: str for c in BASE_COLUMNS if c != "report"}
        frame = read_table(path, ["image_path"], what="manifest", dtype=ids, low_memory=False)
    root = Path(image_root).expanduser() if image_root else path.resolve().parent
    missing = blank(frame["image_path"])
    frame["image_path"] = ["" if gone else str(root / Path(str(p)).expanduser())
                           for p, gone in zip(frame["image_path"], missing)]
    if "image_id" not in frame.columns:
        frame["image_id"] = [Path(p).stem for p in frame["image_path"]]
    for column in ("image_id", "study_id"):
        if column in frame.columns:
            frame[column] = frame[column].astype(str)
    return frame


def check_manifest(frame: pd.DataFrame, where: str = "manifest") -> None:
    """The contract every adapter's output satisfies (used by the adapters and their tests)."""
    missing = [c for c in BASE_COLUMNS if c not in frame.columns]
    if missing:
        raise ClinclipError(f"{where}: missing column(s) {missing}; columns found: {list(frame.columns)}")
    bad = sorted(set(frame["split"]) - set(SPLITS))
    if bad:
        raise ClinclipError(f"{where}: unknown split value(s) {bad}; expected {list(SPLITS)}")
    if frame["image_path"].duplicated().any():
        dup = frame.loc[frame["image_path"].duplicated(), "image_path"].iloc[0]
        raise ClinclipError(f"{where}: image_path {dup} appears more than once")


# --- selecting rows ---------------------------------------------------------------------------------


def select_split(frame: pd.DataFrame, split: str | None, manifest: str | Path = "manifest") -> pd.DataFrame:
    """Rows of one split (every row when ``split`` is None or 'all'); an error names the splits present."""
    if split and split != "all":
        if "split" not in frame.columns:
            raise ClinclipError(f"{manifest}: no 'split' column; pass --split all to use every row")
        splits = frame["split"].astype(str)
        sub = frame[splits == split]
        if sub.empty:
            raise ClinclipError(f"{manifest}: no row with split == {split!r} (splits present: "
                                f"{sorted(splits.unique())})")
        frame = sub
    return frame.reset_index(drop=True)


def skipped(frame: pd.DataFrame) -> np.ndarray:
    """Where text preparation left a row out (a non-blank ``skip_reason``)."""
    if SKIP_COLUMN not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return ~blank(frame[SKIP_COLUMN])


def drop_skipped(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Leave out the rows text preparation skipped; count them by reason."""
    mask = skipped(frame)
    reasons = frame.loc[mask, SKIP_COLUMN].astype(str).value_counts() if mask.any() else {}
    counts = {f"prepared row skipped: {r}": int(n) for r, n in dict(reasons).items()}
    return frame[~mask].reset_index(drop=True), counts


# --- writing ----------------------------------------------------------------------------------------


def _arrow_table(frame: pd.DataFrame) -> pa.Table:
    """Input columns as pandas infers them; the prepared columns with their declared types."""
    fields, arrays = [], []
    for name in frame.columns:
        values = frame[name]
        if name in PREPARED_TYPES:
            kind = PREPARED_TYPES[name]
            arrays.append(pa.array([None if _is_missing(v) else v for v in values], type=kind))
        else:
            arrays.append(pa.Array.from_pandas(values))
        fields.append(pa.field(str(name), arrays[-1].type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def write_manifest(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a manifest (or a table of skipped rows): Parquet for ``.parquet`` (same frame -> same bytes),
    CSV otherwise; atomically (a temporary file in the same folder, then renamed)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            pq.write_table(_arrow_table(frame), str(tmp))
        else:
            frame.to_csv(tmp, index=False)
    return path
