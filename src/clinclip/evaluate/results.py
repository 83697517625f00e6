"""The result of a task: one JSON-able dict, written as ``results.json`` with its table beside it as
Markdown (``results.md``), CSV (``results.csv``: fractions, one column per interval bound) and LaTeX
(``results.tex``: percentages as in the paper, ``value (low–high)``, a ``tabular`` to ``\input``).

Every task returns a dict with at least ``task``, ``model``, ``model_name``, ``dataset``, ``data``,
``split``, ``metrics`` (headline numbers, fractions in [0, 1]), ``table`` (``{"columns": [...],
"rows": [[...], ...]}`` for the Markdown file), ``skipped`` (reason -> count: nothing is silently
lost) and ``notes`` (sentences the reader must see, e.g. a pool smaller than the protocol asks).
Plots are base64 PNG strings under ``plots``. A table column named ``"<col> 95% CI"`` right after
``<col>`` holds ``[low, high]`` intervals; Markdown and LaTeX show them inside ``<col>``'s cells.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

from clinclip.errors import ClinclipError

CI_SUFFIX = " 95% CI"


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


class Estimate(NamedTuple):
    """A table cell with its confidence interval: shown as ``value (low–high)``."""

    value: float | None
    ci: list | None


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def _is_interval(value) -> bool:
    return (isinstance(value, (list, tuple)) and not isinstance(value, Estimate) and len(value) == 2
            and all(_is_missing(v) or isinstance(v, (int, float, np.number)) for v in value))


def fmt(value, percent: bool = True) -> str:
    """A number for a table: percentages with one decimal (as in the paper), '–' for missing; an interval
    ``[low, high]`` as ``low–high``; an :class:`Estimate` as ``value (low–high)``."""
    if isinstance(value, Estimate):
        if value.ci is None or all(_is_missing(v) for v in value.ci):
            return fmt(value.value, percent)
        return f"{fmt(value.value, percent)} ({fmt(value.ci, percent)})"
    if _is_interval(value):
        return "–" if all(_is_missing(v) for v in value) else f"{fmt(value[0], percent)}–{fmt(value[1], percent)}"
    if _is_missing(value):
        return "–"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{100 * value:.1f}" if percent else f"{value:.3f}"
    return str(value)


def merged_table(result: dict) -> tuple[list[str], list[list]]:
    """The result's table with each ``"<col> 95% CI"`` column folded into ``<col>`` as :class:`Estimate`s."""
    table = result.get("table") or {}
    columns, rows = list(table.get("columns", [])), [list(r) for r in table.get("rows", [])]
    keep = [i for i, c in enumerate(columns)
            if not (str(c).endswith(CI_SUFFIX) and i and columns[i - 1] == str(c)[:-len(CI_SUFFIX)])]
    merged_rows = []
    for row in rows:
        cells = []
        for i in keep:
            value = row[i] if i < len(row) else None
            if i + 1 < len(columns) and i + 1 not in keep and i + 1 < len(row):
                value = Estimate(value, row[i + 1])
            cells.append(value)
        merged_rows.append(cells)
    return [columns[i] for i in keep], merged_rows


def table_frame(result: dict):
    """The result's table as a DataFrame of plain values (fractions as stored), each interval column split
    into ``"<col> 95% CI low"`` and ``"... high"`` (the CSV file)."""
    import pandas as pd

    table = result.get("table") or {}
    columns, rows = list(table.get("columns", [])), table.get("rows", [])
    data: dict[str, list] = {}
    for i, name in enumerate(columns):
        values = [jsonable(row[i]) if i < len(row) else None for row in rows]
        if str(name).endswith(CI_SUFFIX) or any(_is_interval(v) for v in values):
            data[f"{name} low"] = [v[0] if _is_interval(v) else None for v in values]
            data[f"{name} high"] = [v[1] if _is_interval(v) else None for v in values]
        else:
            data[str(name)] = values
    return pd.DataFrame(data)


def latex_table(result: dict) -> str:
    """The result's table as a LaTeX ``tabular`` (booktabs rules), numbers formatted as in Markdown."""
    import pandas as pd

    columns, rows = merged_table(result)
    frame = pd.DataFrame([[fmt(v).replace("–", "--") for v in row] for row in rows],
                         columns=[str(c) for c in columns])
    caption = (f"{result.get('task', 'result')} -- {result.get('dataset', '')} ({result.get('model_name', '')}); "
               "percentages, 95\\% bootstrap intervals in parentheses where given")
    body = frame.to_latex(index=False, escape=True, column_format="l" + "r" * (len(columns) - 1))
    return f"% {caption}\n{body}"


def markdown_table(result: dict) -> str:
    columns, rows = merged_table(result)
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


class ResultFiles(NamedTuple):
    json: Path
    markdown: Path
    csv: Path
    latex: Path


def write_result(result: dict, out: str | Path) -> ResultFiles:
    """Write ``out`` (JSON) and its table beside it (same name): ``.md``, ``.csv`` and ``.tex``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    files = ResultFiles(out, out.with_suffix(".md"), out.with_suffix(".csv"), out.with_suffix(".tex"))
    files.json.write_text(json.dumps(jsonable(result), indent=2))
    files.markdown.write_text(markdown_table(result))
    table_frame(result).to_csv(files.csv, index=False)
    files.latex.write_text(latex_table(result), encoding="utf-8")
    return files


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
