"""One offline HTML page from results JSON files, laid out like the paper's Tables 2-6.

``render_report(results, out_html, extra_sections=(), title=...)``: ``results`` maps a name (usually the
results file path) to a result dict as written by ``clinclip eval``; each table has one row per model
(``model_name``) and the paper's columns, filled from the results present; a cell with no result shows
"–". Plots (``plots`` of a result, and any extra section) are embedded as base64 PNG, so the page has no
external reference and opens offline. ``extra_sections`` is a sequence of ``(title, html_fragment)``
pairs appended after the tables (the demo adds its training curves this way; ``figure_html`` turns a
matplotlib figure into such a fragment).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
from pathlib import Path
from typing import Iterable, Sequence

from clinclip.evaluate.results import Estimate, disambiguate_models, fmt, merged_table

EMPTY = "–"

# Paper column names for the bundled prompt files / usual dataset names.
CLASSIFICATION_COLUMNS = {  # Table 2: dataset -> settings shown
    "RSNA": ("ZS", "FT10", "FT100"), "RSNA-ab": ("ZS", "FT10", "FT100"), "SIIM": ("ZS", "FT10", "FT100"),
    "VinDr": ("ZS",), "CheXpert": ("ZS",), "CXR14": ("ZS",),
}
DATASET_ALIASES = {"RSNA Pneumonia": "RSNA", "SIIM Pneumothorax": "SIIM", "VinDr-CXR": "VinDr",
                   "CheXpert 5x200": "CheXpert", "ChestX-ray14": "CXR14"}
RETRIEVAL_DATASETS = ("MIMIC", "CheXpert", "Open-I")
ALIGN_SOURCES = {"mimic": "MIMIC", "chexpert": "CheXpert", "openi": "Open-I"}


def _retrieval_name(dataset: str) -> str:
    low = dataset.lower()
    if "mimic" in low:
        return "MIMIC"
    if "chexpert" in low:
        return "CheXpert"
    if "openi" in low or "open-i" in low or low.startswith("iu") or "indiana" in low:
        return "Open-I"
    return dataset


def figure_html(figure_or_png, alt: str = "plot", width: int | None = None) -> str:
    """An ``<img>`` with the plot inlined as base64 PNG: a matplotlib figure, PNG bytes, or a base64
    string."""
    if isinstance(figure_or_png, str):
        data = figure_or_png
    else:
        if isinstance(figure_or_png, (bytes, bytearray)):
            raw = bytes(figure_or_png)
        else:
            buf = io.BytesIO()
            figure_or_png.savefig(buf, format="png", dpi=110, bbox_inches="tight")
            raw = buf.getvalue()
        data = base64.b64encode(raw).decode("ascii")
    style = f' style="max-width:{width}px"' if width else ""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"{style}>'


def _cell(value) -> str:
    text = fmt(value)
    cls = ' class="empty"' if text == EMPTY else ""
    return f"<td{cls}>{html.escape(text)}</td>"


def _table(header_rows: Sequence[Sequence[tuple[str, int]]], body: Iterable[tuple[str, Sequence]]) -> str:
    out = ["<table>"]
    for i, hrow in enumerate(header_rows):
        cells = "".join(f'<th colspan="{span}">{html.escape(name)}</th>' for name, span in hrow)
        out.append(f"<tr>{'<th></th>' if i else '<th>Model</th>'}{cells}</tr>")
    for model, values in body:
        out.append(f"<tr><th class='model'>{html.escape(model)}</th>{''.join(_cell(v) for v in values)}</tr>")
    out.append("</table>")
    return "\n".join(out)


def _estimate(values: dict | None, key: str):
    """``values[key]`` with its bootstrap interval ``values[key + '_ci']`` when the result has one."""
    values = values or {}
    ci = values.get(f"{key}_ci")
    return Estimate(values.get(key), ci) if ci is not None else values.get(key)


def _by_task(results: dict[str, dict], task: str) -> list[dict]:
    return [r for r in results.values() if r.get("task") == task]


def _models(results: dict[str, dict]) -> list[str]:
    return list(dict.fromkeys(r.get("model_name", "model") for r in results.values()))


def _classification_table(results: dict[str, dict], models: list[str]) -> str:
    cells: dict[tuple[str, str, str], float] = {}
    datasets = dict(CLASSIFICATION_COLUMNS)
    for r in _by_task(results, "zero-shot"):
        name = DATASET_ALIASES.get(r.get("dataset", ""), r.get("dataset", ""))
        datasets.setdefault(name, ("ZS",))
        cells[(r.get("model_name", "model"), name, "ZS")] = _estimate(r.get("metrics"), "score")
    for r in _by_task(results, "finetune"):
        name = DATASET_ALIASES.get(r.get("dataset", ""), r.get("dataset", ""))
        settings = tuple(dict.fromkeys(datasets.get(name, ("ZS",)) + tuple((r.get("metrics") or {}))))
        datasets[name] = settings
        for setting, value in (r.get("metrics") or {}).items():
            cells[(r.get("model_name", "model"), name, setting)] = value
    header = [[(d, len(s)) for d, s in datasets.items()],
              [(s, 1) for d, settings in datasets.items() for s in settings]]
    body = [(m, [cells.get((m, d, s)) for d, settings in datasets.items() for s in settings]) for m in models]
    return _table(header, body)


def _single_metric_table(results: dict[str, dict], models: list[str], task: str, key: str, label: str) -> str:
    rs = _by_task(results, task)
    datasets = list(dict.fromkeys(r.get("dataset", "") for r in rs)) or [""]
    cells = {(r.get("model_name", "model"), r.get("dataset", "")): _estimate(r.get("metrics"), key) for r in rs}
    if datasets == [""]:
        header = [[(label, 1)]]
    else:
        header = [[(d or "(unnamed)", 1) for d in datasets], [(label, 1) for _ in datasets]]
    return _table(header, [(m, [cells.get((m, d)) for d in datasets]) for m in models])


def _retrieval_table(results: dict[str, dict], models: list[str]) -> str:
    rs = _by_task(results, "retrieval")
    datasets = list(RETRIEVAL_DATASETS)
    cells = {}
    for r in rs:
        name = _retrieval_name(r.get("dataset", ""))
        if name not in datasets:
            datasets.append(name)
        cells[(r.get("model_name", "model"), name)] = (r.get("metrics") or {})
    keys = (("@5", "top5"), ("F1", "f1"), ("Recall", "recall"), ("Precision", "precision"))
    header = [[(d, len(keys)) for d in datasets], [(k, 1) for _ in datasets for k, _key in keys]]
    body = [(m, [_estimate(cells.get((m, d)), key) for d in datasets for _k, key in keys]) for m in models]
    return _table(header, body)


def _align_table(results: dict[str, dict], models: list[str]) -> str:
    rs = _by_task(results, "cxr-align")
    sources = list(ALIGN_SOURCES.values())
    cells = {}
    for r in rs:
        for source, vals in (r.get("per_source") or {}).items():
            name = ALIGN_SOURCES.get(source.lower(), source)
            if name not in sources:
                sources.append(name)
            cells[(r.get("model_name", "model"), name)] = vals
    header = [[(s, 2) for s in sources], [(k, 1) for _ in sources for k in ("A", "B")]]
    body = [(m, [_estimate(cells.get((m, s)), k) for s in sources for k in ("A", "B")]) for m in models]
    return _table(header, body)


SHORTCUT_COLUMNS = ("model", "image-blind", "swap Δ", "longer text", "bag of words")
SHORTCUT_KEYS = {"A": ("A", "cxr_align_a_blind", "swap_delta_a", "text_longer_a", "text_bag_of_words_a"),
                 "B": ("B", "cxr_align_b_blind", "swap_delta_b", "text_longer_b", "text_bag_of_words_b")}


def _shortcut_table(results: dict[str, dict]) -> str:
    """One row per (model, CXR-Align source): A and B beside what the image-blind model, the swapped
    images and the two text-only baselines get."""
    body = []
    for r in _by_task(results, "cxr-align"):
        for source, vals in (r.get("per_source") or {}).items():
            label = f"{r.get('model_name', 'model')} ({ALIGN_SOURCES.get(source.lower(), source)})"
            body.append((label, [vals.get(key) for keys in SHORTCUT_KEYS.values() for key in keys]))
    width = len(SHORTCUT_COLUMNS)
    header = [[("Task A (r vs r^n)", width), ("Task B (r vs r^r)", width)],
              [(name, 1) for _ in SHORTCUT_KEYS for name in SHORTCUT_COLUMNS]]
    return _table(header, body or [("(no CXR-Align result)", [None] * 2 * width)])


COUNTERFACTUAL_KEYS = (("CF-order A", "cf_order"), ("CF-pair A", "cf_pair"), ("CF-order B", "cf_order_b"),
                       ("CF-pair B", "cf_pair_b"))


def _counterfactual_table(results: dict[str, dict]) -> str | None:
    """One row per (model, CXR-Align source) scored with counterfactual images; None when none was."""
    body = []
    for r in _by_task(results, "cxr-align"):
        for source, vals in (r.get("per_source") or {}).items():
            cf = vals.get("counterfactual")
            if cf:
                label = f"{r.get('model_name', 'model')} ({ALIGN_SOURCES.get(source.lower(), source)})"
                body.append((label, [cf.get(key) for _, key in COUNTERFACTUAL_KEYS] + [cf.get("n")]))
    if not body:
        return None
    return _table([[(name, 1) for name, _ in COUNTERFACTUAL_KEYS] + [("n", 1)]], body)


def _negation_table(results: dict[str, dict], models: list[str]) -> str:
    rs = _by_task(results, "negation-retrieval")
    if not rs:
        return _table([[("P@k X", 1), ("P@k no X", 1), ("gap", 1)]], [(m, [None, None, None]) for m in models])
    rows = []
    for r in rs:
        k = (r.get("ks") or [10])[min(1, len(r.get("ks") or [10]) - 1)]
        m = (r.get("metrics") or {})
        rows.append((f"{r.get('model_name', 'model')} ({r.get('dataset', '')}, k={k})",
                     [m.get(f"P@{k}"), m.get(f"P@{k} (no)"), m.get(f"gap@{k}")]))
    return _table([[("P@k X", 1), ("P@k no X", 1), ("gap", 1)]], rows)


def _details(name: str, r: dict) -> str:
    columns, rows = merged_table(r)
    parts = [f"<details><summary>{html.escape(r.get('task', ''))} — {html.escape(str(r.get('dataset', '')))}"
             f" — {html.escape(r.get('model_name', ''))} <span class='src'>({html.escape(name)})</span>"
             "</summary>"]
    if columns:
        parts.append("<table><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in columns) + "</tr>")
        for row in rows:
            parts.append("<tr>" + "".join(_cell(v) for v in row) + "</tr>")
        parts.append("</table>")
    for note in r.get("notes", []):
        parts.append(f"<p class='note'>note: {html.escape(str(note))}</p>")
    for reason, count in (r.get("skipped") or {}).items():
        parts.append(f"<p class='skip'>skipped {count}: {html.escape(str(reason))}</p>")
    parts.append("</details>")
    return "\n".join(parts)


def _plots(results: dict[str, dict]) -> str:
    out = []
    for r in results.values():
        for title, data in (r.get("plots") or {}).items():
            out.append(f"<figure>{figure_html(data, alt=title)}<figcaption>{html.escape(r.get('model_name', ''))}"
                       f": {html.escape(title)}</figcaption></figure>")
    return "\n".join(out)


CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#222;background:#fff;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:2px solid #335;padding-bottom:3px}
table{border-collapse:collapse;margin:8px 0 6px;font-size:13px}
th,td{border:1px solid #99a;padding:3px 8px;text-align:center}th{background:#dde3ee}
th.model{text-align:left;background:#eef1f6}td.empty{color:#999;background:#f6f6f6}
p.caption{font-size:12px;color:#444;max-width:1000px}p.note{color:#8a4b00;font-size:12px}
p.skip{color:#555;font-size:12px}figure{display:inline-block;margin:8px}figcaption{font-size:12px}
span.src{color:#777;font-size:11px}img{max-width:560px;border:1px solid #ccd}
"""


