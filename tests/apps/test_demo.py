"""The demo end to end in a reduced run (few studies, few steps): every artifact exists and is well formed,
the HTML opens offline, and (with Debian's chromium) renders to a non-blank screenshot. The full-size run
and its expectations are measured by `clinclip demo` itself (and reported in docs/demo.md)."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clinclip.errors import ClinclipError
from clinclip.apps.demo import (QUICK_NOTE, RESULT_KEYS, VARIANTS, DemoConfig, Expectation, _claim_out_dir,
                                _train_config, check_expectations, plain_finding, run_demo)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    from rich.console import Console

    console = Console(record=True, width=120)
    outcome = run_demo(out, DemoConfig.quick(workers=1), console=console)
    return outcome, console.export_text()


@pytest.mark.slow
def test_results_json_has_every_key_in_range(demo_run):
    outcome, _ = demo_run
    data = json.loads(outcome.results_json.read_text())
    for variant in VARIANTS:
        for key in RESULT_KEYS:
            value = data[variant][key]
            assert isinstance(value, (int, float)) and math.isfinite(value), (variant, key, value)
            if key == "swap_delta_a":
                assert -1.0 <= value <= 1.0, (variant, key, value)
            elif key != "train_seconds":
                assert 0.0 <= value <= 1.0, (variant, key, value)
        assert data[variant]["train_seconds"] > 0
        per_finding = data[variant]["zero_shot_auc"]
        assert "Cardiomegaly" in per_finding and "Pleural Effusion" in per_finding
        assert data[variant]["steps"] == DemoConfig.quick().steps
    assert [e["name"] for e in data["expectations"]] == [e.name for e in check_expectations(data)]
    assert data["data"]["cxr_align_triplets"] > 10
    assert data["data"]["cxr_align_counterfactual_triplets"] == data["data"]["cxr_align_triplets"]
    assert data["data"]["eval_split"] == "test" and data["quick_run_note"] == QUICK_NOTE
    assert set(data["text_only"]) == {"text_longer_a", "text_longer_b", "text_bag_of_words_a", "text_bag_of_words_b"}
    assert (outcome.out_dir / "prepared.parquet").exists() and (outcome.out_dir / "cxr_align.json").exists()
    assert data["wall_seconds"] > 0 and set(data["stage_seconds"]) >= {"mimic-cxr adapter", "report pipeline"}


@pytest.mark.slow
def test_console_shows_stages_table_and_verdicts(demo_run):
    outcome, text = demo_run
    assert "1/10" in text and "10/10" in text
    assert "CF-pair A" in text and "image-blind" in text and "clip-n" in text and "clip-ng-dtcg" in text
    # A quick run says its numbers only check the plumbing and gives no verdicts.
    assert QUICK_NOTE in " ".join(text.split())
    assert not re.search(r"\b(PASS|FAIL)\b", text)
    assert len(re.findall(r"^quick (?!run:)", text, flags=re.M)) == len(outcome.expectations) == 6


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.images: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)
                if tag == "img":
                    self.images.append(value)


@pytest.mark.slow
def test_html_is_offline_and_has_the_curves(demo_run):
    outcome, _ = demo_run
    page = outcome.html.read_text()
    parser = _Collector()
    parser.feed(page)
    assert "table" in parser.tags
    assert parser.images and all(src.startswith("data:image/png;base64,") for src in parser.images)
    remote = [u for u in parser.urls if re.match(r"^(https?:)?//", u)]
    assert not remote, remote
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page)  # no remote CSS resources either
    assert "Training curves" in page and "Demo outcome" in page
    assert page.index("Demo outcome") < page.index("Table 2")  # the demo's verdict leads the page
    assert page.index("CF-pair") < page.index("CXR-Align A (r vs r^n)")  # image-grounded numbers first
    assert "PASS" in page or "FAIL" in page


def _model(cf_pair=0.6, cf_order=0.95, auc=0.7):
    return {"cf_pair": cf_pair, "cf_order": cf_order, "zero_shot_auc_mean": auc}


def test_expectations_are_falsifiable():
    good = {"clip": _model(cf_pair=0.3), "clip-n": _model(), "clip-ng-dtcg": _model(cf_pair=0.55)}
    assert all(e.passed for e in check_expectations(good))
    close = {"clip": _model(cf_pair=0.5), "clip-n": _model(auc=0.6),
             "clip-ng-dtcg": _model(cf_pair=0.55, cf_order=0.89, auc=float("nan"))}
    verdicts = {e.name: e.passed for e in check_expectations(close)}
    assert verdicts == {
        "CF-pair of clip-ng-dtcg >= 0.50 (chance 0.25, text-only 0)": True,
        "CF-order of clip-ng-dtcg >= 0.90 (chance 0.50)": False,
        "CF-pair of clip-ng-dtcg >= clip + 0.10": False,
        "mean zero-shot AUC of clip >= 0.65": True,
        "mean zero-shot AUC of clip-n >= 0.65": False,
        "mean zero-shot AUC of clip-ng-dtcg >= 0.65": False,
    }
    assert all(isinstance(e, Expectation) for e in check_expectations(close))


def test_the_finding_is_said_plainly_either_way():
    blind = {"cxr_align_a": 0.9, "cxr_align_a_blind": 0.95}
    better = {"clip": _model(cf_pair=0.2), "clip-ng-dtcg": {**_model(cf_pair=0.45), **blind}}
    assert "decides negation from the image better than clip" in plain_finding(better)
    assert "above chance" in plain_finding(better)
    worse = {"clip": _model(cf_pair=0.2), "clip-ng-dtcg": {**_model(cf_pair=0.15), **blind}}
    sentence = plain_finding(worse)
    assert "does not decide negation from the image better than clip" in sentence
    assert "not above chance" in sentence and "0.950" in sentence


@pytest.mark.chromium
@pytest.mark.slow
def test_html_screenshot_is_not_blank(demo_run, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's `chromium` is not on PATH (apt-get install -y chromium) - screenshot not taken")
    outcome, _ = demo_run
    png = tmp_path / "page.png"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}", "--window-size=1280,2000",
           outcome.html.resolve().as_uri()]
    subprocess.run(cmd, check=True, timeout=120, capture_output=True)
    pixels = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
    assert pixels.shape == (2000, 1280)
    # Text, tables and the curves: many dark pixels and a real spread, not a white (or black) page.
    assert (pixels < 128).mean() > 0.005
    assert pixels.std() > 20


def test_previous_demo_outputs_are_kept_unless_overwrite(tmp_path):
    (tmp_path / "runs" / "clip").mkdir(parents=True)
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(ClinclipError, match="previous demo's outputs.*results.json.*--overwrite"):
        run_demo(tmp_path, DemoConfig.quick())
    assert (tmp_path / "results.json").read_text() == "{}" and (tmp_path / "runs" / "clip").is_dir()
    _claim_out_dir(tmp_path, overwrite=True)
    assert not (tmp_path / "results.json").exists() and not (tmp_path / "runs").exists()


def test_bad_loss_override_fails_before_any_stage(tmp_path):
    with pytest.raises(ClinclipError, match="taus.*unknown thresholded stream 'x'"):
        run_demo(tmp_path / "out", DemoConfig.quick(loss_overrides={"taus.x": 0.9}))
    assert not (tmp_path / "out").exists()


def test_demo_loss_overrides_reach_the_training_config(tmp_path):
    cfg = DemoConfig.quick(loss_overrides={"taus.t": 0.9, "weights.g": 0.5})
    loss = _train_config("clip-ng-dtcg", tmp_path / "p.parquet", tmp_path / "run", cfg).loss_config()
    assert loss.taus["t"] == 0.9 and loss.weights["g"] == 0.5 and loss.taus["c"] == 0.5  # the rest from the preset
    default = _train_config("clip-ng-dtcg", tmp_path / "p.parquet", tmp_path / "run", DemoConfig()).loss_config()
    assert default.taus == {"t": 0.95, "c": 0.5, "g": 0.95}
