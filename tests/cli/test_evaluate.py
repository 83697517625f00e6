"""End to end: `clinclip eval ...`, `clinclip align build` and `clinclip report` on a tiny clinclip model
saved in tmp_path (loaded back through clinclip.models.load_encoder) and a few generated PNGs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from clinclip.cli.main import app
from clinclip.observations import OBSERVATIONS

REPORTS = [
    (["Moderate left pleural effusion.", "Mild cardiomegaly."], {"Pleural Effusion": 1, "Cardiomegaly": 1}),
    (["No acute cardiopulmonary process."], {"No Finding": 1}),
    (["Right lower lobe consolidation.", "No pneumothorax."], {"Consolidation": 1, "Pneumothorax": 0}),
    (["Small right pleural effusion.", "No pneumothorax."], {"Pleural Effusion": 1, "Pneumothorax": 0}),
    (["No acute cardiopulmonary process."], {"No Finding": 1}),
    (["Enlarged heart.", "Pulmonary edema."], {"Cardiomegaly": 1, "Edema": 1}),
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    from clinclip.models import ClinClipModel

    out = tmp_path_factory.mktemp("model") / "tiny"
    ClinClipModel.from_preset("tiny", {"graph.enabled": False}).save_pretrained(out)
    return str(out)


@pytest.fixture()
def prepared_manifest(tmp_path) -> str:
    rng = np.random.default_rng(0)
    rows = []
    for i, (sentences, labels) in enumerate(REPORTS * 2):
        image = (rng.random((48, 40)) * 255).astype(np.uint8)
        path = tmp_path / "images" / f"im{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(image).save(path)
        row = {c: np.nan for c in OBSERVATIONS}
        row.update(labels)
        row.update({"image_path": f"images/im{i}.png", "image_id": f"im{i}", "study_id": f"s{i}",
                    "patient_id": f"p{i}", "split": "test" if i < 6 else "train", "view": "PA",
                    "report": " ".join(sentences), "sentences": sentences, "text": " ".join(sentences),
                    "text_negated": " ".join(["No " + sentences[0].lower(), *sentences[1:]])})
        rows.append(row)
    path = tmp_path / "prepared.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return str(path)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # tiny models on a shared 2-core machine: one thread avoids oversubscription
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def test_eval_tasks_align_and_report_end_to_end(tiny_model, prepared_manifest, tmp_path):
    cache = tmp_path / "cache"
    out = tmp_path / "results"
    common = ["--model", tiny_model, "--data", prepared_manifest, "--cache-dir", cache]
    run("eval", "zero-shot", *common, "--prompts", "chexpert14", "--out", out / "zs.json")
    run("eval", "retrieval", *common, "--labeler", "manifest", "--out", out / "retr.json")
    run("eval", "adversarial", *common, "--out", out / "adv.json")
    run("eval", "normal-detection", *common, "--out", out / "ncd.json")
    run("eval", "negation-retrieval", *common, "--ks", "2", "--out", out / "neg.json")
    run("eval", "finetune", *common, "--prompts", "chexpert14", "--seeds", "0", "--fractions", "1.0",
        "--out", out / "ft.json")
    # every image of the manifest was encoded once and reused by every task: one cache entry holding
    # the 6 test images and the 6 train images (added by fine-tuning)
    image_cache = list(cache.rglob("images-*.npz"))
    assert len(image_cache) == 1 and np.load(image_cache[0])["embeddings"].shape[0] == 12

    zs = json.loads((out / "zs.json").read_text())
    assert zs["task"] == "zero-shot" and zs["model_name"] == "tiny" and zs["split"] == "test"
    assert set(zs["per_class"]) >= {"Pleural Effusion", "Cardiomegaly"}
    assert (out / "zs.md").read_text().startswith("## zero-shot")
    retr = json.loads((out / "retr.json").read_text())
    assert retr["pool"] == {"images": 6, "reports": 6, "unique_reports": 5}
    assert 0.0 <= retr["metrics"]["top5"] <= 1.0
    ncd = json.loads((out / "ncd.json").read_text())
    assert ncd["metrics"]["n_normal"] == 2 and ncd["notes"]  # tiny pool: said so

    bench = tmp_path / "cxr_align.json"
    run("align", "build", "--data", prepared_manifest, "--out", bench, "--seed", "0", "--source", "mimic")
    data = json.loads(bench.read_text())
    assert list(data) == ["mimic"] and len(data["mimic"]) == 4  # the 4 abnormal test studies
    for entry in data["mimic"].values():
        assert set(entry) == {"report", "negation", "omitted", "chosen", "inserted"}
    printed = run("eval", "cxr-align", "--model", tiny_model, "--benchmark", bench, "--data", prepared_manifest,
                  "--train-manifest", prepared_manifest, "--cache-dir", cache, "--out", out / "align.json").output
    align = json.loads((out / "align.json").read_text())
    assert align["metrics"]["n"] == 4 and 0.0 <= align["metrics"]["A"] <= 1.0
    # the shortcut controls beside A and B: every test study is PA, and each chosen entity is negative in
    # some other test study, so every triplet has a same-view swap partner
    for key in ("cxr_align_a_blind", "cxr_align_b_blind", "text_longer_a", "text_bag_of_words_a"):
        assert 0.0 <= align["metrics"][key] <= 1.0
    assert align["metrics"]["swap_n"] == 4 and align["metrics"]["swap_view_fallback"] == 0
    assert -1.0 <= align["metrics"]["swap_delta_a"] <= 1.0
    assert "bag-of-words A" in printed and "swap ΔA" in printed

    run("eval", "analyses", "--model", tiny_model, "--data", prepared_manifest, "--benchmark", bench,
        "--ig-steps", "4", "--cache-dir", cache, "--out", out / "analyses.json")
    analyses = json.loads((out / "analyses.json").read_text())
    assert np.array(analyses["head_ablation"]["delta"]).shape == (2, 2)  # tiny preset: 2 layers x 2 heads
    assert analyses["integrated_gradients"]["sentences"][0]["tokens"][0] == "[CLS]"
    assert len(analyses["plots"]) == 3

    report = tmp_path / "report.html"
    run("report", *sorted(out.glob("*.json")), "--out", report)
    page = report.read_text()
    assert "Table 6" in page and "tiny" in page
    assert "CXR-Align shortcut controls" in page and "tiny (MIMIC)" in page


def test_eval_reports_bad_input_clearly(tiny_model, prepared_manifest, tmp_path):
    result = CliRunner().invoke(app, ["eval", "zero-shot", "--model", tiny_model, "--data", prepared_manifest,
                                      "--split", "validate", "--out", str(tmp_path / "x.json")])
    assert result.exit_code == 2
    assert "no row with split == 'validate'" in result.output
    result = CliRunner().invoke(app, ["eval", "zero-shot", "--model", tiny_model, "--data", prepared_manifest,
                                      "--prompts", "nonexistent", "--out", str(tmp_path / "x.json")])
    assert result.exit_code == 2 and "unknown prompt file" in result.output