def render_report(results: dict[str, dict], out_html: str | Path,
                  extra_sections: Sequence[tuple[str, str]] = (), title: str = "clinclip evaluation report",
                  lead_sections: Sequence[tuple[str, str]] = ()) -> Path:
    """Write the HTML report; returns its path. See the module docstring. ``lead_sections`` (heading, HTML
    fragment) come before the paper's tables, ``extra_sections`` after them. Two different models under
    one name are told apart by their paths (``disambiguate_models``)."""
    results = disambiguate_models(results)
    models = _models(results) or ["(no result)"]
    counterfactual = _counterfactual_table(results)
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        ("Table 2 — Zero-shot (ZS) and fine-tuned (FT10/FT100) classification",
         _classification_table(results, models),
         "AUC for RSNA, RSNA-ab and SIIM; accuracy for VinDr, CheXpert 5x200 and CXR14 (percent). "
         "FT: mean over seeds (std in the details below)."),
        ("Table 3 — Normal case detection", _single_metric_table(results, models, "normal-detection",
                                                                 "accuracy", "NCD ACC"),
         "Top-1 accuracy: each normal image's own report against 2,999 abnormal reports (fewer when the pool "
         "is smaller: see the notes)."),
        ("Table 4 — Adversarial prediction", _single_metric_table(results, models, "adversarial", "accuracy",
                                                                  "Adversarial CLS"),
         "Both queries right (present entity X picked over 'no X', absent entity Y's 'no Y' picked); "
         "chance 25%."),
        ("Table 5 — Report retrieval", _retrieval_table(results, models),
         "Top-5 accuracy (@5) and the label-based F1, recall and precision of the top-1 report."),
        ("Table 6 — CXR-Align", _align_table(results, models),
         "A: original report r preferred over its negated version r^n; B: r preferred over r^r (the "
         "chosen entity's sentences removed)."),
        ("CXR-Align shortcut controls", _shortcut_table(results),
         "How much of A and B needs the image. image-blind: every image replaced by the mean image embedding; "
         "swap Δ: A (B) minus the same on the image of another study in which the chosen entity is negative "
         "(same view where possible), 0 for a model that ignores the image; longer text: the longer report "
         "wins; bag of words: a text-only classifier trained on the train split's r vs r^n. '–': not "
         "computed (see the details below)."),
        *([("CXR-Align against counterfactual images", counterfactual,
            "Each image I beside I', the same study without the chosen finding; Δ(x) = sim(x, r) − sim(x, r^n). "
            "CF-order: Δ(I) > Δ(I') (chance 50 %); CF-pair: Δ(I) > 0 and Δ(I') < 0 (chance 25 %). A model "
            "that ignores the image scores 0 on both. B: the same with r^r.")] if counterfactual else []),
        ("Negation retrieval", _negation_table(results, models),
         "Precision@k of the prompts 'X' and 'no X' (mean over findings) and their gap."),
    ]
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p class='caption'>Generated {now} from {len(results)} result file(s). Numbers are "
            f"percentages; in parentheses, 95 % bootstrap confidence intervals over the test images (1,000 "
            f"seeded resamples) where the result has them; '–' marks a cell with no result.</p>"]
    for heading, fragment in lead_sections:
        body += [f"<h2>{html.escape(heading)}</h2>", fragment]
    for heading, table, caption in sections:
        body += [f"<h2>{html.escape(heading)}</h2>", table, f"<p class='caption'>{html.escape(caption)}</p>"]
    plots = _plots(results)
    if plots:
        body += ["<h2>Analyses and plots</h2>", plots]
    for heading, fragment in extra_sections:
        body += [f"<h2>{html.escape(heading)}</h2>", fragment]
    if results:
        body += ["<h2>Details of every result</h2>"] + [_details(n, r) for n, r in results.items()]
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>" + html.escape(title)
            + f"</title><style>{CSS}</style></head><body>" + "\n".join(body) + "</body></html>")
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
