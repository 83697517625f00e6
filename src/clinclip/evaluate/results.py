"""The result of a task: one JSON-able dict, written as ``results.json`` plus a Markdown table beside it
(``results.md``).

Every task returns a dict with at least ``task``, ``model``, ``model_name``, ``dataset``, ``data``,
``split``, ``metrics`` (headline numbers, fractions in [0, 1]), ``table`` (``{"columns": [...],
"rows": [[...], ...]}`` for the Markdown file), ``skipped`` (reason -> count: nothing is silently
lost) and ``notes`` (sentences the reader must see, e.g. a pool smaller than the protocol asks).
Plots are base64 PNG strings under ``plots``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from clinclip.errors import ClinclipError


def jsonable(value):
    """A result (nested dicts/lists with numpy values) as plain JSON types; NaN and inf become null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


_jsonable = jsonable  # the name the demo imported first


def fmt(value, percent: bool = True) -> str:
    """A number for a table: percentages with one decimal (as in the paper), '–' for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{100 * value:.1f}" if percent else f"{value:.3f}"
    return str(value)


def markdown_table(result: dict) -> str:
    table = result.get("table") or {}
    columns, rows = table.get("columns", []), table.get("rows", [])
    title = f"## {result.get('task', 'result')} — {result.get('dataset', '')} ({result.get('model_name', '')})"
    lines = [title, ""]
    if columns:
        lines.append("| " + " | ".join(str(c) for c in columns) + " |")
        lines.append("|" + "---|" * len(columns))
        for row in rows:
            lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
        lines.append("")
    lines.append("Numbers are percentages unless a column says otherwise.")
    for note in result.get("notes", []):
        lines.append(f"- note: {note}")
    for reason, count in (result.get("skipped") or {}).items():
        lines.append(f"- skipped {count}: {reason}")
    return "\n".join(lines) + "\n"


def write_result(result: dict, out: str | Path) -> tuple[Path, Path]:
    """Write ``out`` (JSON) and the Markdown table beside it (same name, ``.md``)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(jsonable(result), indent=2))
    md = out.with_suffix(".md")
    md.write_text(markdown_table(result))
    return out, md


RUN_MODEL_FOLDER = "model"  # clinclip train writes the final model to RUN/model


def model_identity(model: str | Path) -> str:
    """The name a model gets in results when ``--name`` is not given: the run folder for a trained model
    (``runs/a/model`` -> ``a``), else the folder's (or hub name's, or open_clip spec's) last part."""
    path = Path(str(model).rstrip("/"))
    if path.name == RUN_MODEL_FOLDER and path.parent.name not in ("", "."):
        return path.parent.name
    return path.name or str(model)


def disambiguate_models(results: dict[str, dict]) -> dict[str, dict]:
    """Results where no two different models (``model``) share a ``model_name``: clashing names get the
    shortest part of the model path that tells them apart (``a/model`` vs ``b/model``). Inputs are not
    changed; results of one model under one name are left as they are."""
    by_name: dict[str, set[str]] = {}
    for r in results.values():
        by_name.setdefault(str(r.get("model_name", "model")), set()).add(str(r.get("model", "")))
    rename: dict[tuple[str, str], str] = {}
    for name, models in by_name.items():
        if len(models) < 2:
            continue
        parts = {m: Path(m).parts or (m,) for m in models}
        depth = 1
        while depth < max(len(p) for p in parts.values()) and \
                len({"/".join(p[-depth:]) for p in parts.values()}) < len(models):
            depth += 1
        for m, p in parts.items():
            rename[(name, m)] = f"{name} ({'/'.join(p[-depth:])})"
    out = {}
    for key, r in results.items():
        new = rename.get((str(r.get("model_name", "model")), str(r.get("model", ""))))
        out[key] = {**r, "model_name": new} if new else r
    return out


def check_unique_cells(results: dict[str, dict]) -> None:
    """Refuse two result files that fill the same table cell (same model, task and dataset): the table
    would show one of them silently."""
    from clinclip.errors import ClinclipError

    seen: dict[tuple, str] = {}
    for path, r in results.items():
        key = (r.get("model_name"), r.get("task"), r.get("dataset"))
        if key in seen:
            raise ClinclipError(f"{path}: same model {key[0]!r}, task {key[1]!r} and dataset {key[2]!r} as "
                                f"{seen[key]}; give one of them (or rename one with --name when evaluating)")
        seen[key] = path


def read_results(paths) -> dict[str, dict]:
    """Read results JSON files into ``{path: result}`` (the input of ``render_report``)."""
    results = {}
    for p in paths:
        p = Path(p)
        try:
            data = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ClinclipError(f"results file {p} could not be read as JSON: {err}") from err
        if not isinstance(data, dict) or "task" not in data:
            raise ClinclipError(f"results file {p} is not a clinclip result (no 'task' field)")
        results[str(p)] = data
    return results
