"""The HTML report: tables filled from the results present, empty cells marked, plots inline, and the
page rendered by headless Chromium into a screenshot that is not blank."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from clinclip.evaluate.report import figure_html, render_report
from clinclip.evaluate.results import markdown_table, read_results, write_result


def _plot_png() -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [3, 1, 2])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def sample_results() -> dict[str, dict]:
    base = {"skipped": {}, "notes": [], "table": {"columns": ["x"], "rows": [[0.5]]}}
    return {
        "zs.json": {**base, "task": "zero-shot", "model_name": "baseline", "dataset": "RSNA Pneumonia",
                    "metrics": {"score": 0.812}},
        "ft.json": {**base, "task": "finetune", "model_name": "baseline", "dataset": "RSNA Pneumonia",
                    "metrics": {"FT10": 0.883, "FT100": 0.891}},
        "align.json": {**base, "task": "cxr-align", "model_name": "full", "dataset": "mimic",
                       "metrics": {"A": 0.965, "B": 0.801},
                       "per_source": {"mimic": {"A": 0.965, "B": 0.801, "n": 10}},
                       "notes": ["a note the reader must see"], "skipped": {"image id not found": 2}},
        "retr.json": {**base, "task": "retrieval", "model_name": "full", "dataset": "mimic_test",
                      "metrics": {"top5": 0.388, "f1": 0.506, "recall": 0.515, "precision": 0.503}},
        "an.json": {**base, "task": "analyses", "model_name": "full", "dataset": "sentences", "metrics": {},
                    "plots": {"t-SNE": _plot_png()}},
    }


def test_report_tables_empty_cells_and_inline_plots(tmp_path):
    out = render_report(sample_results(), tmp_path / "report.html",
                        extra_sections=[("Training curves", "<p id='extra'>curves here</p>")])
    page = out.read_text()
    assert "81.2" in page and "88.3" in page and "89.1" in page  # Table 2: RSNA ZS / FT10 / FT100
    assert "96.5" in page and "80.1" in page                      # Table 6: MIMIC A / B
    assert "38.8" in page and "50.6" in page                      # Table 5: MIMIC @5 / F1
    assert 'class="empty"' in page                                # e.g. SIIM has no result
    assert "data:image/png;base64," in page                       # the plot is embedded
    assert "http://" not in page and "https://" not in page      # nothing to fetch: opens offline
    assert "curves here" in page and "a note the reader must see" in page and "image id not found" in page


def test_results_round_trip_and_markdown(tmp_path):
    result = {"task": "retrieval", "model_name": "m", "dataset": "d", "metrics": {"top5": float("nan")},
              "table": {"columns": ["@5"], "rows": [[np.float32(0.25)]]}, "skipped": {"empty report": 3},
              "notes": []}
    json_path, md_path, *_ = write_result(result, tmp_path / "r.json")
    back = read_results([json_path])[str(json_path)]
    assert back["metrics"]["top5"] is None  # NaN becomes null, valid JSON
    md = md_path.read_text()
    assert "| 25.0 |" in md and "skipped 3: empty report" in md
    assert markdown_table(back).startswith("## retrieval")


def test_figure_html_accepts_a_figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2])
    fragment = figure_html(fig, "curve")
    plt.close(fig)
    raw = base64.b64decode(fragment.split("base64,")[1].split('"')[0])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.chromium
def test_report_renders_in_headless_chromium(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not on PATH (Debian: apt-get install -y chromium); screenshot not checked")
    out = render_report(sample_results(), tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
           out.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.exists(), f"no screenshot; chromium said: {proc.stderr[-2000:]}"
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    assert pixels.std() > 10, "the screenshot is blank"
    dark = (pixels < 100).mean()   # text and table borders
    assert 0.001 < dark < 0.5, f"unexpected share of dark pixels: {dark:.4f}"


def test_counterfactual_table_appears_only_with_counterfactual_results(tmp_path):
    from clinclip.evaluate.report import render_report

    per_source = {"A": 0.5, "B": 0.4, "n": 3}
    plain = {"m/cxr-align": {"task": "cxr-align", "model_name": "m", "dataset": "mimic", "metrics": per_source,
                             "per_source": {"mimic": dict(per_source)}, "table": {"columns": [], "rows": []}}}
    page = render_report(plain, tmp_path / "plain.html").read_text()
    assert "against counterfactual images" not in page
    with_cf = {"m/cxr-align": {**plain["m/cxr-align"], "per_source": {"mimic": {
        **per_source, "counterfactual": {"cf_order": 0.9, "cf_pair": 0.4, "cf_order_b": 0.8, "cf_pair_b": 0.3,
                                         "n": 3}}}}}
    page = render_report(with_cf, tmp_path / "cf.html").read_text()
    assert "against counterfactual images" in page and "CF-pair A" in page
